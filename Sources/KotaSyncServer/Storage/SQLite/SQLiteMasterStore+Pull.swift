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
    /// the limit. It walks `_ks_rows` in version order through `_ks_rows_version`, named so: with a
    /// device's `tbl = ?` terms SQLite's planner otherwise picks the primary key and sorts every
    /// row of the table for each page — a bootstrap then takes time quadratic in the master's
    /// size, and an incremental pull reads the whole table to find a few rows.
    func pageQuery(to opd: String?) -> (sql: String, arguments: [any DatabaseValueConvertible]) {
        let visible = visibleRows(to: opd)
        return (
            """
            SELECT tbl, pk, version, clocks, deleted, scope FROM _ks_rows INDEXED BY _ks_rows_version
            WHERE version > ? AND \(visible.sql) ORDER BY version LIMIT ?
            """, visible.arguments
        )
    }

    /// One page from a consistent snapshot: the current state of each row changed after `cursor`
    /// that a device of `opd` may see, in version order. Each row appears once, however often it
    /// changed; a row it may no longer see is sent as a delete; hidden columns are sent as NULL.
    ///
    /// The page's statements are prepared once per page and stepped through the C API: the
    /// `_ks_rows` query is walked in place (no GRDB `Row` per entry, no column lookups by name)
    /// and each live row's values are read by key with its table's statement.
    ///
    /// A page ends at `limit` rows or before the row that would take its payload past
    /// `limits.max_pull_page_bytes`, whichever comes first; it holds at least one row, and the
    /// config keeps the largest row within what every client accepts in a page
    /// (``KotaSyncCore/DecodeLimits/pullPage``), so every row reaches every replica.
    private func readPage(_ db: Database, after cursor: UInt64, limit: Int, opd: String?) throws -> PullPage {
        let (sql, visibleArguments) = pageQuery(to: opd)
        let metas = try db.cachedStatement(sql: sql)
        let selects = try config.tables.map { try db.cachedStatement(sql: statements[$0.name]!.select) }
        let hiddenColumns = hidden
        let access = config.access
        var rows: [Changeset.Row] = []
        rows.reserveCapacity(limit)
        var next = cursor
        var read = 0
        var hasMore = false
        let budget = config.limits.maxPullPageBytes - RowLimits.dictionaryBound(config.tables)
        var bytes = 0
        let arguments =
            [SQLValue.integer(Int64(cursor))] + visibleArguments.map { SQLValue($0.databaseValue) }
            + [.integer(Int64(limit + 1))]
        try metas.forEachRow(arguments) { meta in
            guard read < limit else {
                hasMore = true
                return false
            }
            let name = meta.text(0)
            let version = UInt64(meta.int64(2))
            // Rows of a table no longer replicated are passed over, cursor and all.
            guard let t = tableIndex[name] else {
                read += 1
                next = version
                return true
            }
            let table = config.tables[t]
            let clocks = try RowClocksCoding.decode(
                meta.bytes(3), version: version, columnCount: table.columns.count,
                resolve: { Writer(number: $0, id: .zero) })
            let stamp = clocks.stamp
            let key = try PrimaryKeyCoding.decode(meta.bytes(1))
            let gone = opd.map { !access.sees(opd: $0, table: name, scope: meta.value(5)) } ?? false
            // A table of key columns only selects a constant, not a column.
            var values =
                clocks.isDeleted || gone
                ? nil : try selects[t].firstRow(key).map { table.columns.isEmpty ? [] : $0 }
            for c in hiddenColumns[name] ?? [] { values?[c] = .null }
            let size = RowLimits.encodedBound(
                rowBytes: RowLimits.bytes(key: key, values: values ?? []), valueCount: key.count + (values?.count ?? 0))
            if !rows.isEmpty, bytes + size > budget {
                hasMore = true
                return false
            }
            bytes += size
            read += 1
            next = version
            if let values {
                rows.append(
                    Changeset.Row(
                        table: t, operation: .upsert, version: version, stamp: stamp, primaryKey: key,
                        columns: values.enumerated().map { Changeset.ColumnValue(column: $0, value: $1) }))
            } else {
                rows.append(
                    Changeset.Row(
                        table: t, operation: .delete, version: version, stamp: stamp, primaryKey: key, columns: []))
            }
            return true
        }
        if !hasMore {
            // Past the last row this device may see: the cursor moves to the master's latest
            // version, so rows it may not see are never scanned again.
            next = max(next, UInt64(try Int64.fetchOne(db, sql: "SELECT max(version) FROM _ks_rows") ?? 0))
        }
        let page = Changeset(
            kind: .pull, id: UUID(), replicaID: .zero, firstSequence: cursor, lastSequence: next,
            tables: config.tables.map(\.changesetTable), rows: rows)
        return PullPage(body: ChangesetCodec.encode(page), rows: rows.count, nextCursor: next, hasMore: hasMore)
    }

    /// Per table, the indexes of its hidden columns. (Computed on each use: `readPage` takes it
    /// once per page.)
    var hidden: [String: [Int]] {
        Dictionary(
            uniqueKeysWithValues: config.tables.map { table in
                (
                    table.name,
                    config.access.hiddenColumns(table: table.name).compactMap { name in
                        table.columns.firstIndex { $0.name == name }
                    }
                )
            })
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
