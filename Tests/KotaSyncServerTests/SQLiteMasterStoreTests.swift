import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite
import Testing

@testable import KotaSyncServer

/// The SQLite master store: merges that reach the disk, conflicts recorded with both sides, the
/// pull feed, and the refusals that protect the master.
struct SQLiteMasterStoreTests {
    static let yaml = """
        name: Test
        opds:
          - id: pkm-a
            name: Puskesmas A
          - id: pkm-b
            name: Puskesmas B
        tables:
          - name: notes
            ddl: "CREATE TABLE notes (id TEXT PRIMARY KEY, title TEXT NOT NULL, body TEXT)"
        """

    /// A store in a fresh directory.
    static func makeStore(_ name: String = #function) throws -> SQLiteMasterStore {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "kotasync-store-\(name.filter { $0.isLetter })-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let config = try ServerConfig.parse(yaml: yaml, baseURL: dir)
        return try SQLiteMasterStore(path: dir.appendingPathComponent("master.sqlite").path, config: config)
    }

    /// A device of one OPD pushing as one replica, with its own sequence numbers and clock.
    struct Device {
        var device: KotaSyncServer.Device
        let replica = UUID()
        var sequence: UInt64 = 0
        var clock: UInt64

        init(opd: String, clock: UInt64 = 1_764_000_000_000) {
            device = KotaSyncServer.Device(tokenID: "t-\(opd)", opd: opd)
            self.clock = clock
        }

        mutating func push(
            _ store: SQLiteMasterStore, _ rows: [(Changeset.Operation, String, UInt64, [(Int, SQLValue)])]
        ) async throws -> PushReply {
            let first = sequence + 1
            let changeRows = rows.map { op, id, base, columns -> Changeset.Row in
                clock += 1
                sequence += 1
                return Changeset.Row(
                    table: 0, operation: op, version: base, stamp: HLC(milliseconds: clock, counter: 0),
                    primaryKey: [.text(id)],
                    columns: columns.map { Changeset.ColumnValue(column: $0.0, value: $0.1) })
            }
            let changeset = Changeset(
                kind: .push, id: UUID(), replicaID: replica, firstSequence: first, lastSequence: sequence,
                tables: [Changeset.Table(name: "notes", primaryKey: ["id"], columns: ["title", "body"])],
                rows: changeRows)
            let outcome = try await store.push(changeset, from: device)
            return try ProtocolJSON.decoder().decode(PushReply.self, from: outcome.reply)
        }
    }

    static func notes(_ store: SQLiteMasterStore) throws -> [[SQLValue]] {
        try store.pool.read { db in
            try Row.fetchAll(db, sql: "SELECT id, title, body FROM notes ORDER BY id").map {
                $0.databaseValues.map(SQLValue.init)
            }
        }
    }

    /// Everything a pull from `cursor` returns, page by page of `limit`.
    static func pullAll(_ store: SQLiteMasterStore, after cursor: UInt64 = 0, limit: Int = 1000) async throws
        -> [Changeset.Row]
    {
        var cursor = cursor
        var rows: [Changeset.Row] = []
        while true {
            let page = try await store.pull(after: cursor, limit: limit)
            let decoded = try ChangesetCodec.decode(page.body)
            #expect(decoded.firstSequence == cursor)
            rows += decoded.rows
            cursor = page.nextCursor
            if !page.hasMore { return rows }
        }
    }

    @Test func twoOPDsCreatingTheSameKeyIsAnInsertInsertConflictAndTheLaterWins() async throws {
        let store = try Self.makeStore()
        var a = Device(opd: "pkm-a")
        var b = Device(opd: "pkm-b", clock: 1_764_000_500_000)
        _ = try await a.push(store, [(.upsert, "n1", 0, [(0, .text("dari A")), (1, .text("badan A"))])])
        let reply = try await b.push(store, [(.upsert, "n1", 0, [(0, .text("dari B")), (1, .text("badan A"))])])

        #expect(try Self.notes(store) == [[.text("n1"), .text("dari B"), .text("badan A")]])
        let title = try #require(reply.conflicts.first { $0.column == "title" })
        #expect(title.kind == .insertInsert)
        #expect(title.winner?.value == .text("dari B"))
        #expect(title.loser?.value == .text("dari A"))
        #expect(title.loser?.opd == "pkm-a")
        #expect(title.winner?.replicaId == b.replica)
    }

