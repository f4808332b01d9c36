import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite
import Logging
import PostgresNIO
import Synchronization

/// Why `kotasync-server master copy` refused to copy. Nothing was written to the target.
public struct MasterCopyError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A stable code for the kind of refusal.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The source file cannot be opened, or is not a KotaSync master.
        public static let sourceUnreadable = Code(rawValue: "copy_source_unreadable")
        /// The source's tables do not match the config (a table, key or column differs), or its
        /// bookkeeping predates this version.
        public static let sourceMismatch = Code(rawValue: "copy_source_mismatch")
        /// The PostgreSQL master already holds rows: the copy fills an empty master only.
        public static let targetNotEmpty = Code(rawValue: "copy_target_not_empty")
        /// A value of the source cannot be kept in its PostgreSQL column (the message names the
        /// table and column, never the value).
        public static let valueRefused = Code(rawValue: "copy_value_refused")
        /// The copy could not finish (the connection failed, PostgreSQL refused a statement).
        public static let failed = Code(rawValue: "copy_failed")
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}

/// What a copy moved: each table and its number of rows, in the order they were copied.
public struct MasterCopySummary: Sendable, Equatable {
    public struct Table: Sendable, Equatable {
        /// The table's name on PostgreSQL (`public.patients`, `kotasync.rows`, …).
        public var name: String
        public var rows: Int
    }

    public var tables: [Table]

    /// The rows copied into `name`, if it was copied.
    public func rows(of name: String) -> Int? { tables.first { $0.name == name }?.rows }
}

/// Moves an SQLite master file into an empty PostgreSQL master: the replicated tables' rows and
/// every bookkeeping table (`_ks_rows` → `kotasync.rows`, …) with their ids, versions and bytes
/// as they are (`kotasync-server master copy`).
///
/// * One PostgreSQL transaction: a copy that fails or is refused leaves the target as it was (its
///   schema prepared, nothing copied). The target's tables are locked against writes for the copy, and a
///   target that holds any row is refused (``MasterCopyError/Code/targetNotEmpty``).
/// * One SQLite read transaction: the copy is one consistent snapshot of the source, which is
///   opened read-only and never written. Stop the server first: changes merged after the
///   snapshot are not in the copy.
/// * Values go through ``PostgresColumnType``, the same mapping the PostgreSQL store uses, so they
///   arrive exactly (a 64-bit integer, a REAL bit for bit, `'007'` as text, an empty BLOB, NULL).
///   A value PostgreSQL cannot hold (text with U+0000; a value of a storage class its column's
///   type does not take, which an SQLite master written by another program may hold) refuses the
///   whole copy with ``MasterCopyError/Code/valueRefused``, naming the table and column and a
///   query that finds the row, never the value.
/// * Rows stream in batches of multi-row `INSERT`s: neither one statement per row nor a whole
///   table in memory.
/// * Identity columns (replica numbers, conflict ids, and any the schema gains) are moved past
///   the copied ids (`setval`), so the next id the master hands out is new.
///
/// Not copied: chunked uploads in progress (on the SQLite backend they are files beside the
/// master, not rows of it; a device whose upload is gone starts it again).
public enum PostgresMasterCopy {
    /// Copies the SQLite master at `path` into `master`, whose schema is prepared here for
    /// `config`. `audit`, when given, is appended to the copied audit chain in the same
    /// transaction (who copied, and from where). `batchRows` caps the rows of one `INSERT`.
    public static func copy(
        from path: String, to master: PostgresMaster, config: ServerConfig, audit: AuditEntry? = nil,
        batchRows: Int = 500, logger: Logger = SQLiteMasterStore.quietLogger
    ) async throws -> MasterCopySummary {
        let source = try openSource(path)
        let plans = try tablePlans(config)
        do {
            // The copy brings the rows, their bookkeeping and the server's settings: no seed.
            try await master.prepareSchema(for: config, rows: false)
            return try await copy(
                source, path: path, plans: plans, to: master, config: config, audit: audit,
                batchRows: batchRows, logger: logger)
        } catch let error as PSQLError {
            // The server's message alone: its detail may quote a value.
            throw MasterCopyError(
                .failed,
                "The copy to \(master.location) failed and changed nothing: "
                    + (error.serverInfo?[.message] ?? error.underlying.map { "\($0)" } ?? "\(error.code)") + "."
            )
        }
    }

