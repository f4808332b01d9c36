import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite

extension SQLiteMasterStore {
    public func push(_ changeset: Changeset, from device: Device) async throws -> PushOutcome {
        // A changeset seen before gets its stored reply, whatever the schema says now.
        if let stored = try await read({ db in
            try PushEnvelope.storedReply(changeset.id, device: device, ledger: SQLitePushLedger(db: db))
        }) {
            return stored
        }
        let validated = try ChangesetValidator.validate(changeset, against: config.tables)
        return try await commit(validated, rows: .decoded(changeset.rows), from: device)
    }

    public func push(_ checked: CheckedPush, from device: Device) async throws -> PushOutcome {
        if let stored = try await read({ db in
            try PushEnvelope.storedReply(checked.changeset.id, device: device, ledger: SQLitePushLedger(db: db))
        }) {
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

    /// Group commit: merges every push waiting at that moment in one transaction and answers
    /// them all after the one durable commit. Under load this turns many fsyncs into one; a lone
    /// push waits for nobody. No push is answered before the commit that holds it.
    func commitWaitingPushes() async {
        while true {
            let batch = commits.withLock { state in
                let batch = Array(state.waiting.prefix(Self.maxPushesPerCommit))
                state.waiting.removeFirst(batch.count)
                if batch.isEmpty { state.committing = false }
                return batch
            }
            guard !batch.isEmpty else { return }
            let results: [Result<(PushOutcome, Writer?), any Error>]
            do {
                results = try await mergeGroup(batch.map { ($0.validated, $0.rows, $0.device) }, now: Date())
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

    /// A push's own failure inside a group's transaction, told apart from the transaction's.
    private struct PushFailure: Error {
        let error: any Error
    }

    /// Merges a group of pushes in one transaction; a push that fails is rolled back alone and
    /// the others stand. Throws only when the transaction itself fails (nothing of it stands).
    ///
    /// First without savepoints: inside a savepoint SQLite copies every page a push touches to
    /// a sub-journal (a temporary file, once it passes 64 KiB) so that the savepoint can be
    /// rolled back — about a sixth of a merge's time in `perf`. When a push fails, that whole
    /// transaction is rolled back and the group merged again, each push in a savepoint of its
    /// own: the push fails there again and is rolled back alone. A refused push in a group
    /// costs the group's merge twice; a lone push is never merged twice (its transaction is
    /// its savepoint).
    func mergeGroup(_ batch: [(validated: ValidatedChangeset, rows: PushRows, device: Device)], now: Date) async throws
        -> [Result<(PushOutcome, Writer?), any Error>]
    {
        do {
            return try await pool.write { db in
                var registered: [Int64: Writer] = [:]
                return try batch.map { push in
                    do {
                        return .success(
                            try self.merge(
                                push.validated, rows: push.rows, device: push.device, db: db, now: now,
                                registered: &registered))
                    } catch {
                        throw PushFailure(error: error)
                    }
                }
            }
        } catch let failure as PushFailure {
            if batch.count == 1 { return [.failure(failure.error)] }
        }
        return try await pool.write { db in
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
    }

    /// The most pushes one group commit takes.
    static let maxPushesPerCommit = 64

    /// One push of a group commit: the envelope (``PushEnvelope``) over this
    /// master's ports.
    private func merge(
        _ validated: ValidatedChangeset, rows: PushRows, device: Device, db: Database, now: Date,
        registered known: inout [Int64: Writer]
    ) throws -> (PushOutcome, Writer?) {
        try PushEnvelope.merge(
            validated, rows: rows, device: device, now: now, ledger: SQLitePushLedger(db: db),
            window: SQLiteMergeStore.chunk, registered: &known
        ) { registered in
            // Replicas registered earlier in this group commit are not in `writers` yet.
            try mergeWriter(db: db, now: now, resolve: { number in registered[number] ?? self.writer(number: number) })
        }
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
