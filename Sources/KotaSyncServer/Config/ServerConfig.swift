import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite
import Yams

/// An error in the server's configuration file, found when the server loads it.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A stable code for the kind of mistake.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The file cannot be read or is not valid YAML of the expected shape.
        public static let unreadable = Code(rawValue: "config_unreadable")
        /// A value is missing, duplicated or out of range.
        public static let invalid = Code(rawValue: "config_invalid")
        /// A table's DDL does not run or does not create the named table.
        public static let invalidDDL = Code(rawValue: "config_invalid_ddl")
        /// A table's primary key would collide between OPDs.
        public static let unsafePrimaryKey = Code(rawValue: "config_unsafe_primary_key")
        /// The PostgreSQL master named by the configuration cannot be reached or refuses the login.
        public static let masterUnreachable = Code(rawValue: "config_master_unreachable")
        /// `schema_version`, `min_client_schema` or a step of `migrations` is wrong: versions out
        /// of order, or a step that does not fit the version it leads to.
        public static let invalidMigration = Code(rawValue: "config_invalid_migration")
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}

/// The server's configuration: who the OPDs are and which tables replicate.
///
/// Loaded from YAML; see `samples/binjai/kotasync.yaml` for a commented example.
public struct ServerConfig: Sendable {
    /// One OPD (a department or unit) that may hold device tokens.
    public struct OPD: Sendable, Equatable, Codable {
        public var id: String
        public var name: String
        /// The OPD above this one (e.g. the health office above a clinic).
        public var parent: String?
    }

    /// The size limits the server enforces on every push before parsing it.
    public struct Limits: Sendable, Equatable {
        /// The largest request body accepted (compressed changeset bytes).
        public var maxBodyBytes: Int = 16 << 20
        /// The largest uncompressed changeset payload.
        public var maxUncompressedBytes: Int = 64 << 20
        /// The largest compression ratio.
        public var maxCompressionRatio: Int = 1000
        /// The most rows in one changeset.
        public var maxRows: Int = 200_000
        /// The most rows in one pull page.
        public var maxPullPage: Int = 10_000
        /// The most requests one token may make per minute (`429 rate_limited` above it).
        public var requestsPerMinute: Int = 6_000
        /// The longest a request may run before it is answered `503 request_timeout`.
        public var requestTimeoutSeconds: Int = 120
        /// Failed logins allowed per user name and per client address within
        /// ``loginWindowSeconds``; the next attempt is answered `429 rate_limited`.
        public var loginFailures: Int = 5
        /// The window over which failed logins are counted.
        public var loginWindowSeconds: Int = 900
        /// How long a session token from `POST /v1/login` stays valid.
        public var sessionMinutes: Int = 480
        /// The largest chunk of a chunked upload (`PATCH /v1/uploads/{id}`); the most a chunk
        /// request holds in the server's memory.
        public var maxChunkBytes: Int = 1 << 20
        /// How long a chunked upload is kept after its last chunk, in seconds, before it counts
        /// as abandoned and is discarded.
        public var uploadExpirySeconds: Int = 86_400
        /// The most unfinished chunked uploads one token may have at a time (`429
        /// too_many_uploads` for the next). A device sends one changeset at a time.
        public var maxPartialUploadsPerToken: Int = 4
        /// The most unfinished chunked uploads of all tokens together; with the above, what
        /// bounds the disk that uploads nobody finishes can take (each up to `max_body_bytes`).
        public var maxPartialUploads: Int = 64
        /// Refused requests without a valid credential (401) allowed per client address per
        /// minute, each audited; beyond it they are answered `429 rate_limited` and audited as one
        /// entry per address and minute.
        public var refusedPerMinute: Int = 60
        /// The largest value (a text's UTF-8 bytes, a blob's bytes) a device may set; a row
        /// with a larger one is refused on its own (`value_too_large`), the rest of its push
        /// merges.
        public var maxValueBytes: Int = 1 << 20
        /// The largest row (key and values, as merged with what the master holds) the master
        /// keeps; a change that would make a row larger is refused on its own (`row_too_large`).
        /// So a row cannot grow past what one pull page carries by many pushes each within
        /// ``maxValueBytes``.
        public var maxRowBytes: Int = 4 << 20
        /// The most bytes of rows in one pull page (besides ``maxPullPage`` rows); a page holds
        /// at least one row whatever its size. At most what every client accepts in a page
        /// (``KotaSyncCore/DecodeLimits/pullPage``), and a row of ``maxRowBytes`` must fit in it.
        public var maxPullPageBytes: Int = 16 << 20