    private static func copy(
        _ source: DatabaseQueue, path: String, plans: [Plan], to master: PostgresMaster, config: ServerConfig,
        audit: AuditEntry?, batchRows: Int, logger: Logger
    ) async throws -> MasterCopySummary {
        try await master.transaction { connection in
            // The locks a merge and an audit append take before they write, then the tables:
            // servers and commands on the master may read meanwhile, not write.
            for key in [PostgresMaster.LockKey.merge, .audit] {
                try await connection.query("SELECT pg_advisory_xact_lock(\(key.rawValue))", logger: logger)
            }
            let targets = try await targetTables(connection, config: config)
            try await connection.query(
                PostgresQuery(unsafeSQL: "LOCK TABLE \(targets.map(\.sql).joined(separator: ", ")) IN EXCLUSIVE MODE"),
                logger: logger)
            try await checkEmpty(connection, tables: Array(targets.dropFirst()))
            let summary = try await source.read { db in
                try checkSource(db, config: config, plans: plans, path: path)
                var copied: [MasterCopySummary.Table] = []
                for plan in plans {
                    let rows = try copyTable(plan, from: db, to: connection, batchRows: batchRows, logger: logger)
                    copied.append(.init(name: plan.name, rows: rows))
                }
                return MasterCopySummary(tables: copied)
            }
            try await moveIdentities(connection)
            if let audit { try await PostgresMasterStore.append([audit], connection) }
            return summary
        }
    }

    // MARK: - The tables

    /// How one column is read from SQLite and written to PostgreSQL.
    enum Kind: Sendable {
        /// A column of one of the mapping's types (``PostgresColumnType``).
        case typed(PostgresColumnType)
        /// An SQLite integer kept as `smallint` (`history.op`).
        case smallint
        /// An SQLite 0/1 integer kept as `boolean`.
        case boolean
        /// An SQLite BLOB kept as `bytea` (keys, clocks, changesets, hashes).
        case bytea

        var parameterCount: Int {
            if case .typed(let type) = self { return type.parameterCount }
            return 1
        }

        func placeholder(_ first: Int) -> String {
            switch self {
            case .typed(let type): type.placeholder(first)
            case .smallint: "$\(first)::smallint"
            case .boolean: "$\(first)::boolean"
            case .bytea: "$\(first)::bytea"
            }
        }

        /// Appends `value`'s parameters; a value the column cannot hold throws `type_mismatch`.
        func bind(_ value: SQLValue, to bindings: inout PostgresBindings) throws(SyncError) {
            switch (self, value) {
            case (.typed(let type), _): try type.bind(value, to: &bindings)
            case (_, .null): bindings.appendNull()
            case (.smallint, .integer(let i)) where Int16(exactly: i) != nil: bindings.append(Int16(i))
            case (.boolean, .integer(let i)) where i == 0 || i == 1: bindings.append(i == 1)
            case (.bytea, .blob(let b)): bindings.append(ByteBuffer(bytes: b))
            default:
                throw SyncError(.typeMismatch, "A \(value.storageClass.rawValue) value does not fit this column.")
            }
        }
    }

    /// One table to copy: where from, where to, which columns.
    struct Plan: Sendable {
        /// The SQLite table.
        var source: String
        /// The PostgreSQL table, qualified and quoted for SQL.
        var target: String
        /// The PostgreSQL table as the summary names it (`public.patients`, `kotasync.rows`).
        var name: String
        /// Column names (the same on both sides) and kinds, in order.
        var columns: [(name: String, kind: Kind)]
        /// Appended to each `INSERT` (the server table's settings replace what `prepareSchema` wrote).
        var onConflict = ""

        var parametersPerRow: Int { columns.reduce(0) { $0 + $1.kind.parameterCount } }
    }

