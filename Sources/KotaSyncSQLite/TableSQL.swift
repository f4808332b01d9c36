import GRDB
import KotaSyncCore

/// The statements KotaSync runs against one replicated table, built once per table.
///
/// Replica and master both read a row's values by key, upsert whole rows and delete by key;
/// building that SQL text per row (quoting every name again) costs more than running it.
package struct TableSQL: Sendable {
    package let table: TableSchema
    /// `SELECT <columns> FROM t WHERE <key> = ?` (or `SELECT 1` for a table of key columns only).
    package let select: String
    /// Inserts a row with every column, or updates every column of the row with that key.
    package let upsert: String
    package let delete: String

    package init(_ table: TableSchema) {
        self.table = table
        let t = SQL.quote(table.name)
        let key = SQL.keyPredicate(table.primaryKey.map(\.name))
        let columns = table.columns.map { SQL.quote($0.name) }
        select = "SELECT \(columns.isEmpty ? "1" : columns.joined(separator: ", ")) FROM \(t) WHERE \(key)"
        upsert = Self.upsertSQL(table, columns: Array(table.columns.indices))
        delete = "DELETE FROM \(t) WHERE \(key)"
    }

    /// An upsert that sets only `columns` (schema indexes) besides the key.
    package static func upsertSQL(_ table: TableSchema, columns: [Int]) -> String {
        let names = (table.primaryKey.map(\.name) + columns.map { table.columns[$0].name }).map(SQL.quote)
        let keys = table.primaryKey.map { SQL.quote($0.name) }.joined(separator: ", ")
        let update =
            columns.isEmpty
            ? "NOTHING"
            : "UPDATE SET "
                + columns.map { "\(SQL.quote(table.columns[$0].name)) = excluded.\(SQL.quote(table.columns[$0].name))" }
                .joined(separator: ", ")
        return """
            INSERT INTO \(SQL.quote(table.name)) (\(names.joined(separator: ", "))) \
            VALUES (\(names.map { _ in "?" }.joined(separator: ", "))) ON CONFLICT (\(keys)) DO \(update)
            """
    }

    /// The row's non-key values, or nil if there is no row with that key.
    package func values(_ db: Database, key: [SQLValue]) throws -> [SQLValue]? {
        let row = try db.cachedStatement(sql: select).firstRow(key)
        return table.columns.isEmpty ? row.map { _ in [] } : row
    }

    /// Writes the whole row.
    package func upsert(_ db: Database, key: [SQLValue], values: [SQLValue]) throws {
        try db.cachedStatement(sql: upsert).run(key + values)
    }

    /// Writes the key and `columns` only.
    package func upsert(_ db: Database, key: [SQLValue], columns: [Int], values: [SQLValue]) throws {
        guard columns.count < table.columns.count else { return try upsert(db, key: key, values: values) }
        try db.cachedStatement(sql: Self.upsertSQL(table, columns: columns)).run(key + values)
    }

    package func delete(_ db: Database, key: [SQLValue]) throws {
        try db.cachedStatement(sql: delete).run(key)
    }
}

/// A table's statements taken from one connection's statement cache once, for code that runs
/// them for many rows in a row: `db.cachedStatement(sql:)` hashes the whole SQL text on every
/// call, and ``TableSQL``'s methods call it for every row.
package struct TableStatements {
    package let sql: TableSQL
    private let select: Statement
    private let upsert: Statement
    private let delete: Statement

    package init(_ sql: TableSQL, db: Database) throws {
        self.sql = sql
        select = try db.cachedStatement(sql: sql.select)
        upsert = try db.cachedStatement(sql: sql.upsert)
        delete = try db.cachedStatement(sql: sql.delete)
    }

    /// The row's non-key values, or nil if there is no row with that key.
    package func values(key: [SQLValue]) throws -> [SQLValue]? {
        let row = try select.firstRow(key)
        return sql.table.columns.isEmpty ? row.map { _ in [] } : row
    }

    /// Writes the whole row: the key, then every non-key value in schema order.
    package func upsert(key: [SQLValue], values: [SQLValue]) throws {
        try upsert.run { parameters in
            for value in key { parameters.bind(value) }
            for value in values { parameters.bind(value) }
        }
    }

    package func delete(key: [SQLValue]) throws {
        try delete.run(key)
    }
}