        public init() {}

        /// Whether every row the master can hold fits into one pull page every client accepts,
        /// for the tables of `tables`; the config's refusal if not.
        func checkRowsFitPages(of tables: [TableSchema]) throws(ConfigError) {
            guard maxValueBytes >= 1024 else {
                throw ConfigError(
                    .invalid, "limits.max_value_bytes is \(maxValueBytes); give at least 1024 (1048576 is the default)."
                )
            }
            guard maxRowBytes >= maxValueBytes else {
                throw ConfigError(
                    .invalid,
                    "limits.max_row_bytes is \(maxRowBytes), less than limits.max_value_bytes (\(maxValueBytes)); a row holds at least one value."
                )
            }
            let clientLimit = DecodeLimits.pullPage.maxUncompressedBytes
            guard (1024...clientLimit).contains(maxPullPageBytes) else {
                throw ConfigError(
                    .invalid,
                    "limits.max_pull_page_bytes is \(maxPullPageBytes); give 1024 to \(clientLimit), the most a client accepts in one page (16777216 is the default)."
                )
            }
            guard (1...DecodeLimits.pullPage.maxRows).contains(maxPullPage) else {
                throw ConfigError(
                    .invalid,
                    "limits.max_pull_page is \(maxPullPage); give 1 to \(DecodeLimits.pullPage.maxRows), the most rows a client accepts in one page."
                )
            }
            // The widest row of the widest table, with the page's table dictionary and counts.
            let dictionary = RowLimits.dictionaryBound(tables)
            let widest = tables.map { $0.primaryKey.count + $0.columns.count }.max() ?? 0
            let largest = RowLimits.encodedBound(rowBytes: maxRowBytes, valueCount: widest) + dictionary
            guard largest <= clientLimit else {
                throw ConfigError(
                    .invalid,
                    "limits.max_row_bytes is \(maxRowBytes): a pull page holding one such row could take \(largest) bytes, more than the \(clientLimit) a client accepts. Give a smaller max_row_bytes (4194304 is the default)."
                )
            }
        }

        /// The limits as `GET /v1/schema` publishes them, so clients split their pushes to fit.
        package var published: PushLimits {
            PushLimits(maxBodyBytes: maxBodyBytes, maxUncompressedBytes: maxUncompressedBytes, maxRows: maxRows)
        }

        package var decodeLimits: DecodeLimits {
            DecodeLimits(
                maxUncompressedBytes: maxUncompressedBytes, maxCompressionRatio: maxCompressionRatio, maxRows: maxRows)
        }
    }

    /// The server's display name.
    public var name: String
    public var opds: [OPD]
    public var tables: [TableSchema]
    public var limits: Limits
    public var clockSkew: ClockSkewPolicy
    /// A SQL file run once when a new master database is created.
    public var seedFile: URL?
    /// Each table's merge policies, by table name; a table not listed merges with
    /// ``TablePolicy/standard(columnCount:)``.
    public var policies: [String: TablePolicy] = [:]
    /// Each table's foreign keys, by table name, as the DDL declares them (`REFERENCES`).
    public var foreignKeys: [String: [ForeignKey]] = [:]
    /// Who may read and write which rows (each table's `sync` entry, and the OPD hierarchy).
    public var rules = SyncRules(tables: [:], opds: [])
    /// Addresses of reverse proxies whose `X-Forwarded-For` header the server believes for the
    /// client's address (audit log, login limits). Empty: the header is ignored.
    public var trustedProxies: [String] = []
    /// The schema version `tables:` describe (`schema_version`, 1 when the config names none).
    public var schemaVersion = 1
    /// The oldest schema version a replica may push and pull at (`min_client_schema`, 1 when the
    /// config names none); older replicas are refused until they migrate.
    public var minClientSchema = 1
    /// The steps from each version to the next, oldest first (`migrations:`).
    public var migrations: [SchemaMigration] = []
    /// The tables at every version from 1 to ``schemaVersion``, oldest first, derived from
    /// `tables:` and `migrations:` (``SchemaVersions``); the last is `tables:` itself.
    public var schemas: [VersionedSchema] = []

