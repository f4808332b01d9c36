import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite

/// What applying one pulled page did.
public struct AppliedPage: Sendable, Equatable {
    /// Rows written to the local tables.
    public var applied: Int
    /// Rows (or columns) left as they are because a local change to them is still pending.
    public var keptLocal: Int
}

extension Replica {
    /// The cursor to pull from: the master version up to which this replica has applied.
    public func cursor() throws -> UInt64 {
        try dbQueue.read { db in UInt64(bitPattern: try Self.state(db, StateKey.cursor) ?? 0) }
    }

    /// Applies one pulled page atomically and advances the cursor to the page's end.
    ///
    /// The writes are not captured as local changes. A row with local changes that have not been
    /// acknowledged keeps them: columns with a pending update keep their local value (and remember
    /// the version they were based on, so the server can judge them), and a row inserted or
    /// deleted locally is left alone. Those changes go up with the next push.
    public func apply(page: Changeset, now: Date = Date()) throws -> AppliedPage {
        guard page.kind == .pull else {
            throw ReplicaError(.invalidResponse, "The server sent a push changeset where a pull page belongs.")
        }
        return try dbQueue.write { db in
            let current = UInt64(bitPattern: try Self.state(db, StateKey.cursor) ?? 0)
            guard page.firstSequence == current else {
                throw ReplicaError(
                    .invalidResponse,
                    "The server sent a page starting at \(page.firstSequence); this replica is at \(current).")
            }
            try db.execute(sql: "INSERT INTO _ks_applying(x) VALUES (1)")
            var pending: [RowKey: ChangeLog.PendingRow] = [:]
            for row in ChangeLog.coalesce(try self.readLog(db)) {
                pending[RowKey(table: row.table, key: row.key)] = row
            }
            var clock = HybridClock(last: HLC(rawValue: UInt64(bitPattern: try Self.state(db, StateKey.clock) ?? 0)))
            var result = AppliedPage(applied: 0, keptLocal: 0)
            // Everything per table is looked up once per page: the statements (GRDB's cache
            // hashes the SQL text on every lookup) and the column map.
            // A table this replica does not have (added to the server's schema after it was
            // made) has no plan: its rows are passed over, as the columns it lacks are. When
            // the replica is re-made, or later migrates to that version, it must fetch the table whole.
            let plans = try page.tables.map { t in try self.plan(for: t, db) }
            // An upsert rather than INSERT OR REPLACE: an existing entry is updated in place
            // instead of deleted and inserted again.
            let knownVersion = try db.cachedStatement(
                sql: """
                    INSERT INTO _ks_rows(tbl, pk, version) VALUES (?, ?, ?)
                    ON CONFLICT (tbl, pk) DO UPDATE SET version = excluded.version
                    """)
            var tableName = ""
            do {
                for row in page.rows {
                    clock.receive(row.stamp)
                    guard let plan = plans[row.table] else { continue }
                    tableName = plan.table.name
                    let table = plan.table
                    let pk = PrimaryKeyCoding.encode(row.primaryKey)

                    // With an empty log (the usual case, and always while bootstrapping) no row can
                    // have a pending change, and the lookup is skipped.
                    if !pending.isEmpty, let local = pending[RowKey(table: table.name, key: row.primaryKey)] {
                        result.keptLocal += 1
                        // A row created or removed here stays as it is; its version stays too, so
                        // the push is judged against what this replica had seen.
                        guard !local.replacedWhole, row.operation != .delete else { continue }
                        var values = plan.localValues(of: row)
                        let base = try Int64.fetchOne(
                            db.cachedStatement(sql: "SELECT version FROM _ks_rows WHERE tbl = ? AND pk = ?"),
                            arguments: [table.name, Data(pk)])
                        let mine = Set(ChangeLog.columns(in: local.mask, count: table.columns.count))
                        for c in mine where values[c] != nil {
                            try db.cachedStatement(
                                sql: "INSERT OR IGNORE INTO _ks_colbase(tbl, pk, col, base) VALUES (?, ?, ?, ?)"
                            ).execute(arguments: [table.name, Data(pk), table.columns[c].name, base ?? 0])
                            values[c] = nil
                        }
                        try self.writePulled(db, table: table, key: row.primaryKey, values: values, pending: pending)
                    } else if row.operation == .delete {
                        try plan.delete.run { p in for v in row.primaryKey { p.bind(v) } }
                        result.applied += 1
                    } else if plan.carriesWholeRow(row) {
                        // The usual pull row: every column, in the local table's order.
                        do {
                            try plan.upsert.run { p in
                                for v in row.primaryKey { p.bind(v) }
                                for c in row.columns { p.bind(c.value) }
                            }
                        } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
                            // A local row blocks it on a UNIQUE column: `writePulled` makes room.
                            try self.writePulled(
                                db, table: table, key: row.primaryKey, values: plan.localValues(of: row),
                                pending: pending)
                        }
                        result.applied += 1
                    } else {
                        try self.writePulled(
                            db, table: table, key: row.primaryKey, values: plan.localValues(of: row), pending: pending)
                        result.applied += 1
                    }
                    try knownVersion.run { p in
                        p.bind(.text(table.name))
                        p.bind(blob: pk)
                        p.bind(Int64(row.version))
                    }
                }
            } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
                // The page is not applied (the transaction rolls back) and the cursor stays:
                // nothing is lost, and the rows come again on the next pull.
                throw ReplicaError(
                    .pullBlocked,
                    "A pulled row of \(tableName) cannot be written beside this replica's rows (\(error.message ?? "constraint failed")); nothing of the page was applied. Push the local changes first (`kotasync sync`): the server merges them and the next pull fits."
                )
            }
            try db.execute(sql: "DELETE FROM _ks_applying")
            try Self.setState(db, StateKey.cursor, Int64(bitPattern: page.lastSequence))
            try Self.setState(db, StateKey.clock, Int64(bitPattern: clock.last.rawValue))
            try Self.setState(db, StateKey.lastPullAt, now.iso8601)
            return result
        }
    }

    /// How the rows of one page table are written locally.
    /// (A class: the row loop takes a table's plan once per row, and copying a struct of arrays
    /// and statements retained each of them.)
    private final class TablePlan {
        let table: TableSchema
        /// Page column index → local column index (nil: a column this replica does not have).
        let columnMap: [Int?]
        /// The page names the local columns, all of them, in the local order.
        let sameColumns: Bool
        /// Upserts a whole row; deletes by key.
        let upsert: Statement
        let delete: Statement

        init(table: TableSchema, columnMap: [Int?], sameColumns: Bool, upsert: Statement, delete: Statement) {
            self.table = table
            self.columnMap = columnMap
            self.sameColumns = sameColumns
            self.upsert = upsert
            self.delete = delete
        }

        /// The row sets every local column in order, so the whole-row upsert writes it.
        func carriesWholeRow(_ row: Changeset.Row) -> Bool {
            guard sameColumns, row.columns.count == table.columns.count else { return false }
            for (i, c) in row.columns.enumerated() where c.column != i { return false }
            return true
        }

        /// The row's values by local column index.
        func localValues(of row: Changeset.Row) -> [Int: SQLValue] {
            var values: [Int: SQLValue] = [:]
            for c in row.columns {
                if c.column < columnMap.count, let i = columnMap[c.column] { values[i] = c.value }
            }
            return values
        }
    }

    /// The local table for a page's table, its column map and its statements; nil for a table
    /// this replica does not have.
    private func plan(for pageTable: Changeset.Table, _ db: Database) throws -> TablePlan? {
        guard let table = tables[pageTable.name], let sql = statements[pageTable.name] else { return nil }
        let map = pageTable.columns.map { name in table.columns.firstIndex(where: { $0.name == name }) }
        return TablePlan(
            table: table, columnMap: map, sameColumns: map == Array(table.columns.indices),
            upsert: try db.cachedStatement(sql: sql.upsert), delete: try db.cachedStatement(sql: sql.delete))
    }
}
