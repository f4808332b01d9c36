import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite
import Logging
import NIOSSL
import PostgresNIO

/// A connection pool to the master on PostgreSQL, and the master's schema there.
///
/// Lifecycle: ``connect(to:password:logger:)`` starts the pool (postgres-nio's `PostgresClient`,
/// whose `run()` goes on in a task owned by this value); ``close()`` ends it, after which no
/// query may be made. One `PostgresMaster` per process and master; every store of that master
/// (credentials, audit, and next the sync stores) shares it. Several processes (several
/// `kotasync-server`s, the command line) may have theirs on the same database at once.
///
/// Layout (decision D4): the replicated tables are ordinary tables with the config's names and
/// columns in the database's `public` schema, so psql and BI tools read them as they are; the
/// bookkeeping lives in the schema `kotasync` (`PostgresSchema`).
///
/// ## Types
///
/// Every value keeps its SQLite storage class and value exactly, as the SQLite master keeps it
/// (`PostgresColumnType` writes the mapping once). A column's type follows its SQLite affinity:
/// INTEGER → `bigint`; REAL → `double precision` (bit for bit, ±∞ and subnormals included);
/// TEXT → `text` (`'007'` stays text); NUMERIC → `numeric` (integers without and reals with a
/// fractional digit, so the two stay apart); BLOB or no declared type → the composite
/// `kotasync.value` `(i bigint, r double precision, t text, b bytea)` with exactly one field set.
/// NULL is NULL; an empty BLOB is an empty `bytea`. A value of a storage class the column does not
/// take is refused with `type_mismatch` before it is merged, on both backends. On PostgreSQL only,
/// the mapping also refuses a text holding U+0000 (`type_mismatch`), which PostgreSQL's text
/// cannot store.
/// `samples/postgres/README.md` ("Types") says the same for a city's operator.
public final class PostgresMaster: Sendable {
    /// The pool. Queries interpolate values as binds (`"… WHERE id = \(id)"`).
    package let client: PostgresClient
    /// Where the master is.
    public let location: PostgresLocation
    let logger: Logger
    private let running: Task<Void, Never>
    /// How many statements the blocking transactions (merges, reviewers' decisions) have sent:
    /// each is a round trip on which the transaction waits, so the count per push is what the
    /// merge's set-based reads and batched writes keep low (the benchmark and a test read it).
    package let blockingStatements = StatementCount()
    /// One connection's settings, for ``probe()``.
    private let probeConfiguration: PostgresConnection.Configuration

    /// Transaction-scoped advisory lock keys (`pg_advisory_xact_lock`), one per thing serialised
    /// across every process on the master. Stable numbers: other servers of the same master use them.
    package enum LockKey: Int64 {
        /// Creating or upgrading the schema (several servers starting at once).
        case schema = 0x6B73_0001
        /// Appending to the audit log's hash chain: one chain, whichever server appends.
        case audit = 0x6B73_0002
        /// The merge, from version allocation to commit (decision D3).
        case merge = 0x6B73_0003
    }

    private init(
        client: PostgresClient, location: PostgresLocation, probe: PostgresConnection.Configuration, logger: Logger
    ) {
        self.client = client
        self.location = location
        self.probeConfiguration = probe
        self.logger = logger
        running = Task { await client.run() }
    }

    /// Starts a pool of connections to `location` (at most `maximumConnections` at a time).
    /// Connections are opened as they are needed; the first query tells whether the server can
    /// be reached.
    public static func connect(
        to location: PostgresLocation, password: String?, maximumConnections: Int = 20,
        logger: Logger = SQLiteMasterStore.quietLogger
    ) throws -> PostgresMaster {
        var configuration: PostgresClient.Configuration
        configuration = PostgresClient.Configuration(
            host: location.host, port: location.port, username: location.user, password: password,
            database: location.database, tls: try tls(location.sslMode))
        configuration.options.maximumConnections = maximumConnections
        configuration.options.connectTimeout = .seconds(10)
        // The pool's only warning is that a lease came before `run()` had started, which the
        // first query after `connect` always races, harmlessly (the lease waits): an operator
        // would read it at every start. Its errors stay; debugging shows everything.
        var background = logger
        if logger.logLevel > .debug { background.logLevel = .error }
        let client = PostgresClient(configuration: configuration, backgroundLogger: background)
        let (tlsConfiguration, required) = try tlsSettings(location.sslMode)
        let probeTLS: PostgresConnection.Configuration.TLS
        if let tlsConfiguration {
            probeTLS =
                required
                ? .require(try NIOSSLContext(configuration: tlsConfiguration))
                : .prefer(try NIOSSLContext(configuration: tlsConfiguration))
        } else {
            probeTLS = .disable
        }
        var probe = PostgresConnection.Configuration(
            host: location.host, port: location.port, username: location.user, password: password,
            database: location.database, tls: probeTLS)
        probe.options.connectTimeout = TimeAmount.seconds(10)
        return PostgresMaster(client: client, location: location, probe: probe, logger: logger)
    }