    /// Each table's non-key columns' defaults, by table name: the DDL's constant `DEFAULT`
    /// (a number, a string, a blob literal, NULL), NULL where there is none or it is an
    /// expression (`CURRENT_TIMESTAMP`), which a replica evaluates itself.
    public var defaults: [String: [SQLValue]] = [:]

    /// The values a new row of `table` starts from: its columns' constant defaults.
    public func columnDefaults(of table: TableSchema) -> [SQLValue] {
        defaults[table.name] ?? Array(repeating: .null, count: table.columns.count)
    }

    /// The replicated tables at schema `version` (1...``schemaVersion``).
    public func schema(at version: Int) -> VersionedSchema? {
        schemas.indices.contains(version - 1) ? schemas[version - 1] : nil
    }

    /// Where the master is, as the config's `master:` names it (a path, relative to the config's
    /// folder, or a `postgresql://` URL); nil when the config names none. The command line and
    /// `KOTASYNC_MASTER` take precedence (``MasterLocation/resolve(flag:environment:config:defaultPath:)``).
    public var master: MasterLocation?

    /// A column that refers to a row of another replicated table.
    public struct ForeignKey: Sendable, Equatable {
        /// The referring columns, by schema index among the table's non-key or key columns (names).
        public var columns: [String]
        public var parentTable: String
        /// The parent's columns; its primary key when the DDL names none.
        public var parentColumns: [String]
    }

    /// The merge policies of `table`.
    public func policy(for table: TableSchema) -> TablePolicy {
        policies[table.name] ?? .standard(columnCount: table.columns.count)
    }

    /// The most key columns a replicated table may have (the replica's change log has four key slots).
    public static let maxKeyColumns = 4
    /// The most non-key columns a replicated table may have (the change log's column bitmask).
    public static let maxColumns = 62

    /// Loads and checks the configuration at `url`.
    public static func load(from url: URL) throws(ConfigError) -> ServerConfig {
        let text: String
        do {
            text = try String(contentsOf: url, encoding: .utf8)
        } catch {
            throw ConfigError(.unreadable, "Cannot read the config file \(url.path): \(error.localizedDescription)")
        }
        return try parse(yaml: text, baseURL: url.deletingLastPathComponent())
    }

