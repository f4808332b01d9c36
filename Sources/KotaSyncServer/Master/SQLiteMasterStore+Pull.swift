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

    /// The rows a device of `opd` may be sent: rows of tables it sees whole, rows in its scope,
    /// and rows that left its scope (it is sent their removal). Nil: everything.
    private func visibleRows(to opd: String?) -> (sql: String, arguments: [any DatabaseValueConvertible]) {
        guard let opd else { return ("1", []) }
        let rules = config.rules
        var clauses: [String] = []
        var arguments: [any DatabaseValueConvertible] = []
        let subtree = rules.subtree(of: opd)
        for table in config.tables {
            let r = rules.rules(for: table.name)
            if r.direction == .up { continue }
            if r.scope == nil {
                clauses.append("tbl = ?")
                arguments.append(table.name)
            } else {
                let marks = subtree.map { _ in "?" }.joined(separator: ", ")
                clauses.append("(tbl = ? AND (scope IN (\(marks)) OR instr(gone_for, ?) > 0))")
                arguments.append(table.name)
                arguments.append(contentsOf: subtree as [any DatabaseValueConvertible])
                arguments.append(",\(opd),")
            }
        }
        return (clauses.isEmpty ? "0" : "(" + clauses.joined(separator: " OR ") + ")", arguments)
    }

    /// One page from a consistent snapshot: the current state of each row changed after `cursor`
    /// that a device of `opd` may see, in version order. Each row appears once, however often it
    /// changed; a row it may no longer see is sent as a delete; hidden columns are sent as NULL.
    private func readPage(_ db: Database, after cursor: UInt64, limit: Int, opd: String?) throws -> PullPage {
        let visible = visibleRows(to: opd)
        let metas = try Row.fetchAll(
            db,
            sql: """
                SELECT tbl, pk, version, clocks, deleted, scope FROM _ks_rows
                WHERE version > ? AND \(visible.sql) ORDER BY version LIMIT ?
                """,
            arguments: StatementArguments([Int64(cursor)] + visible.arguments + [limit + 1]))
        let hasMore = metas.count > limit
        var rows: [Changeset.Row] = []
        rows.reserveCapacity(min(metas.count, limit))
        var next = cursor
        for meta in metas.prefix(limit) {
            let name: String = meta["tbl"]
            let version = UInt64(meta["version"] as Int64)
            next = version
            // Rows of a table no longer replicated are passed over, cursor and all.
            guard let t = tableIndex[name] else { continue }
            let table = config.tables[t]
            let clocks = try RowClocksCoding.decode(
                [UInt8](meta["clocks"] as Data), version: version, columnCount: table.columns.count,
                resolve: { Writer(number: $0, id: .zero) })
            let stamp = clocks.stamp
            let key = try PrimaryKeyCoding.decode([UInt8](meta["pk"] as Data))
            let gone =
                opd.map {
                    !config.rules.visibility(table: name, scope: SQLValue(meta["scope"] as DatabaseValue)).contains($0)
                } ?? false
            var values = clocks.isDeleted || gone ? nil : try statements[table.name]!.values(db, key: key)
            for c in hidden[name] ?? [] { values?[c] = .null }
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

    /// Per table, the indexes of its hidden columns.
    var hidden: [String: [Int]] {
        Dictionary(
            uniqueKeysWithValues: config.tables.map { table in
                (
                    table.name,
                    config.rules.rules(for: table.name).hidden.compactMap { name in
                        table.columns.firstIndex { $0.name == name }
                    }
                )
            })
    }

    public func conflicts(involving replica: UUID, of device: Device, after: Int64, limit: Int) async throws
        -> ConflictList
    {
        let limit = max(1, min(limit, 1000))
        return try await read { db in
            guard
                let owner = try Row.fetchOne(
                    db, sql: "SELECT number, opd FROM _ks_replicas WHERE uuid = ?", arguments: [Data(replica.bytes)])
            else { return ConflictList(conflicts: [], next: nil) }
            guard owner["opd"] as String == device.opd else {
                throw SyncError(.forbidden, "Replica \(replica) belongs to another OPD.")
            }
            let number: Int64 = owner["number"]
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM _ks_conflicts WHERE id > ? AND (loser_writer = ? OR winner_writer = ?)
                    ORDER BY id LIMIT ?
                    """,
                arguments: [after, number, number, limit + 1])
            let reports = try rows.prefix(limit).map { try self.report(from: $0, db: db) }
            return ConflictList(conflicts: reports, next: rows.count > limit ? reports.last?.id : nil)
        }
    }

}