    /// The bookkeeping tables: SQLite's `_ks_x` is PostgreSQL's `kotasync.x`, column for column
    /// (`MasterSchema` and `PostgresSchema`).
    static let bookkeeping: [(table: String, columns: String)] = [
        ("server", "key:text value:text"),
        ("migrations", "version:int step:int description:text applied_at:text"),
        (
            "rows",
            "tbl:text pk:bytea version:int deleted:bool open_conflicts:int clocks:bytea scope:value gone_for:text"
        ),
        ("history", "tbl:text pk:bytea version:int writer:int stamp:int op:smallint old:bytea clamped:bool"),
        ("replicas", "number:int uuid:bytea opd:text last_sequence:int first_seen_at:text last_push_at:text"),
        (
            "changesets",
            "id:bytea replica:int first_sequence:int last_sequence:int rows:int received_at:text reply:bytea"
        ),
        (
            "conflicts",
            """
            id:int tbl:text pk:bytea col:text kind:text policy:text status:text base_version:int base_value:value \
            has_base:bool winner_writer:int winner_stamp:int winner_value:value winner_has_value:bool \
            loser_writer:int loser_stamp:int loser_version:int loser_insert:bool loser_value:value \
            loser_has_value:bool changeset:bytea decided_at:text loser_delete:bool reason:text held:text \
            related_tbl:text related_pk:bytea resolution:text
            """
        ),
        ("additive", "tbl:text pk:bytea col:text writer:int version:int value:value"),
        (
            "devices",
            "replica:int client:text pending:int last_error:text cursor:int last_pull_at:text last_seen_at:text refused:int"
        ),
        (
            "tokens",
            """
            id:text opd:text hash:text created_at:text expires_at:text revoked_at:text role:text name:text \
            last_used_at:text user_name:text
            """
        ),
        (
            "users",
            """
            name:text role:text password_kdf:text password_params:text password_salt:bytea password_hash:bytea \
            created_at:text changed_at:text
            """
        ),
        (
            "audit",
            """
            id:int at:text actor:text actor_kind:text opd:text replica:text address:text action:text status:int \
            code:text detail:text prev_hash:text hash:text
            """
        ),
    ]

    /// What to copy, replicated tables first, then the bookkeeping.
    static func tablePlans(_ config: ServerConfig) throws -> [Plan] {
        var plans: [Plan] = []
        for table in config.tables {
            let definition = try PostgresTableDefinition(table)
            let names = (table.primaryKey + table.columns).map(\.name)
            plans.append(
                Plan(
                    source: table.name, target: definition.qualifiedName, name: "public.\(table.name)",
                    columns: zip(names, definition.allTypes).map { ($0, .typed($1)) }))
        }
        for (table, columns) in bookkeeping {
            let parsed = columns.split(separator: " ").map { pair -> (name: String, kind: Kind) in
                let parts = pair.split(separator: ":")
                let kind: Kind =
                    switch parts[1] {
                    case "int": .typed(.bigint)
                    case "text": .typed(.text)
                    case "value": .typed(.value)
                    case "bytea": .bytea
                    case "bool": .boolean
                    default: .smallint
                    }
                return (String(parts[0]), kind)
            }
            plans.append(
                Plan(
                    source: "_ks_\(table)", target: "kotasync.\(table)", name: "kotasync.\(table)", columns: parsed,
                    onConflict: table == "server" ? " ON CONFLICT (key) DO UPDATE SET value = excluded.value" : ""))
        }
        return plans
    }

    // MARK: - The source

