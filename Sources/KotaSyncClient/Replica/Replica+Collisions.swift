import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite

extension Replica {
    /// Writes a pulled row; when a local row blocks it on a UNIQUE constraint, makes room.
    ///
    /// The master's row is the truth. A blocking local row without pending changes is one the
    /// master already has a say on — typically a duplicate registered here offline and
    /// quarantined on the master (Protocol/merge.md §12) — so it is removed here (not captured
    /// as a change) and kept in `_ks_displaced`; the reviewer's decision comes back by a later
    /// pull (the row corrected, or its removal). A blocking row with changes not yet pushed is
    /// left alone and the pull stops with a clear error: the next sync pushes it first.
    func writePulled(
        _ db: Database, table: TableSchema, key: [SQLValue], values: [Int: SQLValue],
        pending: [RowKey: ChangeLog.PendingRow]
    ) throws {
        var values = values
        if values.count < table.columns.count, let local = try statements[table.name]!.values(db, key: key) {
            // SQLite checks an upsert's INSERT half (NOT NULL, CHECK) before it finds the
            // conflict: a row that leaves out a column kept local for a pending edit would fail
            // on a NOT NULL column although the row exists. Give the INSERT half the local values
            // of the columns left out; the UPDATE half writes them back unchanged.
            for (c, value) in local.enumerated() where values[c] == nil { values[c] = value }
        }
        let columns = values.keys.sorted()
        let write = {
            try self.statements[table.name]!.upsert(db, key: key, columns: columns, values: columns.map { values[$0]! })
        }
        do {
            try write()
        } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
            var blocking: [[SQLValue]] = []
            let keyNames = table.primaryKey.map { SQL.quote($0.name) }.joined(separator: ", ")
            // The pulled row's value for each column: given, or the local row's.
            let current = try statements[table.name]!.values(db, key: key)
            var named: [String: SQLValue] = [:]
            for (column, value) in zip(table.primaryKey, key) { named[column.name] = value }
            for (c, column) in table.columns.enumerated() { named[column.name] = values[c] ?? current?[c] ?? .null }
            for index in try SchemaIntrospection.uniqueIndexes(db, table: table.name) {
                let predicate = index.map { "\(SQL.quote($0)) IS ?" }.joined(separator: " AND ")
                for row in try Row.fetchAll(
                    db, sql: "SELECT \(keyNames) FROM \(SQL.quote(table.name)) WHERE \(predicate)",
                    arguments: StatementArguments(index.map { (named[$0] ?? .null).databaseValue }))
                {
                    let other = (0..<table.primaryKey.count).map { SQLValue(row[$0] as DatabaseValue) }
                    if other != key, !blocking.contains(other) { blocking.append(other) }
                }
            }
            guard !blocking.isEmpty else { throw error }
            for other in blocking {
                guard pending[RowKey(table: table.name, key: other)] == nil else {
                    throw ReplicaError(
                        .database,
                        "The server's row \(table.name) \(key.map(\.description).joined(separator: ", ")) collides with the local row \(other.map(\.description).joined(separator: ", ")) on a UNIQUE column, and the local row has changes not yet pushed. Sync again: the push goes first and the server decides."
                    )
                }
                try db.execute(sql: ChangeLog.displacedStatement)
                let values = try statements[table.name]!.values(db, key: other) ?? []
                let named = Dictionary(
                    uniqueKeysWithValues: zip(table.primaryKey.map(\.name) + table.columns.map(\.name), other + values))
                try db.execute(
                    sql: "INSERT OR REPLACE INTO _ks_displaced(tbl, pk, row, displaced_at) VALUES (?, ?, ?, ?)",
                    arguments: [
                        table.name, Data(PrimaryKeyCoding.encode(other)),
                        String(decoding: try ProtocolJSON.encoder().encode(named), as: UTF8.self), Date().iso8601,
                    ])
                try statements[table.name]!.delete(db, key: other)
            }
            try write()
        }
    }
}