    /// Parses and checks a configuration; relative paths in it resolve against `baseURL`.
    public static func parse(yaml: String, baseURL: URL) throws(ConfigError) -> ServerConfig {
        let file: ConfigFile
        do {
            file = try YAMLDecoder().decode(ConfigFile.self, from: yaml)
        } catch {
            throw ConfigError(.unreadable, "The config is not valid: \(error)")
        }
        var opdIDs = Set<String>()
        for opd in file.opds ?? [] {
            guard !opd.id.isEmpty, opdIDs.insert(opd.id).inserted else {
                throw ConfigError(.invalid, "OPD id \"\(opd.id)\" is empty or listed twice.")
            }
        }
        for opd in file.opds ?? [] {
            if let parent = opd.parent, !opdIDs.contains(parent) {
                throw ConfigError(.invalid, "OPD \(opd.id) names parent \(parent), which is not in the opds list.")
            }
        }
        guard let tableEntries = file.tables, !tableEntries.isEmpty else {
            throw ConfigError(.invalid, "The config lists no tables to replicate; add a `tables:` list.")
        }
        var tables: [TableSchema] = []
        for entry in tableEntries {
            guard !tables.contains(where: { $0.name == entry.name }) else {
                throw ConfigError(.invalid, "Table \(entry.name) is listed twice.")
            }
            tables.append(try introspect(entry))
        }
        var policies: [String: TablePolicy] = [:]
        for (entry, table) in zip(tableEntries, tables) {
            policies[table.name] = try policy(of: entry, table: table, opds: opdIDs)
        }
        let foreignKeys = try foreignKeys(of: tableEntries, tables: tables)
        var tableRules: [String: TableRules] = [:]
        for (entry, table) in zip(tableEntries, tables) {
            tableRules[table.name] = try rules(of: entry, table: table)
        }
        var limits = Limits()
        if let l = file.limits {
            if let v = l.maxBodyBytes { limits.maxBodyBytes = v }
            if let v = l.maxUncompressedBytes { limits.maxUncompressedBytes = v }
            if let v = l.maxCompressionRatio { limits.maxCompressionRatio = v }
            if let v = l.maxRows { limits.maxRows = v }
            if let v = l.maxPullPage { limits.maxPullPage = v }
            if let v = l.maxChunkBytes {
                guard v >= 1024 else {
                    throw ConfigError(
                        .invalid, "limits.max_chunk_bytes is \(v); give at least 1024 (1048576 is the default).")
                }
                limits.maxChunkBytes = v
            }
            if let v = l.uploadExpirySeconds {
                guard v >= 1 else {
                    throw ConfigError(
                        .invalid,
                        "limits.upload_expiry_seconds is \(v); give a number of seconds of at least 1 (86400 is the default)."
                    )
                }
                limits.uploadExpirySeconds = v
            }
            if let v = l.requestsPerMinute { limits.requestsPerMinute = v }
            if let v = l.requestTimeoutSeconds { limits.requestTimeoutSeconds = v }
            if let v = l.loginFailures { limits.loginFailures = v }
            if let v = l.loginWindowSeconds { limits.loginWindowSeconds = v }
            if let v = l.sessionMinutes { limits.sessionMinutes = v }
            if let v = l.maxPartialUploadsPerToken { limits.maxPartialUploadsPerToken = v }
            if let v = l.maxPartialUploads { limits.maxPartialUploads = v }
            if let v = l.refusedPerMinute { limits.refusedPerMinute = v }
            if let v = l.maxValueBytes { limits.maxValueBytes = v }
            if let v = l.maxRowBytes { limits.maxRowBytes = v }
            if let v = l.maxPullPageBytes { limits.maxPullPageBytes = v }
        }
        try limits.checkRowsFitPages(of: tables)
        for (name, value) in [
            ("requests_per_minute", limits.requestsPerMinute),
            ("request_timeout_seconds", limits.requestTimeoutSeconds),
            ("login_failures", limits.loginFailures), ("login_window_seconds", limits.loginWindowSeconds),
            ("session_minutes", limits.sessionMinutes),
            ("max_partial_uploads_per_token", limits.maxPartialUploadsPerToken),
            ("max_partial_uploads", limits.maxPartialUploads), ("refused_per_minute", limits.refusedPerMinute),
        ] where value < 1 {
            throw ConfigError(.invalid, "limits.\(name) is \(value); give a number of at least 1.")
        }
        let maxAhead = file.clock?.maxAheadSeconds ?? 300
        guard (0...86_400).contains(maxAhead) else {
            throw ConfigError(
                .invalid,
                "clock.max_ahead_seconds is \(maxAhead); give a number of seconds from 0 to 86400 (300 is the default)."
            )
        }
        let skew = ClockSkewPolicy(maxAheadMilliseconds: UInt64(maxAhead) * 1000)
        var config = ServerConfig(
            name: file.name ?? "KotaSync", opds: file.opds ?? [], tables: tables, limits: limits, clockSkew: skew,
            seedFile: file.seed.map { URL(fileURLWithPath: $0, relativeTo: baseURL).standardizedFileURL },
            policies: policies, foreignKeys: foreignKeys,
            rules: SyncRules(tables: tableRules, opds: file.opds ?? []))
        config.trustedProxies = file.trustedProxies ?? []
        config.defaults = try Self.defaults(of: tableEntries, tables: tables)
        try config.loadVersions(file, entries: tableEntries)
        config.master = try file.master.map { text throws(ConfigError) in
            try MasterLocation(parsing: text, relativeTo: baseURL)
        }
        return config
    }

