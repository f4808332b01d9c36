import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite

extension SQLiteMasterStore {
    public func pull(after cursor: UInt64, limit: Int, opd: String?) async throws -> PullPage {
        let limit = max(1, min(limit, config.limits.maxPullPage))
        return try await read { db in try self.readPage(db, after: cursor, limit: limit, opd: opd) }
    }

    /// The whole master's changes, as the Command Center sees them (no scope).
    public func pull(after cursor: UInt64, limit: Int) async throws -> PullPage {
        try await pull(after: cursor, limit: limit, opd: nil)
    }

    /// The rows a device of `opd` may be sent, as the access service's pull reach of each table
    /// says (``AccessPolicy/pullReach(opd:table:)``), and rows that left its scope (it is sent
    /// their removal). Nil: everything.
    private func visibleRows(to opd: String?) -> (sql: String, arguments: [any DatabaseValueConvertible]) {
        guard let opd else { return ("1", []) }
        let access = config.access
        var clauses: [String] = []
        var arguments: [any DatabaseValueConvertible] = []
        for table in config.tables {
            switch access.pullReach(opd: opd, table: table.name) {
            case .none:
                continue
            case .whole:
                clauses.append("tbl = ?")
                arguments.append(table.name)
            case .scopes(let scopes):
                let marks = scopes.map { _ in "?" }.joined(separator: ", ")
                clauses.append("(tbl = ? AND (scope IN (\(marks)) OR instr(gone_for, ?) > 0))")
                arguments.append(table.name)
                arguments.append(contentsOf: scopes as [any DatabaseValueConvertible])
                arguments.append(",\(opd),")
            }
        }
        return (clauses.isEmpty ? "0" : "(" + clauses.joined(separator: " OR ") + ")", arguments)
    }

    /// The query of a page for a device of `opd`; its parameters are the cursor, `arguments`, then
    /// the limit. It walks `_ks_rows` in version order, its rowid (`NOT INDEXED`, which still
    /// seeks by rowid): with a device's `tbl = ?` terms SQLite's planner may otherwise pick the
    /// (tbl, pk) index and sort every row of the table for each page — a bootstrap then takes
    /// time quadratic in the master's size, and an incremental pull reads the whole table to find
    /// a few rows.
    func pageQuery(to opd: String?) -> (sql: String, arguments: [any DatabaseValueConvertible]) {
        let visible = visibleRows(to: opd)
        return (
            """
            SELECT tbl, pk, version, clocks, deleted, scope FROM _ks_rows NOT INDEXED
            WHERE version > ? AND \(visible.sql) ORDER BY version LIMIT ?
            """, visible.arguments
        )
    }

    /// One page from a consistent snapshot: the current state of each row changed after `cursor`
    /// that a device of `opd` may see, in version order, as ``PullPageBuilder`` decides it (each
    /// row once; a row it may no longer see as a delete; hidden columns as NULL; the byte budget;
    /// the cursor at the end).
    ///
    /// The page's statements are prepared once per page and stepped through the C API: the
    /// `_ks_rows` query is walked in place (no GRDB `Row` per entry, no column lookups by name)
    /// and each live row's values are read by key with its table's statement as the entry is fed.
    private func readPage(_ db: Database, after cursor: UInt64, limit: Int, opd: String?) throws -> PullPage {
        let (sql, visibleArguments) = pageQuery(to: opd)
        let metas = try db.cachedStatement(sql: sql)
        let selects = try config.tables.map { try db.cachedStatement(sql: statements[$0.name]!.select) }
        var builder = PullPageBuilder(config: config, tableIndex: tableIndex, opd: opd, cursor: cursor, limit: limit)
        let arguments =
            [SQLValue.integer(Int64(cursor))] + visibleArguments.map { SQLValue($0.databaseValue) }
            + [.integer(Int64(limit + 1))]
        try metas.forEachRow(arguments) { meta in
            if builder.endsBeforeNext() { return false }
            let head = try builder.head(
                table: meta.text(0), pk: meta.bytes(1), version: UInt64(meta.int64(2)), clocks: meta.bytes(3),
                scope: { meta.value(5) })
            let values = head.needsValues ? try selects[head.table!].firstRow(head.key) : nil
            return builder.add(head, values: values)
        }
        return try builder.page {
            UInt64(try Int64.fetchOne(db, sql: "SELECT max(version) FROM _ks_rows") ?? 0)
        }
    }

    /// The records `replica` took part in, as its device may see them (``deviceView(_:for:db:)``).
    /// A replica of another OPD, or one the master does not know, has none: the reply does not
    /// tell which.
    public func conflicts(involving replica: UUID, of device: Device, after: Int64, limit: Int) async throws
        -> ConflictList
    {
        let limit = max(1, min(limit, 1000))
        return try await read { db in
            guard
                let owner = try Row.fetchOne(
                    db, sql: "SELECT number, opd FROM _ks_replicas WHERE uuid = ?", arguments: [Data(replica.bytes)]),
                owner["opd"] as String == device.opd
            else { return ConflictList(conflicts: [], next: nil) }
            let number: Int64 = owner["number"]
            let list = try self.conflictList(
                db.cachedStatement(
                    sql: """
                        SELECT \(ConflictReport.columns) FROM _ks_conflicts
                        WHERE id > ? AND (loser_writer = ? OR winner_writer = ?) ORDER BY id LIMIT ?
                        """), [.integer(after), .integer(number), .integer(number), .integer(Int64(limit + 1))],
                limit: limit, db: db)
            // The page's end is where the query stopped, whether or not its last record is shown.
            return ConflictList(
                conflicts: try self.deviceView(list.conflicts, for: device.opd, db: db), next: list.next)
        }
    }

    /// Conflict records as a device of `opd` is told of them (``ConflictDeviceView``, the
    /// access service's view written once for both backends) — its conflict list and its push
    /// reply both pass through it.
    func deviceView(_ records: [ConflictReport], for opd: String, db: Database) throws -> [ConflictReport] {
        try ConflictDeviceView(config: config, reader: SQLitePushLedger(db: db))(records, for: opd)
    }
}
