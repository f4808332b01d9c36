import GRDB
import KotaSyncCore
import KotaSyncSQLite

/// A row's entry in `_ks_rows`, as the merge reads it.
struct StoredRowState {
    var version: UInt64
    var openConflicts: Int64
    /// `RowClocksCoding` bytes.
    var clocks: [UInt8]
    /// The row's scope value (`.null` when it has none).
    var scope: SQLValue
    /// The OPDs that no longer see the row (`,a,b,`).
    var goneFor: String?
}

/// What a merge needs of one replicated table, looked up once per merge instead of once per row.
final class TablePlan {
    let table: TableSchema
    let statements: TableStatements
    let policy: TablePolicy
    let rules: TableRules
    /// Schema indexes of the columns never taken from replicas.
    let hidden: Set<Int>

    init(_ table: TableSchema, sql: TableSQL, config: ServerConfig, db: Database) throws {
        self.table = table
        statements = try TableStatements(sql, db: db)
        policy = config.policy(for: table)
        rules = config.rules.rules(for: table.name)
        hidden = Set(rules.hidden.compactMap { name in table.columns.firstIndex { $0.name == name } })
    }
}

/// The statements a merge runs for every row, taken from the connection's statement cache once
/// per merge (`db.cachedStatement(sql:)` hashes the SQL text on every call) and run through the
/// C API (`Statement.run`, `forEachRow`) rather than GRDB's `Row` and `StatementArguments`,
/// which box every value.
final class MergeStatements {
    private let db: Database
    private let config: ServerConfig
    private let sql: [String: TableSQL]
    private var plans: [String: TablePlan] = [:]

    private let readRow: Statement
    private let writeRow: Statement
    private let history: Statement
    let insertRecord: Statement
    let readRecord: Statement
    let standingRecords: Statement
    let historyAfter: Statement
    let supersede: Statement
    let repoint: Statement

    init(db: Database, config: ServerConfig, statements: [String: TableSQL]) throws {
        self.db = db
        self.config = config
        sql = statements
        readRow = try db.cachedStatement(
            sql: "SELECT version, open_conflicts, clocks, scope, gone_for FROM _ks_rows WHERE tbl = ? AND pk = ?")
        // An upsert, not INSERT OR REPLACE: an existing entry is updated in place instead of
        // being deleted and inserted again (in the table and in its version index).
        writeRow = try db.cachedStatement(
            sql: """
                INSERT INTO _ks_rows(tbl, pk, version, deleted, open_conflicts, clocks, scope, gone_for)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (tbl, pk) DO UPDATE SET version = excluded.version, deleted = excluded.deleted,
                    open_conflicts = excluded.open_conflicts, clocks = excluded.clocks, scope = excluded.scope,
                    gone_for = excluded.gone_for
                """)
        history = try db.cachedStatement(
            sql:
                "INSERT OR REPLACE INTO _ks_history(tbl, pk, version, writer, stamp, op, old, clamped) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        insertRecord = try db.cachedStatement(
            sql: """
                INSERT INTO _ks_conflicts(tbl, pk, col, kind, policy, status, base_version, base_value, has_base,
                    winner_writer, winner_stamp, winner_value, winner_has_value, loser_writer, loser_stamp,
                    loser_version, loser_insert, loser_value, loser_has_value, changeset, decided_at, loser_delete,
                    reason, held)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
        readRecord = try db.cachedStatement(sql: "SELECT \(ConflictReport.columns) FROM _ks_conflicts WHERE id = ?")
        standingRecords = try db.cachedStatement(
            sql: """
                SELECT id, col, kind, policy, status, loser_writer, loser_stamp, loser_version, loser_insert,
                    loser_delete, loser_value, loser_has_value, winner_writer, winner_stamp
                FROM _ks_conflicts WHERE tbl = ? AND pk = ? AND \(RowMerger.standing)
                """)
        historyAfter = try db.cachedStatement(
            sql: "SELECT old FROM _ks_history WHERE tbl = ? AND pk = ? AND version > ? ORDER BY version")
        supersede = try db.cachedStatement(sql: "UPDATE _ks_conflicts SET status = 'superseded' WHERE id = ?")
        repoint = try db.cachedStatement(
            sql: """
                UPDATE _ks_conflicts SET kind = ?, winner_writer = ?, winner_stamp = ?, winner_value = ?,
                    winner_has_value = ? WHERE id = ?
                """)
    }

    /// The table's plan, made on the first row of the table this merge sees.
    func plan(for table: TableSchema) throws -> TablePlan {
        if let plan = plans[table.name] { return plan }
        guard let sql = sql[table.name] else {
            throw SyncError(.internalError, "Table \(table.name) has no statements on this master.")
        }
        let plan = try TablePlan(table, sql: sql, config: config, db: db)
        plans[table.name] = plan
        return plan
    }

    /// The row's entry in `_ks_rows`; nil if the master never had the row.
    func storedRow(table: String, pk: [UInt8]) throws -> StoredRowState? {
        var state: StoredRowState?
        try readRow.forEachRow(
            binding: { p in
                p.bind(.text(table))
                p.bind(blob: pk)
            },
            { r in
                state = StoredRowState(
                    version: UInt64(bitPattern: r.int64(0)), openConflicts: r.int64(1), clocks: r.bytes(2),
                    scope: r.value(3), goneFor: r.isNull(4) ? nil : r.text(4))
                return false
            })
        return state
    }

    /// Writes the row's entry in `_ks_rows`.
    func writeRow(
        table: String, pk: [UInt8], clocks: RowClocks, openConflicts: Int, scope: SQLValue?, goneFor: String?
    ) throws {
        try writeRow.run { p in
            p.bind(.text(table))
            p.bind(blob: pk)
            p.bind(Int64(clocks.version))
            p.bind(clocks.isDeleted ? 1 : 0)
            p.bind(Int64(openConflicts))
            p.bind(blob: RowClocksCoding.encode(clocks))
            p.bind(scope ?? .null)
            p.bind(goneFor.map(SQLValue.text) ?? .null)
        }
    }

    /// Writes a history entry: the values the change at `version` replaced.
    func writeHistory(
        table: String, pk: [UInt8], version: UInt64, writer: Writer, stamp: HLC, op: Changeset.Operation,
        old: [(Int, SQLValue)], clamped: Bool
    ) throws {
        try history.run { p in
            p.bind(.text(table))
            p.bind(blob: pk)
            p.bind(Int64(version))
            p.bind(writer.number)
            p.bind(Int64(bitPattern: stamp.rawValue))
            p.bind(Int64(op.rawValue))
            p.bind(blob: HistoryCoding.encode(old))
            p.bind(clamped ? 1 : 0)
        }
    }
}