    @Test func aDeleteRacingAnUpdateLosesInEitherOrder() async throws {
        var finals: [[[SQLValue]]] = []
        for deleteFirst in [true, false] {
            let store = try Self.makeStore()
            var a = Device(opd: "pkm-a")
            var b = Device(opd: "pkm-b")
            _ = try await a.push(store, [(.upsert, "n1", 0, [(0, .text("judul")), (1, .text("isi"))])])
            let seen = try await Self.pullAll(store).last!.version
            var replies: [PushReply] = []
            if deleteFirst {
                replies.append(try await a.push(store, [(.delete, "n1", seen, [])]))
                replies.append(try await b.push(store, [(.update, "n1", seen, [(0, .text("judul baru"))])]))
            } else {
                replies.append(try await b.push(store, [(.update, "n1", seen, [(0, .text("judul baru"))])]))
                replies.append(try await a.push(store, [(.delete, "n1", seen, [])]))
            }
            let conflict = try #require(replies.flatMap(\.conflicts).first)
            #expect(conflict.kind == .deleteUpdate)
            #expect(conflict.policy == "update-wins")
            #expect(conflict.loser?.replicaId == a.replica)
            #expect(conflict.loser?.value == nil)
            finals.append(try Self.notes(store))
        }
        #expect(
            finals[0] == [[.text("n1"), .text("judul baru"), .text("isi")]], "the row comes back with its other values")
        #expect(finals[0] == finals[1])
    }

    @Test func aLosingChangeMovesTheRowSoItsReplicaPullsTheWinner() async throws {
        let store = try Self.makeStore()
        var a = Device(opd: "pkm-a", clock: 1_764_000_900_000)
        var b = Device(opd: "pkm-b")
        _ = try await a.push(store, [(.upsert, "n1", 0, [(0, .text("base")), (1, .null)])])
        let base = try await Self.pullAll(store).last!.version
        _ = try await a.push(store, [(.update, "n1", base, [(0, .text("A menang"))])])
        let bCursor = try await Self.pullAll(store).last!.version
        let reply = try await b.push(store, [(.update, "n1", base, [(0, .text("B kalah"))])])
        #expect(reply.applied == 0)
        #expect(reply.conflicts.first?.winner?.value == .text("A menang"))
        let forB = try await Self.pullAll(store, after: bCursor)
        #expect(forB.count == 1)
        #expect(forB.first?.columns.first?.value == .text("A menang"))
    }

    @Test func everyReplacedValueIsKeptInTheHistory() async throws {
        let store = try Self.makeStore()
        var a = Device(opd: "pkm-a")
        _ = try await a.push(store, [(.upsert, "n1", 0, [(0, .text("satu")), (1, .null)])])
        _ = try await a.push(store, [(.update, "n1", 0, [(0, .text("dua"))])])
        _ = try await a.push(store, [(.delete, "n1", 0, [])])
        let old = try await store.pool.read { db in
            try Data.fetchAll(db, sql: "SELECT old FROM _ks_history WHERE tbl = 'notes' ORDER BY version")
        }
        let decoded = try old.map { try HistoryCoding.decode([UInt8]($0)) }
        #expect(decoded.count == 3)
        #expect(decoded[1].map(\.1) == [.text("satu")])
        #expect(decoded[2].map(\.1) == [.text("dua"), .null])
    }

    @Test func pullPagesReturnEveryChangedRowOnceInVersionOrder() async throws {
        let store = try Self.makeStore()
        var a = Device(opd: "pkm-a")
        _ = try await a.push(store, (0..<7).map { (.upsert, "n\($0)", 0, [(0, .text("t\($0)")), (1, .null)]) })
        _ = try await a.push(store, [(.update, "n2", 0, [(0, .text("berubah"))])])
        let rows = try await Self.pullAll(store, limit: 3)
        #expect(rows.count == 7)
        #expect(Set(rows.map(\.primaryKey)).count == 7)
        #expect(rows.map(\.version) == rows.map(\.version).sorted())
        #expect(rows.last?.primaryKey == [.text("n2")], "the row changed last comes last, once")
    }

    @Test func concurrentPushesAreAllMergedAndARefusedOneRollsBackAlone() async throws {
        let store = try Self.makeStore()
        let outcomes = try await withThrowingTaskGroup(of: (Int, Bool).self) { group in
            for i in 0..<24 {
                group.addTask {
                    var device = Device(opd: i % 2 == 0 ? "pkm-a" : "pkm-b")
                    // Replica 7 sends a row without its NOT NULL title after a valid one.
                    let rows: [(Changeset.Operation, String, UInt64, [(Int, SQLValue)])] =
                        i == 7
                        ? [
                            (.upsert, "ok-7", 0, [(0, .text("t")), (1, .null)]),
                            (.upsert, "bad-7", 0, [(0, .null), (1, .null)]),
                        ]
                        : [(.upsert, "n\(i)", 0, [(0, .text("t\(i)")), (1, .null)])]
                    do {
                        _ = try await device.push(store, rows)
                        return (i, true)
                    } catch let error as SyncError where error.code == .constraintViolation {
                        return (i, false)
                    }
                }
            }
            return try await group.reduce(into: [Int: Bool]()) { $0[$1.0] = $1.1 }
        }
        #expect(outcomes.filter { !$0.value }.map(\.key) == [7])
        let ids = try Self.notes(store).map { $0[0] }
        #expect(ids.count == 23)
        #expect(!ids.contains(.text("ok-7")), "nothing of the refused changeset is applied")
    }

    @Test func aChangesetOverlappingWhatWasAppliedIsRefused() async throws {
        let store = try Self.makeStore()
        var a = Device(opd: "pkm-a")
        _ = try await a.push(store, [(.upsert, "n1", 0, [(0, .text("x")), (1, .null)])])
        a.sequence = 0
        await #expect {
            _ = try await a.push(store, [(.upsert, "n2", 0, [(0, .text("y")), (1, .null)])])
        } throws: { ($0 as? SyncError)?.code == .sequenceConflict }
        #expect(try Self.notes(store).count == 1)
    }

    @Test func aReplicaOfOneOPDCannotBePushedWithAnotherOPDsToken() async throws {
        let store = try Self.makeStore()
        var a = Device(opd: "pkm-a")
        _ = try await a.push(store, [(.upsert, "n1", 0, [(0, .text("x")), (1, .null)])])
        var impostor = a
        impostor.device = KotaSyncServer.Device(tokenID: "t-b", opd: "pkm-b")
        await #expect {
            _ = try await impostor.push(store, [(.update, "n1", 0, [(0, .text("diubah"))])])
        } throws: { ($0 as? SyncError)?.code == .forbidden }
        #expect(try Self.notes(store) == [[.text("n1"), .text("x"), .null]])
    }

    @Test func aStampFarAheadOfTheServerIsClampedAndCounted() async throws {
        let store = try Self.makeStore()
        let now = UInt64(Date().timeIntervalSince1970 * 1000)
        var fast = Device(opd: "pkm-a", clock: now + 86_400_000)
        let reply = try await fast.push(store, [(.upsert, "n1", 0, [(0, .text("x")), (1, .null)])])
        #expect(reply.clampedStamps == 1)
        let flagged = try await store.pool.read { db in
            try Int.fetchOne(db, sql: "SELECT sum(clamped) FROM _ks_history")
        }
        #expect(flagged == 1, "the change is flagged in its history entry")
        let stamp = try await Self.pullAll(store).first!.stamp
        #expect(stamp.milliseconds <= UInt64(Date().timeIntervalSince1970 * 1000) + 5 * 60 * 1000)
    }

    /// What devices say about themselves (`KotaSync-*` headers) is batched, not written per
    /// request; the overview still shows the latest of it, folded per replica.
    @Test func aDevicesReportsAreFoldedAndShownInTheOverview() async throws {
        let store = try Self.makeStore()
        var a = Device(opd: "pkm-a")
        _ = try await a.push(store, [(.upsert, "n1", 0, [(0, .text("x")), (1, .null)])])
        _ = try await a.push(store, [(.upsert, "n2", 0, [(0, .text("y")), (1, .null)])])
        let stranger = DeviceReport(
            replicaId: UUID(), opd: "pkm-a", clientVersion: "x", pending: 1, lastError: nil, cursor: 0)
        try await store.record(stranger, pulled: true)
        // A push's report, then a pull's that says less, then one with an error.
        try await store.record(
            DeviceReport(
                replicaId: a.replica, opd: "pkm-a", clientVersion: "kotasync 1.2", pending: 3, lastError: nil,
                cursor: nil),
            pulled: false)
        try await store.record(
            DeviceReport(
                replicaId: a.replica, opd: "pkm-a", clientVersion: nil, pending: nil, lastError: nil, cursor: 1),
            pulled: true)
        try await store.record(
            DeviceReport(
                replicaId: a.replica, opd: "pkm-a", clientVersion: nil, pending: 0, lastError: "network_unreachable",
                cursor: nil),
            pulled: false)
        let overview = try await store.overview(timeZone: TimeZone(identifier: "Asia/Jakarta")!)
        #expect(overview.devices.count == 1, "a replica the master does not know is not shown")
        let device = try #require(overview.devices.first)
        #expect(device.replicaId == a.replica)
        #expect(device.clientVersion == "kotasync 1.2")
        #expect(device.pending == 0)
        #expect(device.lastError == "network_unreachable")
        #expect(device.lag == 1, "pulled at cursor 1 of master version 2")
        #expect(device.lastPullAt != nil)

        // A later batch keeps what it does not say, and clears the error.
        try await store.record(
            DeviceReport(
                replicaId: a.replica, opd: "pkm-a", clientVersion: nil, pending: nil, lastError: nil, cursor: 2),
            pulled: true)
        let later = try #require(
            try await store.overview(timeZone: TimeZone(identifier: "Asia/Jakarta")!).devices.first)
        #expect(later.clientVersion == "kotasync 1.2")
        #expect(later.pending == 0)
        #expect(later.lastError == nil)
        #expect(later.lag == 0)
    }

    /// The overview counts changes per day of the city's time zone and per OPD, within its window,
    /// reading only the window's part of the history.
    @Test func changesPerDayAreCountedInTheCitysDaysWithinTheWindow() async throws {
        let store = try Self.makeStore()
        /// The device clock that makes the next row's stamp `iso` (a push ticks it first).
        func clock(_ iso: String) throws -> UInt64 {
            UInt64(try Date(iso, strategy: .iso8601).timeIntervalSince1970 * 1000) - 1
        }
        var a = Device(opd: "pkm-a", clock: try clock("2026-11-18T16:59:00Z"))  // 23:59 in Binjai (UTC+7)
        _ = try await a.push(store, [(.upsert, "n1", 0, [(0, .text("x")), (1, .null)])])
        a.clock = try clock("2026-11-18T17:01:00Z")  // 00:01 the next day there
        _ = try await a.push(store, [(.upsert, "n2", 0, [(0, .text("y")), (1, .null)])])
        var b = Device(opd: "pkm-b", clock: try clock("2026-11-10T05:00:00Z"))  // before the window
        _ = try await b.push(store, [(.upsert, "n3", 0, [(0, .text("z")), (1, .null)])])
        b.clock = try clock("2026-11-19T04:59:00Z")
        _ = try await b.push(store, [(.upsert, "n4", 0, [(0, .text("w")), (1, .null)])])

        let overview = try await store.overview(
            days: 3, timeZone: TimeZone(identifier: "Asia/Jakarta")!,
            now: try Date("2026-11-20T05:00:00Z", strategy: .iso8601))
        #expect(overview.changesPerDay == ["2026-11-18": ["pkm-a": 1], "2026-11-19": ["pkm-a": 1, "pkm-b": 1]])
        let plan = try await store.read { db in
            try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + SQLiteMasterStore.changesPerDay, arguments: [0, 0])
                .map { $0["detail"] as String }
        }
        // A range of the index, not a scan of all of it (nor of the table).
        #expect(plan.contains { $0.contains("SEARCH h USING COVERING INDEX _ks_history_stamp (stamp>?)") }, "\(plan)")
    }

    /// Conflict records are counted on the day the server decided them, in the city's time zone,
    /// from the window's part of their index.
    @Test func conflictsPerDayCountTheRecordsOfTheWindow() async throws {
        let store = try Self.makeStore()
        var a = Device(opd: "pkm-a")
        var b = Device(opd: "pkm-b")
        _ = try await a.push(store, [(.upsert, "n1", 0, [(0, .text("a")), (1, .null)])])
        _ = try await b.push(store, [(.upsert, "n1", 0, [(0, .text("b")), (1, .null)])])
        let jakarta = TimeZone(identifier: "Asia/Jakarta")!
        let now = Date()
        let overview = try await store.overview(days: 1, timeZone: jakarta, now: now)
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = jakarta
        let today = calendar.dateComponents([.year, .month, .day], from: now)
        let day = String(format: "%04d-%02d-%02d", today.year!, today.month!, today.day!)
        let records = try await store.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM _ks_conflicts") }
        #expect((records ?? 0) > 0)
        #expect(overview.conflictsPerDay == [day: records])
        // A window that starts after them counts none of them.
        let later = try await store.overview(days: 1, timeZone: jakarta, now: now.addingTimeInterval(3 * 86_400))
        #expect(later.conflictsPerDay.isEmpty)
        let plan = try await store.read { db in
            try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + SQLiteMasterStore.conflictsPerDay, arguments: [0, ""])
                .map { $0["detail"] as String }
        }
        #expect(
            plan.contains {
                $0.contains("SEARCH _ks_conflicts USING COVERING INDEX _ks_conflicts_decided (decided_at>?)")
            },
            "\(plan)")
    }
}
