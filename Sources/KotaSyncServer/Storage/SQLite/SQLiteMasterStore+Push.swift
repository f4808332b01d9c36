import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite

extension SQLiteMasterStore {
    public func push(_ changeset: Changeset, from device: Device) async throws -> PushOutcome {
        // A changeset seen before gets its stored reply, whatever the schema says now.
        if let stored = try await read({ db in try Self.storedReply(changeset.id, device: device, db: db) }) {
            return stored
        }
        let validated = try ChangesetValidator.validate(changeset, against: config.tables)
        return try await commit(validated, rows: .decoded(changeset.rows), from: device)
    }

    public func push(_ checked: CheckedPush, from device: Device) async throws -> PushOutcome {
        if let stored = try await read({ db in try Self.storedReply(checked.changeset.id, device: device, db: db) }) {
            return stored
        }
        let validated = try checked.validation.get()
        return try await commit(validated, rows: .streamed(checked), from: device)
    }

    /// Queues a push for the next group commit and waits for its outcome.
    private func commit(_ validated: ValidatedChangeset, rows: PushRows, from device: Device) async throws
        -> PushOutcome
    {
        try await withCheckedThrowingContinuation { continuation in
            let startCommitter = commits.withLock { state in
                state.waiting.append(
                    PendingPush(validated: validated, rows: rows, device: device, continuation: continuation))
                defer { state.committing = true }
                return !state.committing
            }
            if startCommitter { Task { await self.commitWaitingPushes() } }
        }
    }

    /// Group commit: merges every push waiting at that moment in one transaction, each in a
    /// savepoint of its own (a refused changeset rolls back alone), and answers them all after
    /// the one durable commit. Under load this turns many fsyncs into one; a lone push waits
    /// for nobody. No push is answered before the commit that holds it.
    func commitWaitingPushes() async {
        while true {
            let batch = commits.withLock { state in
                let batch = Array(state.waiting.prefix(Self.maxPushesPerCommit))
                state.waiting.removeFirst(batch.count)
                if batch.isEmpty { state.committing = false }
                return batch
            }
            guard !batch.isEmpty else { return }
            let now = Date()
            let results: [Result<(PushOutcome, Writer?), any Error>]
            do {
                results = try await pool.write { db in
                    var registered: [Int64: Writer] = [:]
                    return batch.map { push in
                        Result {
                            var outcome: (PushOutcome, Writer?)?
                            try db.inSavepoint {
                                outcome = try self.merge(
                                    push.validated, rows: push.rows, device: push.device, db: db, now: now,
                                    registered: &registered)
                                return .commit
                            }
                            return outcome!
                        }
                    }
                }
            } catch {
                logger.error("group commit failed", metadata: ["pushes": "\(batch.count)", "error": "\(error)"])
                for push in batch { push.continuation.resume(throwing: error) }
                continue
            }
            for (push, result) in zip(batch, results) {
                switch result {
                case .success(let (outcome, registered)):
                    // Only after the commit: a rolled-back registration must not leave a stale number.
                    if let registered { writers.withLock { $0[registered.number] = registered } }
                    logger.info(
                        "push merged",
                        metadata: [
                            "opd": "\(push.device.opd)", "changeset_id": "\(push.validated.changeset.id)",
                            "rows": "\(push.rows.count)", "replayed": "\(outcome.replayed)",
                            "group": "\(batch.count)",
                        ])
                    push.continuation.resume(returning: outcome)
                case .failure(let error):
                    push.continuation.resume(throwing: error)
                }
            }
        }
    }

    /// The most pushes one group commit takes.
    static let maxPushesPerCommit = 64

