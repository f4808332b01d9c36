import Foundation
import GRDB
import KotaSyncCore
import Synchronization
import Testing

@testable import KotaSyncServer

/// Pushes read from their bytes row by row (`CheckedPush`), as `POST /v1/push` and upload commits
/// merge them: the same result as a decoded push, nothing applied of a refused one, a stored reply
/// for a retry, and a group commit that still refuses one push alone.
struct StreamedPushTests {
    typealias Store = SQLiteMasterStoreTests

    static let device = Device(tokenID: "t-a", opd: "pkm-a")
    static let table = Changeset.Table(name: "notes", primaryKey: ["id"], columns: ["title", "body"])

    /// A push of `count` new notes from `replica`; `title(i)` gives row i's title (nil: NULL).
    static func push(
        _ count: Int, replica: UUID = UUID(), title: (Int) -> SQLValue = { .text("judul \($0)") }
    ) -> Changeset {
        let rows = (0..<count).map { i in
            Changeset.Row(
                table: 0, operation: .upsert, version: 0,
                stamp: HLC(milliseconds: 1_764_000_000_000 + UInt64(i), counter: 0), primaryKey: [.text("n\(i)")],
                columns: [
                    .init(column: 0, value: title(i)),
                    .init(column: 1, value: .text(String(repeating: "isi catatan ", count: 1 + i % 9))),
                ])
        }
        return Changeset(
            kind: .push, id: UUID(), replicaID: replica, firstSequence: 1, lastSequence: UInt64(max(count, 1)),
            tables: [table], rows: rows)
    }

    static func checked(_ bytes: some ChangesetSource, store: SQLiteMasterStore) throws -> CheckedPush {
        try CheckedPush(bytes, limits: store.config.limits.decodeLimits, schema: store.config.tables)
    }

    static func pushStreamed(_ changeset: Changeset, to store: SQLiteMasterStore) async throws -> PushOutcome {
        try await store.push(try checked(ChangesetCodec.encode(changeset), store: store), from: device)
    }

    /// What a master holds: its notes, and every row a pull returns.
    static func contents(_ store: SQLiteMasterStore) async throws -> ([[SQLValue]], [Changeset.Row]) {
        (try Store.notes(store), try await Store.pullAll(store))
    }

    static func registeredReplicas(_ store: SQLiteMasterStore) throws -> Int {
        try store.pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM _ks_replicas") ?? 0 }
    }

    @Test func aStreamedPushMergesAsTheDecodedPushDoes() async throws {
        let decodedStore = try Store.makeStore()
        let streamedStore = try Store.makeStore()
        // A second replica edits some of the same notes first, so that the push also loses and
        // records conflicts.
        var first = Self.push(3000)
        first.rows = first.rows.enumerated().compactMap { i, row in i % 100 == 0 ? row : nil }
        let replica = UUID()
        var second = Self.push(3000, replica: replica)
        second.rows = second.rows.map { row in
            var row = row
            row.stamp = HLC(rawValue: row.stamp.rawValue &- (1 << 20))
            return row
        }
        for store in [decodedStore, streamedStore] {
            _ = try await store.push(first, from: Self.device)
        }
        let decoded = try ProtocolJSON.decoder().decode(
            PushReply.self, from: try await decodedStore.push(second, from: Self.device).reply)
        let streamed = try ProtocolJSON.decoder().decode(
            PushReply.self, from: try await Self.pushStreamed(second, to: streamedStore).reply)
        #expect(streamed.rows == 3000 && streamed.rows == decoded.rows)
        #expect(streamed.applied == decoded.applied)
        #expect(streamed.masterSequence == decoded.masterSequence)
        #expect(!decoded.conflicts.isEmpty)
        #expect(streamed.conflicts.map(\.id) == decoded.conflicts.map(\.id))
        let (decodedNotes, decodedPull) = try await Self.contents(decodedStore)
        let (streamedNotes, streamedPull) = try await Self.contents(streamedStore)
        #expect(streamedNotes == decodedNotes)
        #expect(streamedPull == decodedPull)
    }

