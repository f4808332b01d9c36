import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite

extension SQLiteMasterStore {
    /// Every version of a row the master merged, newest first: who changed it, when, and the row
    /// after each change. Values no change replaced are the row's current ones.
    public func history(table name: String, key: [SQLValue]) async throws -> [RowVersion] {
        guard let table = config.table(named: name) else {
            throw SyncError(.unknownTable, "Table \(name) is not replicated by this server.")
        }
        guard key.count == table.primaryKey.count else {
            throw SyncError(
                .invalidPrimaryKey,
                "Table \(name) is keyed by (\(table.primaryKey.map(\.name).joined(separator: ", "))); give \(table.primaryKey.count) key value(s)."
            )
        }
        let pk = Data(PrimaryKeyCoding.encode(key))
        return try await read { db in
            let deleted =
                try Bool.fetchOne(
                    db, sql: "SELECT deleted FROM _ks_rows WHERE tbl = ? AND pk = ?", arguments: [name, pk]) ?? true
            let current: [SQLValue]? = deleted ? nil : try self.statements[name]!.values(db, key: key)
            let entries = try Row.fetchAll(
                db,
                sql:
                    "SELECT version, writer, stamp, op, old, clamped FROM _ks_history WHERE tbl = ? AND pk = ? ORDER BY version DESC",
                arguments: [name, pk]
            ).map { entry in
                RowHistory.Entry(
                    version: UInt64(entry["version"] as Int64), writer: entry["writer"], stamp: entry["stamp"],
                    operation: entry["op"], old: [UInt8](entry["old"] as Data), clamped: (entry["clamped"] as Int) != 0)
            }
            return try RowHistory.versions(table: table, current: current, entries: entries) { number in
                (self.writer(number: number).id, self.opd(ofWriter: number, db: db))
            }
        }
    }
}