    private static func tls(_ mode: PostgresLocation.SSLMode) throws -> PostgresClient.Configuration.TLS {
        let (configuration, required) = try tlsSettings(mode)
        guard let configuration else { return .disable }
        return required ? .require(configuration) : .prefer(configuration)
    }

    /// The TLS settings of `mode` (nil: none), and whether the server must take them.
    private static func tlsSettings(_ mode: PostgresLocation.SSLMode) throws -> (TLSConfiguration?, required: Bool) {
        switch mode {
        case .disable:
            return (nil, false)
        case .prefer, .require:
            // As libpq: encrypted, the certificate not checked (verify-ca / verify-full check it).
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.certificateVerification = .none
            return (tls, mode == .require)
        case .verifyCA:
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.certificateVerification = .noHostnameVerification
            return (tls, true)
        case .verifyFull:
            return (.makeClientConfiguration(), true)
        }
    }

    /// Opens one connection and closes it, to say at once and in the server's words why the
    /// master cannot be reached (refused, no such database, a wrong password) — the pool only
    /// gives up after a minute of retries, with no reason.
    func probe() async throws {
        do {
            let connection = try await PostgresConnection.connect(
                configuration: probeConfiguration, id: 0, logger: logger)
            try await connection.close()
        } catch let error as PSQLError {
            let reason =
                error.serverInfo?[.message]
                ?? error.underlying.map { "\($0)" } ?? "\(error.code)"
            throw ConfigError(
                .masterUnreachable,
                "Cannot connect to the PostgreSQL master at \(location): \(reason). Check that the server runs and listens there, that the database and the role exist, and the password (--master-password-file, KOTASYNC_MASTER_PASSWORD_FILE or PGPASSWORD)."
            )
        }
    }

    /// Runs `body` in a transaction on one connection of the pool: committed when `body` returns,
    /// rolled back when it throws, and then `body`'s own error is rethrown (postgres-nio's
    /// `withTransaction` wraps it, which would hide a `SyncError`'s code from the caller).
    /// `begin` is the statement that opens it (``readSnapshot(isolation:_:)`` opens a read-only
    /// snapshot).
    package func transaction<T: Sendable>(
        isolation: isolated (any Actor)? = #isolation, begin: String = "BEGIN",
        _ body: (PostgresConnection) async throws -> T
    ) async throws -> T {
        try await client.withConnection { connection in
            try await connection.query(PostgresQuery(unsafeSQL: begin), logger: logger)
            do {
                let value = try await body(connection)
                try await connection.query("COMMIT", logger: logger)
                return value
            } catch {
                _ = try? await connection.query("ROLLBACK", logger: logger)
                throw error
            }
        }
    }

    /// Ends the pool: connections close, queries still waiting fail.
    public func close() async {
        running.cancel()
        await running.value
    }

