import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite

/// The `CHECK` constraints of the config's DDL, judged by SQLite itself, for a master that is not
/// SQLite.
///
/// A replicated table's DDL is SQLite SQL, and the SQLite master refuses a row that breaks one of
/// its `CHECK` constraints (`sex IN ('L', 'P')`). Translating each expression to PostgreSQL would
/// judge some rows differently (SQLite's and PostgreSQL's types, functions and comparisons
/// differ), so the PostgreSQL master instead puts every row it is about to write through an empty
/// in-memory SQLite copy of the table, inside a savepoint that is rolled back: the row is refused
/// exactly when the SQLite master would refuse it, with SQLite's words. Foreign keys are off there
/// (the merge holds a child until its parent arrives) and the copy is empty, so only the row's own
/// constraints are judged.
package final class SQLiteRowChecks: @unchecked Sendable {
    // A DatabaseQueue serialises its uses; the checks are made from the merge's one thread.
    private let queue: DatabaseQueue
    /// The tables whose DDL declares a CHECK constraint, by name, with their INSERT statement.
    private let inserts: [String: String]

    package init(tables: [TableSchema]) throws {
        var configuration = Configuration()
        configuration.foreignKeysEnabled = false
        queue = try DatabaseQueue(configuration: configuration)
        var inserts: [String: String] = [:]
        try queue.write { db in
            for table in tables {
                try db.execute(sql: table.ddl)
                let sql = try String.fetchOne(
                    db, sql: "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", arguments: [table.name])
                guard let sql, sql.range(of: "CHECK", options: .caseInsensitive) != nil else { continue }
                let columns = table.primaryKey + table.columns
                inserts[table.name] =
                    "INSERT INTO \(SQL.quote(table.name)) (\(columns.map { SQL.quote($0.name) }.joined(separator: ", "))) VALUES (\(columns.map { _ in "?" }.joined(separator: ", ")))"
            }
        }
        self.inserts = inserts
    }

    /// Whether any table has a CHECK constraint to judge.
    package var isEmpty: Bool { inserts.isEmpty }

    /// Throws ``MergeStoreConstraintViolation`` with SQLite's message when the SQLite master would
    /// refuse to write this row of `table` (key, then every non-key value in schema order).
    package func check(_ table: TableSchema, key: [SQLValue], values: [SQLValue]) throws {
        guard let insert = inserts[table.name] else { return }
        try queue.inDatabase { db in
            try db.inSavepoint {
                do {
                    try db.execute(sql: insert, arguments: StatementArguments((key + values).map(\.databaseValue)))
                } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
                    throw MergeStoreConstraintViolation(message: error.message ?? "a CHECK constraint failed")
                }
                return .rollback
            }
        }
    }
}
