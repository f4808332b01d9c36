import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite
import NIOCore
import PostgresNIO

@testable import KotaSyncServer

/// Two masters holding the same rows: one SQLite master that the real merge filled (pushes from
/// devices), and the PostgreSQL master given the same rows, heads, history and replicas as the
/// merge left them in the SQLite one — so the read paths of both can be compared on one state.
///
/// The copy stands in for a push on PostgreSQL (helper pgmerge writes that push in parallel; until
/// it lands, the read paths are tested on rows written as the merge leaves them). It copies what
/// the read paths read, by the PostgreSQL schema's columns: each replicated table's rows through
/// ``PostgresTableDefinition/insertRow`` and ``PostgresTableDefinition/bindRow(key:values:)``, and
/// the bookkeeping tables `rows` (heads: version, `RowClocksCoding` clocks, scope, `gone_for`),
/// `history`, `replicas`, `changesets`, `conflicts` and `devices` value by value.
enum SeededMaster {
    /// The bookkeeping tables copied, SQLite name → PostgreSQL name.
    static let bookkeeping = [
        ("_ks_rows", "rows"), ("_ks_history", "history"), ("_ks_replicas", "replicas"),
        ("_ks_changesets", "changesets"), ("_ks_conflicts", "conflicts"), ("_ks_devices", "devices"),
    ]

    /// Copies what `sqlite` holds (after its pushes) into `postgres`, whose schema is prepared
    /// for the same config and which holds nothing yet.
    static func copy(from sqlite: SQLiteMasterStore, to postgres: PostgresMasterStore) async throws {
        try await sqlite.flushAudit()
        let config = sqlite.config
        let tables = try config.tables.map { try PostgresTableDefinition($0) }
        try await postgres.master.transaction { connection in
            for table in tables {
                let names = (table.schema.primaryKey + table.schema.columns).map { SQL.quote($0.name) }
                let rows = try await sqlite.pool.read { db in
                    try Row.fetchAll(
                        db, sql: "SELECT \(names.joined(separator: ", ")) FROM \(SQL.quote(table.schema.name))"
                    )
                    .map { row in (0..<names.count).map { SQLValue(row[$0] as DatabaseValue) } }
                }
                for row in rows {
                    let keyCount = table.schema.primaryKey.count
                    try await connection.query(
                        PostgresQuery(
                            unsafeSQL: table.insertRow,
                            binds: try table.bindRow(
                                key: Array(row.prefix(keyCount)), values: Array(row.dropFirst(keyCount)))),
                        logger: SQLiteMasterStore.quietLogger)
                }
            }
            for (from, to) in bookkeeping {
                try await copyBookkeeping(from: from, to: to, sqlite: sqlite, connection)
            }
        }
    }

    /// Copies one bookkeeping table, converting each value to its PostgreSQL column's type.
    private static func copyBookkeeping(
        from: String, to: String, sqlite: SQLiteMasterStore, _ connection: PostgresConnection
    ) async throws {
        var columns: [(name: String, type: String)] = []
        for try await (name, type, domain) in try await connection.query(
            """
            SELECT column_name::text, data_type::text, coalesce(domain_name::text, '') FROM information_schema.columns
            WHERE table_schema = 'kotasync' AND table_name = \(to) ORDER BY ordinal_position
            """, logger: SQLiteMasterStore.quietLogger
        ).decode((String, String, String).self) {
            columns.append((name, domain == "value" ? "value" : type))
        }
        let names = columns.map { SQL.quote($0.name) }
        let rows = try await sqlite.pool.read { db in
            try Row.fetchAll(db, sql: "SELECT \(names.joined(separator: ", ")) FROM \(from)")
                .map { row in (0..<names.count).map { SQLValue(row[$0] as DatabaseValue) } }
        }
        for row in rows {
            var bindings = PostgresBindings()
            var placeholders: [String] = []
            for (value, column) in zip(row, columns) {
                let first = bindings.count + 1
                switch (column.type, value) {
                case ("value", _):
                    placeholders.append(PostgresColumnType.value.placeholder(first))
                    try PostgresColumnType.value.bind(value, to: &bindings)
                case (_, .null):
                    placeholders.append("$\(first)")
                    bindings.appendNull()
                case ("boolean", .integer(let i)):
                    placeholders.append("$\(first)")
                    bindings.append(i != 0)
                case ("bigint", .integer(let i)), ("integer", .integer(let i)), ("smallint", .integer(let i)):
                    placeholders.append("$\(first)::\(column.type)")
                    bindings.append(i)
                case ("bytea", .blob(let b)):
                    placeholders.append("$\(first)")
                    bindings.append(ByteBuffer(bytes: b))
                case ("text", .text(let t)):
                    placeholders.append("$\(first)")
                    bindings.append(t)
                default:
                    throw SyncError(.internalError, "cannot copy \(from).\(column.name) (\(column.type)): \(value)")
                }
            }
            try await connection.query(
                PostgresQuery(
                    unsafeSQL: """
                        INSERT INTO kotasync.\(to) (\(columns.map(\.name).joined(separator: ", ")))
                        VALUES (\(placeholders.joined(separator: ", ")))
                        """, binds: bindings), logger: SQLiteMasterStore.quietLogger)
        }
    }
}

/// A SQLite master in a new temporary directory.
func temporarySQLiteMaster(_ config: ServerConfig, _ name: String = #function) throws -> SQLiteMasterStore {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
        "kotasync-pgread-\(name.filter(\.isLetter))-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return try SQLiteMasterStore(path: dir.appendingPathComponent("master.sqlite").path, config: config)
}