    private func merge(
        _ validated: ValidatedChangeset, rows: PushRows, device: Device, db: Database, now: Date,
        registered known: inout [Int64: Writer]
    ) throws -> (PushOutcome, Writer?) {
        let changeset = validated.changeset
        let idBlob = Data(changeset.id.bytes)
        // Again inside the transaction: another delivery may have committed since the first look.
        if let stored = try Self.storedReply(changeset.id, device: device, db: db) { return (stored, nil) }
        guard changeset.replicaID != .zero else {
            throw SyncError(.changesetMalformed, "The changeset has no replica id.")
        }
        let writer: Writer
        var registered: Writer?
        let nowText = Timestamp.string(now)
        if let row = try Row.fetchOne(
            db, sql: "SELECT number, opd, last_sequence FROM _ks_replicas WHERE uuid = ?",
            arguments: [Data(changeset.replicaID.bytes)])
        {
            guard row["opd"] as String == device.opd else {
                throw SyncError(
                    .forbidden,
                    "Replica \(changeset.replicaID) belongs to another OPD; a device token of \(device.opd) cannot push for it."
                )
            }
            let last: Int64 = row["last_sequence"]
            guard changeset.firstSequence > UInt64(last) else {
                throw SyncError(
                    .sequenceConflict,
                    "The server already applied this replica's changes up to \(last), but this changeset starts at \(changeset.firstSequence) with a new id. Was the replica restored from a backup? Re-initialise it with `kotasync init`."
                )
            }
            writer = self.writer(number: row["number"])
        } else {
            try db.execute(
                sql: "INSERT INTO _ks_replicas(uuid, opd, first_seen_at) VALUES (?, ?, ?)",
                arguments: [Data(changeset.replicaID.bytes), device.opd, nowText])
            writer = Writer(number: db.lastInsertedRowID, id: changeset.replicaID)
            registered = writer
            known[writer.number] = writer
        }
        // Replicas registered earlier in this group commit are not in `writers` yet.
        let registeredInBatch = known

        var merge = try mergeWriter(
            db: db, now: now, resolve: { number in registeredInBatch[number] ?? self.writer(number: number) })
        try rows.forEachWindow(validated, size: SQLiteMergeStore.chunk) { window in
            // The state of every key of the window (and of the parents it names), read set-based.
            try merge.prefetch(window.map(\.row), of: validated)
            for (index, row) in window {
                func refuse(_ message: String) -> SyncError {
                    let table = validated.tables[row.table].name
                    return SyncError(
                        .constraintViolation,
                        "Row \(index) (\(table) \(row.primaryKey.map(\.description).joined(separator: ", "))) breaks a constraint of the master: \(message). Correct it on the replica."
                    )
                }
                do {
                    try merge.merge(row, of: validated, writer: writer, opd: device.opd)
                } catch let error as MergeStoreConstraintViolation {
                    throw refuse(error.message)
                } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
                    throw refuse(error.message ?? "\(error)")
                }
            }
        }
        try merge.finish()
        let reply = PushReply(
            changesetId: changeset.id, replicaId: changeset.replicaID, rows: rows.count,
            applied: merge.applied,
            clampedStamps: merge.clamped, masterSequence: merge.version,
            // The access service's device view: the merge reports every record it makes or
            // re-points, other OPDs' among them.
            conflicts: try deviceView(merge.reports, for: device.opd, db: db),
            rejected: merge.rejected.isEmpty ? nil : merge.rejected)
        let replyData = try ProtocolJSON.encoder().encode(reply)
        try db.execute(
            sql: """
                INSERT INTO _ks_changesets(id, replica, first_sequence, last_sequence, rows, received_at, reply)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                idBlob, writer.number, Int64(changeset.firstSequence), Int64(changeset.lastSequence), rows.count,
                nowText, replyData,
            ])
        try db.execute(
            sql: "UPDATE _ks_replicas SET last_sequence = ?, last_push_at = ? WHERE number = ?",
            arguments: [Int64(changeset.lastSequence), nowText, writer.number])
        if !merge.rejected.isEmpty {
            // Counted for the overview's "refused" column.
            try db.execute(
                sql: """
                    INSERT INTO _ks_devices(replica, last_seen_at, refused) VALUES (?1, ?2, ?3)
                    ON CONFLICT(replica) DO UPDATE SET refused = refused + ?3
                    """, arguments: [writer.number, nowText, merge.rejected.count])
        }
        return (PushOutcome(reply: replyData, replayed: false), registered)
    }

    /// The reply stored for changeset `id`, if it was applied before. Only a device of the OPD
    /// that pushed it may see it again.
    static func storedReply(_ id: UUID, device: Device, db: Database) throws -> PushOutcome? {
        guard
            let row = try Row.fetchOne(
                db,
                sql: """
                    SELECT c.reply, r.opd FROM _ks_changesets c JOIN _ks_replicas r ON r.number = c.replica
                    WHERE c.id = ?
                    """, arguments: [Data(id.bytes)])
        else { return nil }
        guard row["opd"] as String == device.opd else {
            throw SyncError(.forbidden, "Changeset \(id) was pushed by another OPD.")
        }
        return PushOutcome(reply: row["reply"], replayed: true)
    }

    /// The merge procedure for one transaction at `now`, over this master's port.
    func mergeWriter(db: Database, now: Date, resolve: @escaping (Int64) -> Writer) throws -> MergeWriter {
        let describe = Memo { number in self.opd(ofWriter: number, db: db) }.callAsFunction
        let store = try SQLiteMergeStore(
            db: db, statements: statements, uniqueIndexes: uniqueIndexes, describe: describe)
        return try MergeWriter(
            store: store, config: config, decidedAt: Timestamp.string(now),
            serverMilliseconds: Timestamp.milliseconds(now), resolve: resolve, describe: describe)
    }

    func opd(ofWriter number: Int64, db: Database) -> String {
        if number == 0 { return "master" }
        return (try? String.fetchOne(db, sql: "SELECT opd FROM _ks_replicas WHERE number = ?", arguments: [number]))
            ?? "?"
    }
}

/// Where a waiting push's rows are: decoded in memory, or to be read again from the changeset's
/// bytes as they are merged.
enum PushRows: Sendable {
    case decoded([Changeset.Row])
    case streamed(CheckedPush)

    var count: Int {
        switch self {
        case .decoded(let rows): rows.count
        case .streamed(let checked): checked.rowCount
        }
    }

    /// Calls `body` with the rows in order, `size` at a time with their indexes (a window of a
    /// streamed changeset is all of it that is decoded at once). A streamed row is checked
    /// against the schema again before `body` sees it; any error stops the walk (and so rolls
    /// back the push's savepoint).
    func forEachWindow(
        _ validated: ValidatedChangeset, size: Int, _ body: ([(index: Int, row: Changeset.Row)]) throws -> Void
    ) throws {
        switch self {
        case .decoded(let rows):
            var start = 0
            while start < rows.count {
                let end = min(start + size, rows.count)
                try body((start..<end).map { ($0, rows[$0]) })
                start = end
            }
        case .streamed(let checked):
            var stream = try checked.rows()
            var window: [(index: Int, row: Changeset.Row)] = []
            window.reserveCapacity(size)
            while true {
                let next: (index: Int, row: Changeset.Row)
                do {
                    guard let row = try stream.next() else { break }
                    let index = stream.rowsRead - 1
                    try validated.check(row, index: index)
                    next = (index, row)
                } catch {
                    // The rows before a bad one are merged first, as one by one: what they
                    // meet (a constraint of the master) is the error the pusher hears, not the
                    // bad row after them.
                    if !window.isEmpty { try body(window) }
                    throw error
                }
                window.append(next)
                if window.count == size {
                    try body(window)
                    window.removeAll(keepingCapacity: true)
                }
            }
            if !window.isEmpty { try body(window) }
        }
    }
}

/// Remembers a function's answers: an OPD name is looked up once per merge, not once per record.
final class Memo<Key: Hashable, Value> {
    private var known: [Key: Value] = [:]
    private let compute: (Key) -> Value

    init(_ compute: @escaping (Key) -> Value) { self.compute = compute }

    func callAsFunction(_ key: Key) -> Value {
        if let value = known[key] { return value }
        let value = compute(key)
        known[key] = value
        return value
    }
}

/// The byte form of a history entry's replaced values: a count, then (column index, value) pairs.
enum HistoryCoding {
    static func encode(_ values: [(Int, SQLValue)]) -> [UInt8] {
        var w = ByteWriter(capacity: 16 + values.count * 16)
        w.writeVarint(UInt64(values.count))
        for (c, v) in values {
            w.writeVarint(UInt64(c))
            w.writeValue(v)
        }
        return w.bytes
    }

    static func decode(_ bytes: [UInt8]) throws(SyncError) -> [(Int, SQLValue)] {
        var r = ByteReader(bytes)
        let n = try r.readCount("history count", limit: 100_000)
        var out: [(Int, SQLValue)] = []
        for _ in 0..<n {
            let c = try r.readCount("history column", limit: 100_000)
            out.append((c, try r.readValue("history value")))
        }
        return out
    }
}
