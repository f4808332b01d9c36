import Foundation
import GRDB
import KotaSyncCore

extension SQLValue {
    /// The value as GRDB binds it, storage class unchanged.
    package var databaseValue: DatabaseValue {
        switch self {
        case .null: .null
        case .integer(let v): v.databaseValue
        case .real(let v): v.databaseValue
        case .text(let v): v.databaseValue
        case .blob(let v): Data(v).databaseValue
        }
    }

    /// The value GRDB read, storage class unchanged.
    package init(_ dbValue: DatabaseValue) {
        switch dbValue.storage {
        case .null: self = .null
        case .int64(let v): self = .integer(v)
        case .double(let v): self = .real(v)
        case .string(let v): self = .text(v)
        case .blob(let v): self = .blob([UInt8](v))
        }
    }
}

/// SQL text helpers.
package enum SQL {
    /// `name` as a quoted SQL identifier.
    package static func quote(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// `text` as a quoted SQL string literal.
    package static func literal(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "'", with: "''") + "'"
    }

    /// `"a" = ? AND "b" = ?` for the key columns.
    package static func keyPredicate(_ columns: [String]) -> String {
        columns.map { "\(quote($0)) = ?" }.joined(separator: " AND ")
    }
}

/// Reads table definitions back from a SQLite database.
package enum SchemaIntrospection {
    /// The columns of each UNIQUE index of `table` other than its primary key (the indexes a
    /// row can collide on besides its key).
    package static func uniqueIndexes(_ db: Database, table: String) throws -> [[String]] {
        var out: [[String]] = []
        for index in try Row.fetchAll(db, sql: "PRAGMA index_list(\(SQL.quote(table)))") {
            guard index["unique"] as Int == 1, index["origin"] as String != "pk" else { continue }
            let columns = try Row.fetchAll(db, sql: "PRAGMA index_info(\(SQL.quote(index["name"] as String)))")
                .compactMap { $0["name"] as String? }
            if !columns.isEmpty { out.append(columns) }
        }
        return out
    }

    /// The columns of `table` as SQLite reports them: key columns in key order, other columns in
    /// declaration order. Nil when the table does not exist.
    package static func describe(_ db: Database, table: String) throws -> (
        primaryKey: [ColumnSchema], columns: [ColumnSchema]
    )? {
        let rows = try Row.fetchAll(
            db, sql: "SELECT name, type, \"notnull\", pk FROM pragma_table_info(?)", arguments: [table])
        guard !rows.isEmpty else { return nil }
        var key: [(Int, ColumnSchema)] = []
        var columns: [ColumnSchema] = []
        for row in rows {
            let column = ColumnSchema(name: row["name"], declaredType: row["type"], notNull: row["notnull"] as Int != 0)
            let pk: Int = row["pk"]
            if pk > 0 { key.append((pk, column)) } else { columns.append(column) }
        }
        return (key.sorted { $0.0 < $1.0 }.map(\.1), columns)
    }
}