    /// Creates what is missing of the master's schema for `config` (the bookkeeping schema, the
    /// replicated tables and their unique indexes), in one transaction under the schema lock, so
    /// that servers starting together do not race. A table that exists must have the config's
    /// key and columns with their mapped types (`config_invalid_ddl` otherwise).
    ///
    /// With `rows` (a server or command opening the master), a new master also gets the config's
    /// seed and bookkeeping for the rows already in its tables, and every start brings the rows'
    /// scopes in line with the config's sync rules (``prepareRows(_:config:tables:)``). Without
    /// (`master copy`, which brings rows and bookkeeping of its own), only the schema is made.
    public func prepareSchema(for config: ServerConfig, rows: Bool = true) async throws {
        let tables = try config.tables.map { try PostgresTableDefinition($0) }
        try await probe()
        try await transaction { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(\(LockKey.schema.rawValue))", logger: logger)
            // Type names as `columns(of:)` reads them depend on the search path: for a role named
            // `kotasync`, the default path ("$user", public) shows `kotasync.value` as `value`.
            try await connection.query("SET LOCAL search_path TO pg_catalog, public", logger: logger)
            for statement in PostgresSchema.statements
            where try await !Self.indexExists(statement, connection, logger: logger) {
                try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
            }
            try await migrate(connection, config: config)
            for table in tables {
                let existing = try await Self.columns(of: table.schema.name, connection, logger: logger)
                if existing.isEmpty {
                    try await connection.query(PostgresQuery(unsafeSQL: table.createTable), logger: logger)
                } else {
                    try table.check(existing: existing, version: config.schemaVersion)
                }
                for index in table.createUniqueIndexes
                where try await !Self.indexExists(index, connection, logger: logger) {
                    try await connection.query(PostgresQuery(unsafeSQL: index), logger: logger)
                }
            }
            guard rows else { return }
            try await prepareRows(connection, config: config, tables: tables)
            try await connection.query(
                """
                INSERT INTO kotasync.server(key, value) VALUES ('created_at', \(Timestamp.string(Date())))
                ON CONFLICT (key) DO NOTHING
                """, logger: logger)
        }
    }

    /// Whether `statement` is a `CREATE [UNIQUE] INDEX IF NOT EXISTS name ON schema.table …`
    /// whose index exists already. Such a statement takes a SHARE lock on its table before it
    /// looks, and every open (a server starting, `kotasync-server import`, `token`, …) runs it
    /// while the servers write: holding SHARE on the tables whose indexes come first (`tokens`)
    /// and waiting for SHARE on `kotasync.audit`, it deadlocked with a server's audit batch,
    /// which holds `audit` and waits to write `tokens`, and the command failed (40P01). So an
    /// index that exists is not asked for again.
    static func indexExists(_ statement: String, _ connection: PostgresConnection, logger: Logger) async throws
        -> Bool
    {
        guard let name = statement.range(of: "INDEX IF NOT EXISTS "),
            let on = statement.range(of: " ON ", range: name.upperBound..<statement.endIndex)
        else { return false }
        let table = statement[on.upperBound...].prefix { $0 != " " && $0 != "(" }
        guard let dot = table.firstIndex(of: ".") else { return false }
        let qualified = "\(table[..<dot]).\(statement[name.upperBound..<on.lowerBound])"
        let rows = try await connection.query("SELECT to_regclass(\(qualified)) IS NOT NULL", logger: logger)
        for try await exists in rows.decode(Bool.self) { return exists }
        return false
    }

    /// An existing table's columns in `public` and their types as `format_type` names them.
    static func columns(of table: String, _ connection: PostgresConnection, logger: Logger) async throws
        -> [String: String]
    {
        let rows = try await connection.query(
            """
            SELECT a.attname, format_type(a.atttypid, a.atttypmod)
            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relname = \(table) AND a.attnum > 0 AND NOT a.attisdropped
            """, logger: logger)
        var out: [String: String] = [:]
        for try await (name, type) in rows.decode((String, String).self) { out[name] = type }
        return out
    }
}