    /// `schema_version`, `min_client_schema` and `migrations`, checked, and every version's tables.
    private mutating func loadVersions(_ file: ConfigFile, entries: [ConfigFile.Table]) throws(ConfigError) {
        let newest = file.schemaVersion ?? 1
        guard (1...1_000_000).contains(newest) else {
            throw ConfigError(.invalidMigration, "schema_version is \(newest); give a version from 1 to 1000000.")
        }
        let oldest = file.minClientSchema ?? 1
        guard (1...newest).contains(oldest) else {
            throw ConfigError(
                .invalidMigration,
                "min_client_schema is \(oldest); give a version from 1 to schema_version (\(newest)).")
        }
        let declared = file.migrations ?? []
        guard declared.map(\.version) == Array(2..<(newest + 1)) else {
            throw ConfigError(
                .invalidMigration,
                "migrations list versions \(declared.map { String($0.version) }.joined(separator: ", ")); schema_version \(newest) needs one migration for each version from 2 to \(newest), in order."
            )
        }
        var migrations: [SchemaMigration] = []
        for migration in declared {
            guard let steps = migration.steps, !steps.isEmpty else {
                throw ConfigError(.invalidMigration, "The migration to version \(migration.version) has no steps.")
            }
            migrations.append(
                SchemaMigration(
                    version: migration.version,
                    steps: try steps.map { step throws(ConfigError) in try step.parsed(version: migration.version) }))
        }
        schemaVersion = newest
        minClientSchema = oldest
        self.migrations = migrations
        schemas = try SchemaVersions.derive(ddl: entries.map { ($0.name, $0.ddl) }, migrations: &migrations)
        self.migrations = migrations
    }

    /// A table's `sync` entry, checked.
    private static func rules(of entry: ConfigFile.Table, table: TableSchema) throws(ConfigError) -> TableRules {
        guard let sync = entry.sync else { return TableRules() }
        var rules = TableRules()
        if let scope = sync.scope, scope != "all" {
            guard
                table.primaryKey.contains(where: { $0.name == scope })
                    || table.columns.contains(where: { $0.name == scope })
            else {
                throw ConfigError(
                    .invalid, "Table \(entry.name): sync.scope names \(scope), which is not a column of the table.")
            }
            rules.scope = scope
        }
        if let direction = sync.direction {
            guard let parsed = SyncDirection(rawValue: direction) else {
                throw ConfigError(
                    .invalid, "Table \(entry.name): sync.direction is \(direction); use both, down or up.")
            }
            rules.direction = parsed
        }
        for name in sync.hidden ?? [] {
            guard table.columns.contains(where: { $0.name == name }), name != rules.scope else {
                throw ConfigError(
                    .invalid,
                    "Table \(entry.name): sync.hidden names \(name), which is not a non-key column other than the scope column."
                )
            }
            rules.hidden.append(name)
        }
        return rules
    }

    /// A table's `policy`, `columns` and `delete` entries, checked.
    private static func policy(of entry: ConfigFile.Table, table: TableSchema, opds: Set<String>) throws(ConfigError)
        -> TablePolicy
    {
        func parse(_ text: String, _ place: String) throws(ConfigError) -> ColumnPolicy {
            guard let rule = ColumnPolicy(parsing: text) else {
                throw ConfigError(
                    .invalid,
                    "\(place): unknown conflict policy \"\(text)\"; use lww, server-wins, authority:<opd>, manual or additive."
                )
            }
            if case .authority(let opd) = rule, !opds.contains(opd) {
                throw ConfigError(.invalid, "\(place): authority names OPD \(opd), which is not in the opds list.")
            }
            return rule
        }
        let tableRule =
            try entry.policy.map { text throws(ConfigError) in try parse(text, "Table \(entry.name)") } ?? .lww
        var columns = Array(repeating: tableRule, count: table.columns.count)
        for (name, text) in (entry.columns ?? [:]).sorted(by: { $0.key < $1.key }) {
            guard let c = table.columns.firstIndex(where: { $0.name == name }) else {
                throw ConfigError(
                    .invalid,
                    "Table \(entry.name): `columns` names \(name), which is not a non-key column of the table.")
            }
            columns[c] = try parse(text, "Table \(entry.name), column \(name)")
        }
        for (c, rule) in columns.enumerated() where rule == .additive {
            guard [.integer, .real, .numeric].contains(table.columns[c].affinity) else {
                throw ConfigError(
                    .invalid,
                    "Table \(entry.name), column \(table.columns[c].name): additive needs a numeric column (INTEGER, REAL or NUMERIC)."
                )
            }
        }
        var delete = DeletePolicy.updateWins
        if let text = entry.delete {
            guard let parsed = DeletePolicy(rawValue: text) else {
                throw ConfigError(
                    .invalid,
                    "Table \(entry.name): unknown delete policy \"\(text)\"; use update-wins, delete-wins or manual.")
            }
            delete = parsed
        }
        return TablePolicy(columns: columns, delete: delete)
    }