    @Test func aRowTheSchemaRefusesInTheMiddleLeavesNothingApplied() async throws {
        let store = try await Self.makeStoreWithOneNote()
        let changeset = Self.push(5000) { $0 == 2500 ? .integer(7) : .text("judul \($0)") }
        await #expect {
            _ = try await Self.pushStreamed(changeset, to: store)
        } throws: { error in
            let error = error as? SyncError
            return error?.code == .typeMismatch && error?.message.hasPrefix("Row 2500 ") == true
        }
        #expect(try Store.notes(store).count == 1)
        #expect(try Self.registeredReplicas(store) == 1)
    }

    @Test func aRowTheDecoderRefusesInTheMiddleLeavesNothingApplied() async throws {
        let store = try await Self.makeStoreWithOneNote()
        let changeset = Self.push(5000)
        let good = try Self.checked(ChangesetCodec.encode(changeset), store: store)
        var bad = changeset
        bad.rows[2500].columns.append(.init(column: 0, value: .text("lagi")))  // the same column twice
        let bytes = ChangesetCodec.encode(bad)
        await #expect {
            _ = try await store.push(try Self.checked(bytes, store: store), from: Self.device)
        } throws: { error in
            (error as? SyncError) == Result { () throws(SyncError) in try ChangesetCodec.decode(bytes) }.failure
        }
        #expect(try Store.notes(store).count == 1)
        #expect(good.rowCount == 5000)
    }

    /// The bytes were checked, then read differently when merged (the store must not trust the
    /// first reading): the rows merged before the bad one are rolled back with the push's savepoint.
    @Test func aRowThatFailsOnlyWhenMergedRollsBackTheWholePush() async throws {
        let store = try await Self.makeStoreWithOneNote()
        let good = Self.push(5000)
        var bad = good
        bad.rows[2500].columns[0].value = .blob([1])
        let source = SwitchingSource(first: ChangesetCodec.encode(good), then: ChangesetCodec.encode(bad))
        let checked = try Self.checked(source, store: store)
        source.switchOver()
        await #expect {
            _ = try await store.push(checked, from: Self.device)
        } throws: { ($0 as? SyncError)?.code == .typeMismatch }
        #expect(try Store.notes(store).count == 1)
        #expect(try Self.registeredReplicas(store) == 1)
        // The master's own constraint (title is NOT NULL), met in the middle of the merge.
        let null = Self.push(5000) { $0 == 4000 ? .null : .text("judul \($0)") }
        await #expect {
            _ = try await Self.pushStreamed(null, to: store)
        } throws: { ($0 as? SyncError)?.code == .constraintViolation }
        #expect(try Store.notes(store).count == 1)
    }

    @Test func aRetryOfAStreamedPushGetsTheStoredReply() async throws {
        let store = try Store.makeStore()
        let changeset = Self.push(2000)
        let first = try await Self.pushStreamed(changeset, to: store)
        let again = try await Self.pushStreamed(changeset, to: store)
        #expect(!first.replayed && again.replayed)
        #expect(again.reply == first.reply)
        #expect(try Store.notes(store).count == 2000)
    }

    @Test func aGroupCommitOfStreamedPushesRefusesTheBadOneAlone() async throws {
        let store = try Store.makeStore()
        let refused = try await withThrowingTaskGroup(of: (Int, Bool).self) { group in
            for i in 0..<12 {
                group.addTask {
                    var changeset = Self.push(300) { i == 5 && $0 == 150 ? .null : .text("judul \($0)") }
                    changeset.rows = changeset.rows.map { row in
                        var row = row
                        row.primaryKey = [.text("p\(i)-\(row.primaryKey[0])")]
                        return row
                    }
                    do {
                        _ = try await Self.pushStreamed(changeset, to: store)
                        return (i, false)
                    } catch let error as SyncError where error.code == .constraintViolation {
                        return (i, true)
                    }
                }
            }
            return try await group.reduce(into: [Int]()) { if $1.1 { $0.append($1.0) } }
        }
        #expect(refused == [5])
        let notes = try Store.notes(store)
        #expect(notes.count == 11 * 300)
        #expect(!notes.contains { $0[0] == .text("p5-n0") })
    }

    @Test func theAuditDetailCountsRowsPerTable() throws {
        let store = try Store.makeStore()
        let changeset = Self.push(1234)
        let checked = try Self.checked(ChangesetCodec.encode(changeset), store: store)
        #expect(
            checked.auditDetail == [
                "changeset_id": changeset.id.uuidString, "rows": "1234", "tables": "notes=1234",
            ])
    }

    @Test func aPushTheSchemaRefusesStillGetsItsStoredReply() async throws {
        let store = try Store.makeStore()
        let changeset = Self.push(10)
        let reply = try await Self.pushStreamed(changeset, to: store).reply
        // The same changeset id with rows the schema refuses: the stored reply, as for a decoded push.
        var changed = changeset
        changed.rows[3].columns[0].value = .integer(1)
        let checked = try Self.checked(ChangesetCodec.encode(changed), store: store)
        #expect(checked.validation.failure?.code == .typeMismatch)
        let again = try await store.push(checked, from: Self.device)
        #expect(again.replayed && again.reply == reply)
    }

    @Test func anUploadCommittedFromDiskMergesAsAPushedBody() async throws {
        let store = try Store.makeStore()
        let dir = try UploadStoreTests.directory()
        let uploads = try UploadStore(directory: dir, maxChunkBytes: 64 << 10, expirySeconds: 3600)
        let changeset = Self.push(3000)
        let bytes = ChangesetCodec.encode(changeset)
        let request = UploadRequest(
            changesetId: changeset.id, length: bytes.count, sha256: UploadStore.sha256Hex(bytes))
        let id = try await uploads.create(request, opd: "pkm-a").status.id
        for start in stride(from: 0, to: bytes.count, by: 64 << 10) {
            let chunk = Array(bytes[start..<min(start + (64 << 10), bytes.count)])
            _ = try await uploads.append(
                id: id, opd: "pkm-a", offset: start, chunk: chunk, sha256: UploadStore.sha256Hex(chunk))
        }
        guard case .complete(let file) = try await uploads.assemble(id: id, opd: "pkm-a") else {
            Issue.record("not complete")
            return
        }
        // Another commit of the same upload finished first and deleted its bytes: the open file
        // still reads them.
        guard case .complete(let second) = try await uploads.assemble(id: id, opd: "pkm-a") else {
            Issue.record("not complete")
            return
        }
        let outcome = try await store.push(try Self.checked(second, store: store), from: Self.device)
        try await uploads.committed(id: id, reply: outcome.reply)
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("\(id).part").path))
        let replay = try await store.push(try Self.checked(file, store: store), from: Self.device)
        #expect(replay.replayed && replay.reply == outcome.reply)
        #expect(try Store.notes(store).count == 3000)
    }

    /// A store whose master already holds one note, from another replica.
    static func makeStoreWithOneNote(_ name: String = #function) async throws -> SQLiteMasterStore {
        let store = try Store.makeStore(name)
        _ = try await store.push(Self.push(1), from: device)
        return store
    }
}

extension StreamedPushTests {
    /// Gives one changeset's bytes until told to switch, then another's.
    final class SwitchingSource: ChangesetSource {
        let first: [UInt8]
        let then: [UInt8]
        private let switched = Mutex(false)

        init(first: [UInt8], then: [UInt8]) {
            self.first = first
            self.then = then
        }

        func switchOver() { switched.withLock { $0 = true } }

        private var bytes: [UInt8] { switched.withLock { $0 } ? then : first }

        var count: Int { bytes.count }

        func copyBytes(from offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(SyncError) -> Int {
            try bytes.copyBytes(from: offset, into: buffer)
        }
    }
}

extension Result {
    fileprivate var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