    static func openSource(_ path: String) throws -> DatabaseQueue {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw MasterCopyError(.sourceUnreadable, "There is no master file \(path).")
        }
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(10)
        do {
            return try DatabaseQueue(path: path, configuration: configuration)
        } catch {
            throw MasterCopyError(.sourceUnreadable, "Cannot open \(path) as an SQLite database: \(error)")
        }
    }

    /// Refuses a source that is not a KotaSync master of `config`: every table of the config with
    /// the same key and columns (no more, none fewer: a column the config does not name would not
    /// be copied), every bookkeeping table with this version's columns, and no merged row of a
    /// table the config does not name.
    static func checkSource(_ db: Database, config: ServerConfig, plans: [Plan], path: String) throws {
        let isMaster: Bool
        do {
            isMaster =
                try db.tableExists("_ks_server")
                && String.fetchOne(db, sql: "SELECT value FROM _ks_server WHERE key = 'created_at'") != nil
        } catch {
            throw MasterCopyError(.sourceUnreadable, "Cannot read \(path) as an SQLite database: \(error)")
        }
        guard isMaster else {
            throw MasterCopyError(
                .sourceUnreadable, "\(path) is not a KotaSync master file (it has no `_ks_server` creation record).")
        }
        for table in config.tables {
            guard let existing = try SchemaIntrospection.describe(db, table: table.name) else {
                throw MasterCopyError(
                    .sourceMismatch,
                    "The master file has no table \(table.name), which the config names. Copy with the config the master was served with."
                )
            }
            guard existing.primaryKey.map(\.name) == table.primaryKey.map(\.name) else {
                throw MasterCopyError(
                    .sourceMismatch,
                    "The master file's table \(table.name) has the key (\(existing.primaryKey.map(\.name).joined(separator: ", "))); the config's is (\(table.primaryKey.map(\.name).joined(separator: ", ")))."
                )
            }
            let wanted = Set(table.columns.map(\.name))
            let found = Set(existing.columns.map(\.name))
            if let missing = wanted.subtracting(found).sorted().first {
                throw MasterCopyError(
                    .sourceMismatch,
                    "The master file's table \(table.name) has no column \(missing), which the config names.")
            }
            if let extra = found.subtracting(wanted).sorted().first {
                throw MasterCopyError(
                    .sourceMismatch,
                    "The master file's table \(table.name) has a column \(extra) that the config does not name; it would not be copied. Add it to the config's DDL, or drop it from the file first."
                )
            }
        }
        for plan in plans where plan.source.hasPrefix("_ks_") {
            let columns = try Row.fetchAll(db, sql: "PRAGMA table_info(\(SQL.quote(plan.source)))").map {
                $0["name"] as String
            }
            if let missing = plan.columns.map(\.name).first(where: { !columns.contains($0) }) {
                throw MasterCopyError(
                    .sourceMismatch,
                    "The master file's \(plan.source) has no column \(missing): it was last opened by an older kotasync-server. Open it once with this version (e.g. `kotasync-server audit verify --master \(path)`), then copy."
                )
            }
        }
        let known = Set(config.tables.map(\.name))
        for source in ["_ks_rows", "_ks_history", "_ks_conflicts"] {
            for name in try String.fetchAll(db, sql: "SELECT DISTINCT tbl FROM \(source)") where !known.contains(name) {
                throw MasterCopyError(
                    .sourceMismatch,
                    "The master file has merged rows of table \(name), which the config does not name. Copy with the config the master was served with."
                )
            }
        }
    }

    // MARK: - The target

    /// Every table of the target the copy writes or must find empty: the bookkeeping schema's
    /// tables (whatever this version has there), then the config's tables; each as SQL names it
    /// (qualified, quoted) and as messages name it. The first is the server settings table, which
    /// `prepareSchema` has already written to.
    static func targetTables(_ connection: PostgresConnection, config: ServerConfig) async throws -> [(
        sql: String, name: String
    )] {
        let rows = try await connection.query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'kotasync' AND tablename <> 'server' ORDER BY tablename",
            logger: SQLiteMasterStore.quietLogger)
        var tables = [(sql: "kotasync.server", name: "kotasync.server")]
        for try await name in rows.decode(String.self) {
            tables.append(("kotasync.\(PostgresTableDefinition.quote(name))", "kotasync.\(name)"))
        }
        for table in config.tables {
            tables.append((try PostgresTableDefinition(table).qualifiedName, "public.\(table.name)"))
        }
        return tables
    }

    /// Refuses a target with a row in any of `tables`.
    static func checkEmpty(_ connection: PostgresConnection, tables: [(sql: String, name: String)]) async throws {
        var holding: [String] = []
        for table in tables {
            let rows = try await connection.query(
                PostgresQuery(unsafeSQL: "SELECT EXISTS (SELECT 1 FROM \(table.sql))"),
                logger: SQLiteMasterStore.quietLogger)
            for try await found in rows.decode(Bool.self) where found { holding.append(table.name) }
        }
        guard holding.isEmpty else {
            throw MasterCopyError(
                .targetNotEmpty,
                "The PostgreSQL master already holds rows (in \(holding.prefix(5).joined(separator: ", "))\(holding.count > 5 ? ", …" : "")). `master copy` fills an empty master only: give it a new database (createdb), nothing was changed."
            )
        }
    }

    /// Streams `plan`'s rows from `db` into `connection` in batches; returns how many.
    ///
    /// Runs on the SQLite reader's thread (inside its read transaction) and waits there for each
    /// batch's round trip: the source's snapshot stays open while the target receives it.
    static func copyTable(
        _ plan: Plan, from db: Database, to connection: PostgresConnection, batchRows: Int, logger: Logger
    ) throws -> Int {
        let perRow = plan.parametersPerRow
        // PostgreSQL takes at most 65535 parameters a statement.
        let rowsPerBatch = max(1, min(batchRows, 60_000 / perRow))
        let names = plan.columns.map { PostgresTableDefinition.quote($0.name) }.joined(separator: ", ")
        let rowPlaceholders: (Int) -> String = { first in
            var next = first
            var parts: [String] = []
            for column in plan.columns {
                parts.append(column.kind.placeholder(next))
                next += column.kind.parameterCount
            }
            return "(" + parts.joined(separator: ", ") + ")"
        }
        func statement(rows: Int) -> String {
            let values = (0..<rows).map { rowPlaceholders(1 + $0 * perRow) }.joined(separator: ", ")
            return "INSERT INTO \(plan.target) (\(names)) VALUES \(values)\(plan.onConflict)"
        }
        let fullBatch = statement(rows: rowsPerBatch)
        var bindings = PostgresBindings(capacity: perRow * rowsPerBatch)
        var pending = 0
        var total = 0
        func flush() throws {
            guard pending > 0 else { return }
            let query = PostgresQuery(
                unsafeSQL: pending == rowsPerBatch ? fullBatch : statement(rows: pending), binds: bindings)
            try waitFor { _ = try await connection.query(query, logger: logger) }
            bindings = PostgresBindings(capacity: perRow * rowsPerBatch)
            pending = 0
        }
        let select = try db.makeStatement(
            sql:
                "SELECT \(plan.columns.map { SQL.quote($0.name) }.joined(separator: ", ")) FROM \(SQL.quote(plan.source))"
        )
        try select.forEachRow([]) { row in
            for (i, column) in plan.columns.enumerated() {
                let value = row.value(Int32(i))
                do throws(SyncError) {
                    try column.kind.bind(value, to: &bindings)
                } catch {
                    throw refusal(plan, column: column.name, value: value, error: error)
                }
            }
            pending += 1
            total += 1
            if pending == rowsPerBatch { try flush() }
            return true
        }
        try flush()
        return total
    }

    /// The refusal of a value, naming its table and column and how to find the row, not the value.
    static func refusal(_ plan: Plan, column: String, value: SQLValue, error: SyncError) -> MasterCopyError {
        let quoted = SQL.quote(column)
        let find: String
        if case .text(let t) = value, t.utf8.contains(0) {
            find = "SELECT rowid, * FROM \(SQL.quote(plan.source)) WHERE instr(\(quoted), char(0)) > 0"
        } else {
            find = "SELECT * FROM \(SQL.quote(plan.source)) WHERE typeof(\(quoted)) = '\(value.storageClass.rawValue)'"
        }
        return MasterCopyError(
            .valueRefused,
            "A value in \(plan.source).\(column) cannot be kept in PostgreSQL: \(error.message) Nothing was copied. Find the row with: \(find)"
        )
    }

    /// Moves every identity column's sequence in the bookkeeping schema past the largest id copied.
    static func moveIdentities(_ connection: PostgresConnection) async throws {
        let logger = SQLiteMasterStore.quietLogger
        let rows = try await connection.query(
            """
            SELECT c.relname::text, a.attname::text FROM pg_attribute a
            JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'kotasync' AND c.relkind = 'r' AND a.attidentity <> '' AND NOT a.attisdropped
            """, logger: logger)
        var identities: [(String, String)] = []
        for try await pair in rows.decode((String, String).self) { identities.append(pair) }
        for (table, column) in identities {
            let qualified = "kotasync.\(PostgresTableDefinition.quote(table))"
            try await connection.query(
                PostgresQuery(
                    unsafeSQL: """
                        SELECT setval(pg_get_serial_sequence($1, $2), m) FROM (SELECT max(\(PostgresTableDefinition.quote(column))) AS m FROM \(qualified)) s
                        WHERE m IS NOT NULL
                        """,
                    binds: {
                        var b = PostgresBindings()
                        b.append(qualified)
                        b.append(column)
                        return b
                    }()), logger: logger)
        }
    }

    /// Runs `body` on the cooperative pool and waits for it on this (non-cooperative) thread.
    private static func waitFor(_ body: @escaping @Sendable () async throws -> Void) throws {
        let box = WaitBox()
        Task {
            do {
                try await body()
                box.finish(nil)
            } catch {
                box.finish(error)
            }
        }
        try box.wait()
    }
}

/// The outcome of ``PostgresMasterCopy/waitFor(_:)``'s task, and the signal that it is there.
private final class WaitBox: Sendable {
    private let outcome = Mutex<(any Error)?>(nil)
    private let done = DispatchSemaphore(value: 0)

    func finish(_ error: (any Error)?) {
        outcome.withLock { $0 = error }
        done.signal()
    }

    func wait() throws {
        done.wait()
        if let error = outcome.withLock({ $0 }) { throw error }
    }
}
