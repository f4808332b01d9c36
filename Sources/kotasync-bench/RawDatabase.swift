import CSQLite
import Foundation
import KotaSyncCore

/// A plain SQLite connection through the C API, for the baselines and for applying the workload
/// exactly the same way to every database. GRDB connections never get the session extension's
/// hooks; this one does.
final class RawDatabase {
    let handle: OpaquePointer
    private var statements: [String: OpaquePointer] = [:]

    init(path: String) throws {
        var db: OpaquePointer?
        let status = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nil)
        guard status == SQLITE_OK, let db else { throw BenchError("cannot open \(path): status \(status)") }
        handle = db
        sqlite3_busy_timeout(db, 10_000)
    }

    deinit {
        for statement in statements.values { sqlite3_finalize(statement) }
        sqlite3_close_v2(handle)
    }

    func execute(_ sql: String) throws {
        var message: UnsafeMutablePointer<CChar>?
        guard sqlite3_exec(handle, sql, nil, nil, &message) == SQLITE_OK else {
            let text = message.map { String(cString: $0) } ?? "?"
            sqlite3_free(message)
            throw BenchError("\(text) in: \(sql.prefix(200))")
        }
    }

    /// Runs a cached prepared statement with `values` bound in order.
    func run(_ sql: String, _ values: [SQLValue]) throws {
        let statement = try prepared(sql)
        defer { sqlite3_reset(statement) }
        bind(statement, values)
        let status = sqlite3_step(statement)
        guard status == SQLITE_DONE || status == SQLITE_ROW else {
            throw BenchError("\(String(cString: sqlite3_errmsg(handle))) in: \(sql.prefix(200))")
        }
    }

    /// The rows of a query as exact values.
    func query(_ sql: String, _ values: [SQLValue] = []) throws -> [[SQLValue]] {
        let statement = try prepared(sql)
        defer { sqlite3_reset(statement) }
        bind(statement, values)
        var rows: [[SQLValue]] = []
        while sqlite3_step(statement) == SQLITE_ROW {
            rows.append(
                (0..<sqlite3_column_count(statement)).map { i in
                    switch sqlite3_column_type(statement, i) {
                    case SQLITE_INTEGER: .integer(sqlite3_column_int64(statement, i))
                    case SQLITE_FLOAT: .real(sqlite3_column_double(statement, i))
                    case SQLITE_TEXT: .text(String(cString: sqlite3_column_text(statement, i)))
                    case SQLITE_BLOB:
                        .blob(
                            Array(
                                UnsafeRawBufferPointer(
                                    start: sqlite3_column_blob(statement, i),
                                    count: Int(sqlite3_column_bytes(statement, i)))))
                    default: .null
                    }
                })
        }
        return rows
    }

    func count(_ table: String) throws -> Int {
        guard case .integer(let n) = try query("SELECT count(*) FROM \"\(table)\"").first?.first else { return 0 }
        return Int(n)
    }

    private func prepared(_ sql: String) throws -> OpaquePointer {
        if let statement = statements[sql] { return statement }
        var statement: OpaquePointer?
        guard sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil) == SQLITE_OK,
            let statement
        else { throw BenchError("\(String(cString: sqlite3_errmsg(handle))) in: \(sql.prefix(200))") }
        statements[sql] = statement
        return statement
    }

    private func bind(_ statement: OpaquePointer, _ values: [SQLValue]) {
        // SQLITE_TRANSIENT: SQLite copies the bytes before the call returns.
        let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
        for (i, value) in values.enumerated() {
            let index = Int32(i + 1)
            switch value {
            case .null: sqlite3_bind_null(statement, index)
            case .integer(let v): sqlite3_bind_int64(statement, index, v)
            case .real(let v): sqlite3_bind_double(statement, index, v)
            case .text(let v): sqlite3_bind_text(statement, index, v, -1, transient)
            case .blob(let v):
                v.withUnsafeBytes { sqlite3_bind_blob(statement, index, $0.baseAddress, Int32($0.count), transient) }
            }
        }
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
