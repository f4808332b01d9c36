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
            var state: [SQLValue]? = deleted ? nil : try self.statements[name]!.values(db, key: key)
            var out: [RowVersion] = []
            let entries = try Row.fetchAll(
                db,
                sql:
                    "SELECT version, writer, stamp, op, old, clamped FROM _ks_history WHERE tbl = ? AND pk = ? ORDER BY version DESC",
                arguments: [name, pk])
            func named(_ values: [SQLValue]) -> [String: SQLValue] {
                Dictionary(uniqueKeysWithValues: zip(table.columns.map(\.name), values))
            }
            for entry in entries {
                let op = Changeset.Operation(rawValue: UInt8(entry["op"] as Int)) ?? .update
                let replaced = try HistoryCoding.decode([UInt8](entry["old"] as Data)).filter {
                    $0.0 < table.columns.count
                }
                let writer: Int64 = entry["writer"]
                out.append(
                    RowVersion(
                        version: UInt64(entry["version"] as Int64),
                        operation: op == .upsert ? "upsert" : op == .delete ? "delete" : "update",
                        replicaId: self.writer(number: writer).id, opd: self.opd(ofWriter: writer, db: db),
                        stamp: String(UInt64(bitPattern: entry["stamp"])), clamped: (entry["clamped"] as Int) != 0,
                        replaced: Dictionary(
                            replaced.map { (table.columns[$0.0].name, $0.1) }, uniquingKeysWith: { $1 }),
                        values: state.map(named)))
                // Step back: the row before this change.
                if op == .delete {
                    var before = Array(repeating: SQLValue.null, count: table.columns.count)
                    for (c, v) in replaced { before[c] = v }
                    state = before
                } else if replaced.isEmpty, entries.last?["version"] as Int64? == entry["version"] {
                    state = nil
                } else {
                    for (c, v) in replaced { state?[c] = v }
                }
            }
            return out
        }
    }
}