    /// The foreign keys each table's DDL declares, among replicated tables.
    private static func foreignKeys(of entries: [ConfigFile.Table], tables: [TableSchema]) throws(ConfigError)
        -> [String: [ForeignKey]]
    {
        var out: [String: [ForeignKey]] = [:]
        do {
            let scratch = try DatabaseQueue()
            try scratch.write { db in
                for entry in entries { try db.execute(sql: entry.ddl) }
                for table in tables {
                    var byID: [Int: ForeignKey] = [:]
                    for row in try Row.fetchAll(db, sql: "PRAGMA foreign_key_list(\(SQL.quote(table.name)))") {
                        let id: Int = row["id"]
                        let parent: String = row["table"]
                        var fk = byID[id] ?? ForeignKey(columns: [], parentTable: parent, parentColumns: [])
                        fk.columns.append(row["from"])
                        if let to: String = row["to"] { fk.parentColumns.append(to) }
                        byID[id] = fk
                    }
                    out[table.name] = byID.keys.sorted().map { byID[$0]! }
                }
            }
        } catch {
            throw ConfigError(.invalidDDL, "The tables' DDL does not run together: \(error)")
        }
        for (name, keys) in out {
            for fk in keys {
                guard let parent = tables.first(where: { $0.name == fk.parentTable }) else {
                    throw ConfigError(
                        .invalid,
                        "Table \(name) refers to \(fk.parentTable), which is not replicated; list it in `tables` too.")
                }
                let parentColumns = fk.parentColumns.isEmpty ? parent.primaryKey.map(\.name) : fk.parentColumns
                guard parentColumns.count == fk.columns.count,
                    parentColumns == parent.primaryKey.map(\.name)
                else {
                    throw ConfigError(
                        .invalid,
                        "Table \(name) refers to \(fk.parentTable)(\(parentColumns.joined(separator: ", "))); only references to a table's primary key are supported."
                    )
                }
            }
        }
        return out.mapValues { keys in
            keys.map { fk in
                var fk = fk
                if fk.parentColumns.isEmpty {
                    fk.parentColumns = tables.first { $0.name == fk.parentTable }!.primaryKey.map(\.name)
                }
                return fk
            }
        }
    }

    /// The constant defaults of each table's non-key columns, as SQLite reads its DDL.
    private static func defaults(of entries: [ConfigFile.Table], tables: [TableSchema]) throws(ConfigError)
        -> [String: [SQLValue]]
    {
        let literal = #/^\(?\s*([-+]?[0-9][0-9.eE+-]*|'(?:[^']|'')*'|[xX]'[0-9a-fA-F]*'|NULL|TRUE|FALSE)\s*\)?$/#
            .ignoresCase()
        do {
            let scratch = try DatabaseQueue()
            return try scratch.write { db in
                for entry in entries { try db.execute(sql: entry.ddl) }
                var out: [String: [SQLValue]] = [:]
                for table in tables {
                    var byName: [String: SQLValue] = [:]
                    for row in try Row.fetchAll(db, sql: "PRAGMA table_xinfo(\(SQL.quote(table.name)))") {
                        guard let expression: String = row["dflt_value"], expression.wholeMatch(of: literal) != nil
                        else { continue }
                        byName[row["name"]] = SQLValue(
                            try DatabaseValue.fetchOne(db, sql: "SELECT \(expression)") ?? .null)
                    }
                    out[table.name] = table.columns.map { byName[$0.name] ?? .null }
                }
                return out
            }
        } catch {
            throw ConfigError(.invalidDDL, "The tables' DDL does not run together: \(error)")
        }
    }

