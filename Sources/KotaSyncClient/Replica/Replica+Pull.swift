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
            let maps = try page.tables.map { t in try self.columnMap(for: t) }
            for row in page.rows {
                clock.receive(row.stamp)
                let (table, map) = maps[row.table]
                let pk = Data(PrimaryKeyCoding.encode(row.primaryKey))
                var values: [Int: SQLValue] = [:]
                for c in row.columns { if let i = map[c.column] { values[i] = c.value } }

                if let local = pending[RowKey(table: table.name, key: row.primaryKey)] {
                    result.keptLocal += 1
                    // A row created or removed here stays as it is; its version stays too, so
                    // the push is judged against what this replica had seen.
                    guard !local.replacedWhole, row.operation != .delete else { continue }
                    let base = try Int64.fetchOne(
                        db.cachedStatement(sql: "SELECT version FROM _ks_rows WHERE tbl = ? AND pk = ?"),
                        arguments: [table.name, pk])
                    let mine = Set(ChangeLog.columns(in: local.mask, count: table.columns.count))
                    for c in mine where values[c] != nil {
                        try db.cachedStatement(
                            sql: "INSERT OR IGNORE INTO _ks_colbase(tbl, pk, col, base) VALUES (?, ?, ?, ?)"
                        ).execute(arguments: [table.name, pk, table.columns[c].name, base ?? 0])
                        values[c] = nil
                    }
                    try self.writePulled(db, table: table, key: row.primaryKey, values: values, pending: pending)
                } else if row.operation == .delete {
                    try statements[table.name]!.delete(db, key: row.primaryKey)
                    result.applied += 1
                } else {
                    try self.writePulled(db, table: table, key: row.primaryKey, values: values, pending: pending)
                    result.applied += 1
                }
                try db.cachedStatement(sql: "INSERT OR REPLACE INTO _ks_rows(tbl, pk, version) VALUES (?, ?, ?)")
                    .run([.text(table.name), .blob([UInt8](pk)), .integer(Int64(row.version))])
            }
            try db.execute(sql: "DELETE FROM _ks_applying")
            try Self.setState(db, StateKey.cursor, Int64(bitPattern: page.lastSequence))
            try Self.setState(db, StateKey.clock, Int64(bitPattern: clock.last.rawValue))
            try Self.setState(db, StateKey.lastPullAt, now.iso8601)
            return result
        }
    }

    /// The local table for a page's table, and page column index → local column index.
    private func columnMap(for pageTable: Changeset.Table) throws -> (TableSchema, [Int: Int]) {
        guard let table = tables[pageTable.name] else {
            throw ReplicaError(
                .schemaMismatch,
                "The server sent rows of table \(pageTable.name), which this replica does not have. The server's schema changed; re-initialise the replica."
            )
        }
        var map: [Int: Int] = [:]
        for (i, name) in pageTable.columns.enumerated() {
            if let local = table.columns.firstIndex(where: { $0.name == name }) { map[i] = local }
        }
        return (table, map)
    }
}
