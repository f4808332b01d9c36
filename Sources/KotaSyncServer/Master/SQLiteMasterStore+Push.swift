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
        return try await withCheckedThrowingContinuation { continuation in
            let startCommitter = commits.withLock { state in
                state.waiting.append(PendingPush(validated: validated, device: device, continuation: continuation))
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
                                    push.validated, device: push.device, db: db, now: now, registered: &registered)
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
                            "rows": "\(push.validated.changeset.rows.count)", "replayed": "\(outcome.replayed)",
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
        _ validated: ValidatedChangeset, device: Device, db: Database, now: Date,
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

        var merge = RowMerger(
            db: db, config: config, statements: statements, writer: writer, changesetID: changeset.id,
            decidedAt: nowText,
            serverMilliseconds: Timestamp.milliseconds(now),
            resolve: { number in registeredInBatch[number] ?? self.writer(number: number) },
            describe: Memo { number in self.opd(ofWriter: number, db: db) }.callAsFunction)
        try merge.start()
        for (index, row) in changeset.rows.enumerated() {
            do {
                try merge.merge(row, index: index, of: validated)
            } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
                let table = validated.tables[row.table].name
                throw SyncError(
                    .constraintViolation,
                    "Row \(index) (\(table) \(row.primaryKey.map(\.description).joined(separator: ", "))) breaks a constraint of the master: \(error.message ?? "\(error)"). Correct it on the replica."
                )
            }
        }
        let reply = PushReply(
            changesetId: changeset.id, replicaId: changeset.replicaID, rows: changeset.rows.count,
            applied: merge.applied,
            clampedStamps: merge.clamped, masterSequence: merge.version, conflicts: merge.reports)
        let replyData = try ProtocolJSON.encoder().encode(reply)
        try db.execute(
            sql: """
                INSERT INTO _ks_changesets(id, replica, first_sequence, last_sequence, rows, received_at, reply)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                idBlob, writer.number, Int64(changeset.firstSequence), Int64(changeset.lastSequence),
                changeset.rows.count,
                nowText, replyData,
            ])
        try db.execute(
            sql: "UPDATE _ks_replicas SET last_sequence = ?, last_push_at = ? WHERE number = ?",
            arguments: [Int64(changeset.lastSequence), nowText, writer.number])
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

    func opd(ofWriter number: Int64, db: Database) -> String {
        if number == 0 { return "master" }
        return (try? String.fetchOne(db, sql: "SELECT opd FROM _ks_replicas WHERE number = ?", arguments: [number]))
            ?? "?"
    }
}

/// Merges the rows of one changeset inside the push transaction: reads each row's clocks and
/// values, asks ``MergeEngine`` what to do, and writes the result, its history and its conflicts.
struct RowMerger {
    let db: Database
    let config: ServerConfig
    let statements: [String: TableSQL]
    let writer: Writer
    let changesetID: UUID
    let decidedAt: String
    let serverMilliseconds: UInt64
    let resolve: (Int64) -> Writer
    let describe: (Int64) -> String

    /// The master's latest version; each change that moves a row takes the next one.
    private(set) var version: UInt64 = 0
    private(set) var applied = 0
    private(set) var clamped = 0
    private(set) var reports: [ConflictReport] = []

    init(
        db: Database, config: ServerConfig, statements: [String: TableSQL], writer: Writer, changesetID: UUID,
        decidedAt: String,
        serverMilliseconds: UInt64, resolve: @escaping (Int64) -> Writer, describe: @escaping (Int64) -> String
    ) {
        self.db = db
        self.config = config
        self.statements = statements
        self.writer = writer
        self.changesetID = changesetID
        self.decidedAt = decidedAt
        self.serverMilliseconds = serverMilliseconds
        self.resolve = resolve
        self.describe = describe
    }

    mutating func start() throws {
        version = try UInt64.fetchOne(db, sql: "SELECT max(version) FROM _ks_rows") ?? 0
    }

    mutating func merge(_ row: Changeset.Row, index: Int, of validated: ValidatedChangeset) throws {
        let table = validated.tables[row.table]
        let pk = Data(PrimaryKeyCoding.encode(row.primaryKey))
        let (stamp, wasClamped) = config.clockSkew.admit(row.stamp, serverMilliseconds: serverMilliseconds)
        if wasClamped { clamped += 1 }
        let (columns, incoming, bases) = validated.schemaColumns(of: row)

        let meta = try Row.fetchOne(
            db.cachedStatement(sql: "SELECT version, open_conflicts, clocks FROM _ks_rows WHERE tbl = ? AND pk = ?"),
            arguments: [table.name, pk])
        let current = try meta.map { meta throws(SyncError) in
            try RowClocksCoding.decode(
                [UInt8](meta["clocks"] as Data), version: UInt64(meta["version"] as Int64),
                columnCount: table.columns.count, resolve: resolve)
        }
        let existing = (meta?["open_conflicts"] ?? 0) > 0 ? try openRecords(table, pk: pk) : [:]

        let change = IncomingChange(
            operation: row.operation, writer: writer, stamp: stamp, rowBase: row.version, columns: columns,
            columnBases: bases)
        let decision = MergeEngine.decide(
            current: current, losers: existing.values.map(\.record).filter { $0.column != nil }, change: change,
            columnCount: table.columns.count, newVersion: version + 1)
        guard let clocks = decision.clocks else { return }
        version += 1

        let sql = statements[table.name]!
        let old = current == nil ? nil : try sql.values(db, key: row.primaryKey)
        var values = old ?? Array(repeating: .null, count: table.columns.count)
        if decision.effect == .resurrect, let before = try valuesBeforeDeletion(table, pk: pk) { values = before }
        // The values the row's heads held before this change: for a deleted row, those it had
        // when it was deleted (a record made now may name one of them as the loser).
        let prior = current == nil ? nil : values
        var replaced = decision.apply(to: &values, incoming: incoming) { existing[$0]?.loserValue }

        switch decision.effect {
        case .none:
            break
        case .create, .update, .resurrect:
            try sql.upsert(db, key: row.primaryKey, values: values)
        case .delete:
            replaced = old.map { Array($0.enumerated()) } ?? []
            try sql.delete(db, key: row.primaryKey)
        }
        if decision.effect != .none {
            applied += 1
            try db.cachedStatement(
                sql:
                    "INSERT OR REPLACE INTO _ks_history(tbl, pk, version, writer, stamp, op, old, clamped) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            ).run([
                .text(table.name), .blob([UInt8](pk)), .integer(Int64(version)), .integer(writer.number),
                .integer(Int64(bitPattern: stamp.rawValue)), .integer(Int64(row.operation.rawValue)),
                .blob(HistoryCoding.encode(decision.effect == .create ? [] : replaced)), .integer(wasClamped ? 1 : 0),
            ])
        }

        try reconcile(
            records: decision.records, with: existing, table: table, key: row.primaryKey, pk: pk, change: change,
            incoming: incoming, old: prior, new: values)

        try db.cachedStatement(
            sql:
                "INSERT OR REPLACE INTO _ks_rows(tbl, pk, version, deleted, open_conflicts, clocks) VALUES (?, ?, ?, ?, ?, ?)"
        ).run([
            .text(table.name), .blob([UInt8](pk)), .integer(Int64(clocks.version)), .integer(clocks.isDeleted ? 1 : 0),
            .integer(Int64(decision.records.count)), .blob(RowClocksCoding.encode(clocks)),
        ])
    }

    /// An open conflict record as stored: the record, its row id, and the losing value.
    struct StoredRecord {
        var id: Int64
        var record: ConflictRecord
        var loserValue: SQLValue?
    }

    private func openRecords(_ table: TableSchema, pk: Data) throws -> [RecordKey: StoredRecord] {
        let rows = try Row.fetchAll(
            db.cachedStatement(
                sql: """
                    SELECT id, col, kind, loser_writer, loser_stamp, loser_version, loser_insert, loser_value,
                        loser_has_value, winner_writer, winner_stamp
                    FROM _ks_conflicts WHERE tbl = ? AND pk = ? AND status = 'open'
                    """),
            arguments: [table.name, pk])
        var out: [RecordKey: StoredRecord] = [:]
        for r in rows {
            let column = (r["col"] as String?).flatMap { name in table.columns.firstIndex { $0.name == name } }
            let kind = ConflictReport.Kind(rawValue: r["kind"]) ?? .updateUpdate
            let loser = Head(
                writer: resolve(r["loser_writer"]), version: UInt64(r["loser_version"] as Int64),
                stamp: HLC(rawValue: UInt64(bitPattern: r["loser_stamp"])), isInsert: r["loser_insert"] as Int != 0,
                isDelete: kind == .deleteUpdate && column == nil)
            let winner = Head(
                writer: resolve(r["winner_writer"]), version: 0,
                stamp: HLC(rawValue: UInt64(bitPattern: r["winner_stamp"])))
            let record = ConflictRecord(column: column, kind: kind, loser: loser, winner: winner)
            let hasValue: Int = r["loser_has_value"]
            out[record.key] = StoredRecord(
                id: r["id"], record: record,
                loserValue: hasValue == 1 ? SQLValue(r["loser_value"] as DatabaseValue) : nil)
        }
        return out
    }

    /// Makes the stored open records of a row what the merge decided: new ones inserted, ones
    /// whose winner changed re-pointed, ones no longer standing marked superseded.
    private mutating func reconcile(
        records: [ConflictRecord], with existing: [RecordKey: StoredRecord], table: TableSchema, key: [SQLValue],
        pk: Data, change: IncomingChange, incoming: [Int: SQLValue], old: [SQLValue]?, new: [SQLValue]
    ) throws {
        let changes = RecordChanges(wanted: records, stored: existing.mapValues(\.record))
        for k in changes.superseded {
            try db.cachedStatement(sql: "UPDATE _ks_conflicts SET status = 'superseded' WHERE id = ?")
                .execute(arguments: [existing[k]!.id])
        }
        for record in changes.repointed {
            let stored = existing[record.key]!
            let winnerValue = record.column.map { new[$0] }
            try db.cachedStatement(
                sql: """
                    UPDATE _ks_conflicts SET kind = ?, winner_writer = ?, winner_stamp = ?, winner_value = ?,
                        winner_has_value = ? WHERE id = ?
                    """
            ).execute(arguments: [
                record.kind.rawValue, record.winner.writer.number, Int64(bitPattern: record.winner.stamp.rawValue),
                winnerValue?.databaseValue ?? .null, winnerValue == nil ? 0 : 1, stored.id,
            ])
            reports.append(
                report(
                    record, id: stored.id, table: table, key: key, base: nil, loserValue: stored.loserValue,
                    winnerValue: winnerValue))
        }
        for record in changes.inserted {
            let winnerValue = record.column.map { new[$0] }
            let loserValue = RecordChanges.loserValue(of: record, change: change, incoming: incoming, prior: old)
            let baseVersion = record.column.map { change.base(for: $0) } ?? change.rowBase
            let base = try record.column.flatMap { c in
                try valueAt(base: baseVersion, column: c, table: table, pk: pk, current: old?[c])
            }
            let policy = record.kind == .deleteUpdate ? MergeEngine.deletePolicy : MergeEngine.columnPolicy
            try db.cachedStatement(
                sql: """
                    INSERT INTO _ks_conflicts(tbl, pk, col, kind, policy, status, base_version, base_value, has_base,
                        winner_writer, winner_stamp, winner_value, winner_has_value, loser_writer, loser_stamp,
                        loser_version, loser_insert, loser_value, loser_has_value, changeset, decided_at)
                    VALUES (?, ?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """
            ).execute(arguments: [
                table.name, pk, record.column.map { table.columns[$0].name }, record.kind.rawValue, policy,
                Int64(baseVersion), base?.databaseValue ?? .null, base == nil ? 0 : 1,
                record.winner.writer.number, Int64(bitPattern: record.winner.stamp.rawValue),
                winnerValue?.databaseValue ?? .null, winnerValue == nil ? 0 : 1,
                record.loser.writer.number, Int64(bitPattern: record.loser.stamp.rawValue), Int64(record.loser.version),
                record.loser.isInsert ? 1 : 0, loserValue?.databaseValue ?? .null, loserValue == nil ? 0 : 1,
                Data(changesetID.bytes), decidedAt,
            ])
            reports.append(
                report(
                    record, id: db.lastInsertedRowID, table: table, key: key, base: base, loserValue: loserValue,
                    winnerValue: winnerValue))
        }
    }

    private func report(
        _ record: ConflictRecord, id: Int64, table: TableSchema, key: [SQLValue], base: SQLValue?,
        loserValue: SQLValue?,
        winnerValue: SQLValue?
    ) -> ConflictReport {
        ConflictReport(
            id: id, table: table.name, primaryKey: key, column: record.column.map { table.columns[$0].name },
            kind: record.kind,
            policy: record.kind == .deleteUpdate ? MergeEngine.deletePolicy : MergeEngine.columnPolicy, base: base,
            winner: .init(
                replicaId: record.winner.writer.id, opd: describe(record.winner.writer.number),
                stamp: record.winner.stamp,
                value: winnerValue),
            loser: .init(
                replicaId: record.loser.writer.id, opd: describe(record.loser.writer.number), stamp: record.loser.stamp,
                value: loserValue),
            status: "open", decidedAt: decidedAt)
    }

    private func valuesBeforeDeletion(_ table: TableSchema, pk: Data) throws -> [SQLValue]? {
        guard
            let old = try Data.fetchOne(
                db.cachedStatement(
                    sql: "SELECT old FROM _ks_history WHERE tbl = ? AND pk = ? AND op = 3 ORDER BY version DESC LIMIT 1"
                ),
                arguments: [table.name, pk])
        else { return nil }
        var values = Array(repeating: SQLValue.null, count: table.columns.count)
        for (c, v) in try HistoryCoding.decode([UInt8](old)) where c < values.count { values[c] = v }
        return values
    }

    /// The value `column` had at master version `base`: the old value saved by the first change
    /// after `base` that touched it, or the current value if none did.
    private func valueAt(base: UInt64, column: Int, table: TableSchema, pk: Data, current: SQLValue?) throws
        -> SQLValue?
    {
        guard base > 0 else { return nil }
        let rows = try Row.fetchCursor(
            db.cachedStatement(
                sql: "SELECT old FROM _ks_history WHERE tbl = ? AND pk = ? AND version > ? ORDER BY version"),
            arguments: [table.name, pk, Int64(base)])
        while let row = try rows.next() {
            if let hit = try HistoryCoding.decode([UInt8](row["old"] as Data)).first(where: { $0.0 == column }) {
                return hit.1
            }
        }
        return current
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