/// A replicated table as PostgreSQL holds it: the config's name and columns, each column of the
/// type its SQLite affinity maps to (``PostgresColumnType``), the primary key, and the UNIQUE
/// indexes of the SQLite DDL (the merge quarantines rows that collide on them).
///
/// What is not carried over: foreign keys (the SQLite master does not enforce them either: the
/// merge holds a child until its parent arrives), CHECK constraints and defaults (SQL that is
/// SQLite's; the server refuses values by type and size before they reach the table).
package struct PostgresTableDefinition: Sendable {
    package let schema: TableSchema
    package let keyTypes: [PostgresColumnType]
    package let columnTypes: [PostgresColumnType]
    /// The UNIQUE indexes' columns, other than the primary key.
    package let uniqueIndexes: [[String]]

    package init(_ table: TableSchema) throws {
        schema = table
        keyTypes = table.primaryKey.map { PostgresColumnType($0.affinity) }
        columnTypes = table.columns.map { PostgresColumnType($0.affinity) }
        let scratch = try DatabaseQueue()
        uniqueIndexes = try scratch.write { db in
            try db.execute(sql: table.ddl)
            return try SchemaIntrospection.uniqueIndexes(db, table: table.name)
        }
    }

    /// `name` as a PostgreSQL identifier (double quotes, doubled inside).
    package static func quote(_ name: String) -> String { SQL.quote(name) }

    package var qualifiedName: String { "public.\(Self.quote(schema.name))" }

    package var createTable: String {
        var lines: [String] = []
        for (column, type) in zip(schema.primaryKey, keyTypes) {
            lines.append("\(Self.quote(column.name)) \(type.sql) NOT NULL")
        }
        for (column, type) in zip(schema.columns, columnTypes) {
            lines.append("\(Self.quote(column.name)) \(type.sql)\(column.notNull ? " NOT NULL" : "")")
        }
        lines.append("PRIMARY KEY (\(schema.primaryKey.map { Self.quote($0.name) }.joined(separator: ", ")))")
        return "CREATE TABLE \(qualifiedName) (\n    \(lines.joined(separator: ",\n    "))\n)"
    }

    package var createUniqueIndexes: [String] {
        uniqueIndexes.enumerated().map { n, columns in
            let name = Self.quote("\(schema.name)_unique_\(n + 1)")
            return
                "CREATE UNIQUE INDEX IF NOT EXISTS \(name) ON \(qualifiedName) (\(columns.map(Self.quote).joined(separator: ", ")))"
        }
    }

    /// The types of the key columns then the other columns, in the order rows are bound and read.
    package var allTypes: [PostgresColumnType] { keyTypes + columnTypes }

    /// An `INSERT` of a whole row, key then columns, with the parameters ``bindRow(key:values:)`` makes.
    package var insertRow: String {
        let names = (schema.primaryKey + schema.columns).map { Self.quote($0.name) }
        var next = 1
        var placeholders: [String] = []
        for type in allTypes {
            placeholders.append(type.placeholder(next))
            next += type.parameterCount
        }
        return
            "INSERT INTO \(qualifiedName) (\(names.joined(separator: ", "))) VALUES (\(placeholders.joined(separator: ", ")))"
    }

    /// The parameters of ``insertRow`` for a row's key and every column's value, each mapped by
    /// its column's type (``PostgresColumnType/bind(_:to:)``).
    package func bindRow(key: [SQLValue], values: [SQLValue]) throws(SyncError) -> PostgresBindings {
        precondition(key.count == keyTypes.count && values.count == columnTypes.count)
        var bindings = PostgresBindings(capacity: allTypes.reduce(0) { $0 + $1.parameterCount })
        for (value, type) in zip(key + values, allTypes) { try type.bind(value, to: &bindings) }
        return bindings
    }

    /// A `SELECT` of every row, key then columns, in key order, as ``decodeRow(_:)`` reads it.
    package var selectRows: String {
        let expressions = zip(schema.primaryKey + schema.columns, allTypes).flatMap { column, type in
            type.select(Self.quote(column.name))
        }
        let order = schema.primaryKey.map { Self.quote($0.name) }.joined(separator: ", ")
        return "SELECT \(expressions.joined(separator: ", ")) FROM \(qualifiedName) ORDER BY \(order)"
    }

    /// A row read by ``selectRows``: its key and every column's value.
    package func decodeRow(_ row: PostgresRow) throws -> (key: [SQLValue], values: [SQLValue]) {
        let cells = row.makeRandomAccess()
        var values: [SQLValue] = []
        var next = 0
        for type in allTypes {
            values.append(try type.decode(cells, at: next))
            next += type.selectCount
        }
        return (Array(values.prefix(keyTypes.count)), Array(values.dropFirst(keyTypes.count)))
    }

    /// Checks an existing table against the config: every column there, of its mapped type.
    func check(existing: [String: String], version: Int) throws(ConfigError) {
        if let refusal = MasterMigration.mismatch(
            schema, key: schema.primaryKey.map(\.name), columns: Array(existing.keys), version: version)
        {
            throw refusal
        }
        let wanted =
            zip(schema.primaryKey, keyTypes).map { ($0.name, $1) }
            + zip(schema.columns, columnTypes).map { ($0.name, $1) }
        for (name, type) in wanted {
            guard let found = existing[name] else {
                throw ConfigError(
                    .invalidDDL,
                    "The PostgreSQL master's table \(schema.name) has no column \(name), which the config names. Migrate the table or fix the config."
                )
            }
            guard found == type.formatted else {
                throw ConfigError(
                    .invalidDDL,
                    "The PostgreSQL master's column \(schema.name).\(name) is \(found); the config's declared type maps to \(type.formatted)."
                )
            }
        }
    }
}
