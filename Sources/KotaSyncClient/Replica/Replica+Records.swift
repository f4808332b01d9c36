import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite

extension Replica {
    /// How many acknowledged records `status` remembers; older ones are forgotten (their changes
    /// are on the master, and the master's history keeps them).
    public static let acknowledgedMemory = 200

    /// The recently acknowledged records, newest last; made on first use.
    static let acknowledgedStatement = """
        CREATE TABLE IF NOT EXISTS _ks_acked (
            n INTEGER PRIMARY KEY, tbl TEXT NOT NULL, pk BLOB NOT NULL, op TEXT NOT NULL,
            changeset_id TEXT NOT NULL, acknowledged_at TEXT NOT NULL
        )
        """

    /// Remembers the rows of an acknowledged changeset for `status`, keeping the last
    /// ``acknowledgedMemory``. Runs inside the acknowledgement's transaction.
    func rememberAcknowledged(_ changeset: Changeset, _ db: Database, now: Date) throws {
        try db.execute(sql: Self.acknowledgedStatement)
        let insert = try db.cachedStatement(
            sql: "INSERT INTO _ks_acked(tbl, pk, op, changeset_id, acknowledged_at) VALUES (?, ?, ?, ?, ?)")
        for row in changeset.rows.suffix(Self.acknowledgedMemory) {
            try insert.execute(arguments: [
                changeset.tables[row.table].name, Data(PrimaryKeyCoding.encode(row.primaryKey)),
                "\(row.operation)", changeset.id.uuidString, now.iso8601,
            ])
        }
        try db.execute(
            sql: "DELETE FROM _ks_acked WHERE n <= (SELECT max(n) FROM _ks_acked) - ?",
            arguments: [Self.acknowledgedMemory])
    }

    /// Every record's state: pending in the log, sent in the outbox, conflicted, rejected, and
    /// recently acknowledged.
    func recordStates(
        _ db: Database, log entries: [ChangeLog.Entry], conflicts: [ConflictReport], outcomes: [ChangeOutcome]
    ) throws -> [RecordState] {
        var records: [RecordState] = []
        var sentThrough: Int64 = 0
        if let row = try Row.fetchOne(db, sql: "SELECT last_seq, body, created_at FROM _ks_outbox LIMIT 1"),
            let changeset = try? ChangesetCodec.decode(
                [UInt8](row["body"] as Data),
                limits: DecodeLimits(maxUncompressedBytes: .max, maxCompressionRatio: .max))
        {
            sentThrough = row["last_seq"]
            for r in changeset.rows {
                records.append(
                    RecordState(
                        table: changeset.tables[r.table].name, primaryKey: r.primaryKey, state: .sent,
                        detail: "\(r.operation) in changeset \(changeset.id), awaiting acknowledgement",
                        at: row["created_at"]))
            }
        }
        for pending in ChangeLog.coalesce(entries.filter { $0.sequence > sentThrough }) {
            let what =
                pending.replacedWhole
                ? (pending.startsWithInsert ? "inserted" : "inserted or deleted")
                : "updated \(updatedColumns(pending))"
            records.append(
                RecordState(
                    table: pending.table, primaryKey: pending.key, state: .pending, detail: "\(what), not sent yet"))
        }
        let byId = Dictionary(uniqueKeysWithValues: conflicts.map { ($0.id, $0) })
        for outcome in outcomes {
            guard let report = byId[outcome.conflictId] else { continue }
            let column = report.column.map { ".\($0)" } ?? ""
            records.append(
                RecordState(
                    table: report.table, primaryKey: report.primaryKey, state: .conflicted,
                    detail: "#\(report.id) \(report.kind.rawValue)\(column): \(outcome.kind.rawValue): \(outcome.why)",
                    at: report.decidedAt))
        }
        if try db.tableExists("_ks_rejected") {
            for row in try Row.fetchAll(
                db, sql: "SELECT tbl, pk, code, message, rejected_at FROM _ks_rejected ORDER BY rejected_at")
            {
                records.append(
                    RecordState(
                        table: row["tbl"], primaryKey: try PrimaryKeyCoding.decode([UInt8](row["pk"] as Data)),
                        state: .rejected, detail: "\(row["message"] as String) [\(row["code"] as String)]",
                        at: row["rejected_at"]))
            }
        }
        if try db.tableExists("_ks_acked") {
            for row in try Row.fetchAll(
                db, sql: "SELECT tbl, pk, op, changeset_id, acknowledged_at FROM _ks_acked ORDER BY n DESC")
            {
                records.append(
                    RecordState(
                        table: row["tbl"], primaryKey: try PrimaryKeyCoding.decode([UInt8](row["pk"] as Data)),
                        state: .acknowledged,
                        detail: "\(row["op"] as String) in changeset \(row["changeset_id"] as String)",
                        at: row["acknowledged_at"]))
            }
        }
        return records
    }

    private func updatedColumns(_ row: ChangeLog.PendingRow) -> String {
        guard let table = tables[row.table] else { return "" }
        return ChangeLog.columns(in: row.mask, count: table.columns.count).map { table.columns[$0].name }
            .joined(separator: ", ")
    }
}