    /// Runs a table's DDL in a scratch database and reads the columns back, so the config is
    /// judged by what SQLite makes of it rather than by parsing SQL here.
    private static func introspect(_ entry: ConfigFile.Table) throws(ConfigError) -> TableSchema {
        let described: (primaryKey: [ColumnSchema], columns: [ColumnSchema])?
        do {
            let scratch = try DatabaseQueue()
            described = try scratch.write { db in
                try db.execute(sql: entry.ddl)
                return try SchemaIntrospection.describe(db, table: entry.name)
            }
        } catch {
            throw ConfigError(.invalidDDL, "Table \(entry.name): its DDL does not run: \(error)")
        }
        guard let (key, columns) = described else {
            throw ConfigError(.invalidDDL, "Table \(entry.name): its DDL does not create a table named \(entry.name).")
        }
        guard !key.isEmpty else {
            throw ConfigError(
                .unsafePrimaryKey,
                "Table \(entry.name) has no PRIMARY KEY. Give it a text key that is unique across OPDs (a UUID or ULID), or a composite key that includes the OPD."
            )
        }
        if key.count == 1, key[0].affinity == .integer {
            throw ConfigError(
                .unsafePrimaryKey,
                "Table \(entry.name) is keyed by a bare integer (\(key[0].name)); two OPDs working offline will both create row 1. Use a TEXT key filled with a UUID or ULID, or a composite key that includes the OPD, e.g. PRIMARY KEY (opd_id, local_id)."
            )
        }
        guard key.count <= maxKeyColumns else {
            throw ConfigError(
                .invalid, "Table \(entry.name) has \(key.count) key columns; at most \(maxKeyColumns) are supported.")
        }
        guard columns.count <= maxColumns else {
            throw ConfigError(
                .invalid,
                "Table \(entry.name) has \(columns.count) non-key columns; at most \(maxColumns) are supported.")
        }
        return TableSchema(name: entry.name, ddl: entry.ddl, primaryKey: key, columns: columns)
    }

    /// The table called `name`, if it replicates.
    public func table(named name: String) -> TableSchema? { tables.first { $0.name == name } }
}

/// The YAML file's shape.
private struct ConfigFile: Decodable {
    struct Table: Decodable {
        var name: String
        var ddl: String
        var policy: String?
        var columns: [String: String]?
        var delete: String?
        var sync: SyncEntry?
    }

    struct SyncEntry: Decodable {
        var scope: String?
        var direction: String?
        var hidden: [String]?
    }

    struct LimitsEntry: Decodable {
        var maxBodyBytes: Int?
        var maxUncompressedBytes: Int?
        var maxCompressionRatio: Int?
        var maxRows: Int?
        var maxPullPage: Int?
        var requestsPerMinute: Int?
        var requestTimeoutSeconds: Int?
        var loginFailures: Int?
        var loginWindowSeconds: Int?
        var sessionMinutes: Int?
        var maxChunkBytes: Int?
        var uploadExpirySeconds: Int?
        var maxPartialUploadsPerToken: Int?
        var maxPartialUploads: Int?
        var refusedPerMinute: Int?
        var maxValueBytes: Int?
        var maxRowBytes: Int?
        var maxPullPageBytes: Int?

        enum CodingKeys: String, CodingKey {
            case requestsPerMinute = "requests_per_minute"
            case requestTimeoutSeconds = "request_timeout_seconds"
            case loginFailures = "login_failures"
            case loginWindowSeconds = "login_window_seconds"
            case sessionMinutes = "session_minutes"
            case maxBodyBytes = "max_body_bytes"
            case maxUncompressedBytes = "max_uncompressed_bytes"
            case maxCompressionRatio = "max_compression_ratio"
            case maxRows = "max_rows"
            case maxPullPage = "max_pull_page"
            case maxChunkBytes = "max_chunk_bytes"
            case uploadExpirySeconds = "upload_expiry_seconds"
            case maxPartialUploadsPerToken = "max_partial_uploads_per_token"
            case maxPartialUploads = "max_partial_uploads"
            case refusedPerMinute = "refused_per_minute"
            case maxValueBytes = "max_value_bytes"
            case maxRowBytes = "max_row_bytes"
            case maxPullPageBytes = "max_pull_page_bytes"
        }
    }

