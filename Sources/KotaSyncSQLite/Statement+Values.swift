import CSQLite
import GRDB
import KotaSyncCore

extension Statement {
    /// Runs this (non-query) statement with `values` bound in order, straight through the C API.
    ///
    /// The merge and the pull apply run a handful of statements per row; GRDB's
    /// `StatementArguments` boxes every value into a `DatabaseValue` first, which `perf` showed as
    /// one of the largest costs after SQLite itself. Our connections install no transaction
    /// observers, so nothing GRDB tracks around execution is skipped by stepping directly.
    package func run(_ values: [SQLValue]) throws {
        try run { parameters in for value in values { parameters.bind(value) } }
    }

    /// Runs this (non-query) statement with the parameters `bind` binds, in order, straight
    /// through the C API — without first gathering them into an array, for the statements that
    /// run once per row of a page.
    package func run(binding bind: (inout StatementParameters) throws -> Void) throws {
        try forEachRow(binding: bind) { _ in false }
    }

    /// The first row of this query with `values` bound, as exact values; nil if it has none.
    package func firstRow(_ values: [SQLValue]) throws -> [SQLValue]? {
        var first: [SQLValue]?
        try forEachRow(values) { row in
            first = row.values
            return false
        }
        return first
    }

    fileprivate static func bind(_ value: SQLValue, at index: Int32, to statement: OpaquePointer) {
        // SQLITE_TRANSIENT: SQLite copies text and blobs before the call returns.
        let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
        switch value {
        case .null: sqlite3_bind_null(statement, index)
        case .integer(let v): sqlite3_bind_int64(statement, index, v)
        case .real(let v): sqlite3_bind_double(statement, index, v)
        case .text(var v):
            v.withUTF8 { utf8 in
                // A nil pointer would bind NULL, not empty text.
                if let base = utf8.baseAddress {
                    sqlite3_bind_text(statement, index, base, Int32(utf8.count), transient)
                } else {
                    sqlite3_bind_text(statement, index, "", 0, transient)
                }
            }
        case .blob(let v) where v.isEmpty:
            // Likewise: a nil pointer would bind NULL, not a blob of no bytes.
            sqlite3_bind_zeroblob(statement, index, 0)
        case .blob(let v):
            v.withUnsafeBytes { sqlite3_bind_blob(statement, index, $0.baseAddress, Int32($0.count), transient) }
        }
    }

    fileprivate static func column(_ i: Int32, of statement: OpaquePointer) -> SQLValue {
        switch sqlite3_column_type(statement, i) {
        case SQLITE_INTEGER: return .integer(sqlite3_column_int64(statement, i))
        case SQLITE_FLOAT: return .real(sqlite3_column_double(statement, i))
        case SQLITE_TEXT:
            let count = Int(sqlite3_column_bytes(statement, i))
            guard let text = sqlite3_column_text(statement, i) else { return .text("") }
            return .text(String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self))
        case SQLITE_BLOB:
            let count = Int(sqlite3_column_bytes(statement, i))
            guard count > 0, let bytes = sqlite3_column_blob(statement, i) else { return .blob([]) }
            return .blob(Array(UnsafeRawBufferPointer(start: bytes, count: count)))
        default:
            return .null
        }
    }
}

/// The parameters of a statement being bound, in order: each `bind` takes the next one.
package struct StatementParameters {
    fileprivate let statement: OpaquePointer
    private var index: Int32 = 1

    fileprivate init(statement: OpaquePointer) { self.statement = statement }

    /// Binds `value`, storage class unchanged.
    package mutating func bind(_ value: SQLValue) {
        Statement.bind(value, at: index, to: statement)
        index += 1
    }

    package mutating func bind(_ value: Int64) {
        sqlite3_bind_int64(statement, index, value)
        index += 1
    }

    /// Binds `bytes` as a blob (an empty one as a blob of no bytes, not NULL).
    package mutating func bind(blob bytes: [UInt8]) {
        Statement.bind(.blob(bytes), at: index, to: statement)
        index += 1
    }
}

extension Statement {
    /// Steps through the rows of this query with `values` bound, handing each row to `body` as
    /// SQLite holds it (nothing is copied into GRDB rows); stops early when `body` returns false.
    ///
    /// For the queries that read a whole page of rows: GRDB's `Row` copies every value into a
    /// `DatabaseValue` and looks columns up by name (lowercasing it), both visible in `perf`.
    package func forEachRow(_ values: [SQLValue], _ body: (ColumnReader) throws -> Bool) throws {
        try forEachRow(binding: { parameters in for value in values { parameters.bind(value) } }, body)
    }

    /// Steps through the rows of this query with the parameters `bind` binds, in order, as
    /// ``forEachRow(_:_:)`` does — without first gathering them into an array, for the queries
    /// that run once per merged row.
    package func forEachRow(
        binding bind: (inout StatementParameters) throws -> Void, _ body: (ColumnReader) throws -> Bool
    ) throws {
        let statement = sqliteStatement
        sqlite3_reset(statement)
        sqlite3_clear_bindings(statement)
        defer { sqlite3_reset(statement) }
        var parameters = StatementParameters(statement: statement)
        try bind(&parameters)
        while true {
            switch sqlite3_step(statement) {
            case SQLITE_ROW:
                guard try body(ColumnReader(statement: statement)) else { return }
            case SQLITE_DONE:
                return
            case let status:
                throw DatabaseError(
                    resultCode: ResultCode(rawValue: status),
                    message: String(cString: sqlite3_errmsg(sqlite3_db_handle(statement))), sql: sql)
            }
        }
    }
}

/// The columns of the row a query stands on; valid only inside the `forEachRow` call that made it.
package struct ColumnReader {
    fileprivate let statement: OpaquePointer

    /// Column `i` as an exact value.
    package func value(_ i: Int32) -> SQLValue { Statement.column(i, of: statement) }

    /// Every column, in order, as exact values.
    package var values: [SQLValue] { (0..<sqlite3_column_count(statement)).map(value) }

    package func int64(_ i: Int32) -> Int64 { sqlite3_column_int64(statement, i) }

    /// Whether column `i` is NULL.
    package func isNull(_ i: Int32) -> Bool { sqlite3_column_type(statement, i) == SQLITE_NULL }

    /// Column `i` as text (empty for NULL).
    package func text(_ i: Int32) -> String {
        guard let text = sqlite3_column_text(statement, i) else { return "" }
        return String(
            decoding: UnsafeBufferPointer(start: text, count: Int(sqlite3_column_bytes(statement, i))), as: UTF8.self)
    }

    /// Column `i` as bytes (empty for NULL or an empty blob).
    package func bytes(_ i: Int32) -> [UInt8] {
        let bytes = sqlite3_column_blob(statement, i)
        let count = Int(sqlite3_column_bytes(statement, i))
        guard count > 0, let bytes else { return [] }
        return Array(UnsafeRawBufferPointer(start: bytes, count: count))
    }
}