    struct ClockEntry: Decodable {
        var maxAheadSeconds: Int?
        enum CodingKeys: String, CodingKey { case maxAheadSeconds = "max_ahead_seconds" }
    }

    /// One step of a migration: exactly one of its keys, with the fields that step takes.
    struct StepEntry: Decodable {
        struct Fields: Decodable {
            var table: String?
            var column: String?
            var from: String?
            var to: String?
            var index: String?
            var definition: String?
            var ddl: String?
        }

        var addTable: Fields?
        var dropTable: Fields?
        var renameTable: Fields?
        var addColumn: Fields?
        var dropColumn: Fields?
        var renameColumn: Fields?
        var addIndex: Fields?
        var dropIndex: Fields?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case addTable = "add_table"
            case dropTable = "drop_table"
            case renameTable = "rename_table"
            case addColumn = "add_column"
            case dropColumn = "drop_column"
            case renameColumn = "rename_column"
            case addIndex = "add_index"
            case dropIndex = "drop_index"
        }

        func parsed(version: Int) throws(ConfigError) -> MigrationStep {
            let given: [(CodingKeys, Fields)] = [
                (.addTable, addTable), (.dropTable, dropTable), (.renameTable, renameTable), (.addColumn, addColumn),
                (.dropColumn, dropColumn), (.renameColumn, renameColumn), (.addIndex, addIndex),
                (.dropIndex, dropIndex),
            ].compactMap { key, fields in fields.map { (key, $0) } }
            let kinds = CodingKeys.allCases.map(\.rawValue).joined(separator: ", ")
            guard given.count == 1, let (kind, f) = given.first else {
                throw ConfigError(
                    .invalidMigration,
                    "A step of the migration to version \(version) must be exactly one of \(kinds); any other change of the tables is not a migration KotaSync can translate for replicas."
                )
            }
            func need(_ value: String?, _ field: String) throws(ConfigError) -> String {
                guard let value, !value.isEmpty else {
                    throw ConfigError(
                        .invalidMigration,
                        "A \(kind.rawValue) step of the migration to version \(version) needs `\(field)`.")
                }
                return value
            }
            switch kind {
            case .addTable: return .addTable(try need(f.table, "table"))
            case .dropTable: return .dropTable(try need(f.table, "table"), ddl: try need(f.ddl, "ddl"))
            case .renameTable: return .renameTable(from: try need(f.from, "from"), to: try need(f.to, "to"))
            case .addColumn: return .addColumn(table: try need(f.table, "table"), column: try need(f.column, "column"))
            case .dropColumn:
                return .dropColumn(
                    table: try need(f.table, "table"), column: try need(f.column, "column"),
                    definition: try need(f.definition, "definition"))
            case .renameColumn:
                return .renameColumn(
                    table: try need(f.table, "table"), from: try need(f.from, "from"), to: try need(f.to, "to"))
            case .addIndex: return .addIndex(table: try need(f.table, "table"), index: try need(f.index, "index"))
            case .dropIndex:
                return .dropIndex(
                    table: try need(f.table, "table"), index: try need(f.index, "index"), ddl: try need(f.ddl, "ddl"))
            }
        }
    }

    struct MigrationEntry: Decodable {
        var version: Int
        var steps: [StepEntry]?
    }

    var name: String?
    var opds: [ServerConfig.OPD]?
    var tables: [Table]?
    var schemaVersion: Int?
    var minClientSchema: Int?
    var migrations: [MigrationEntry]?
    var limits: LimitsEntry?
    var clock: ClockEntry?
    var seed: String?
    var trustedProxies: [String]?
    var master: String?

    enum CodingKeys: String, CodingKey {
        case name, opds, tables, limits, clock, seed, master, migrations
        case trustedProxies = "trusted_proxies"
        case schemaVersion = "schema_version"
        case minClientSchema = "min_client_schema"
    }
}
