import Crypto
import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite
import Logging
import Synchronization

/// The master database in one SQLite file: the embedded backend of ``MasterStore``.
///
/// Opens one `DatabasePool` (WAL) for the process lifetime: merges are serialised on its writer,
/// pulls read concurrent snapshots. Every connection runs `synchronous = FULL`, so a push's
/// commit is on disk before its reply is sent.
public final class SQLiteMasterStore: MasterStore {
    let pool: DatabasePool
    /// The configuration the store was opened with.
    public let config: ServerConfig
    let logger: Logger
    /// Replica numbers to their ids, for tie-breaks in merge decisions; grows as replicas appear.
    let writers = Mutex<[Int64: Writer]>([0: .master])
    /// Per-table positions in ``ServerConfig/tables``.
    let tableIndex: [String: Int]
    /// Per-table statements.
    let statements: [String: TableSQL]
    /// Per table, the columns of each UNIQUE index other than the primary key (for quarantine).
    let uniqueIndexes: [String: [[String]]]
    /// Pushes waiting for the next group commit.
    let commits = Mutex(CommitState())
    /// Audit entries and token uses waiting for their batched write (`SQLiteMasterStore+Audit`).
    let auditBuffer = Mutex(AuditBuffer())

    /// Opens (creating if needed) the master database at `path` for `config`.
    ///
    /// A new database gets the configured tables, the config's seed file if any, and merge
    /// metadata for every seeded row. An existing one is checked against the config.
    public init(path: String, config: ServerConfig, logger: Logger = SQLiteMasterStore.quietLogger) throws {
        var configuration = Configuration()
        configuration.foreignKeysEnabled = false
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
            // The writer's page cache holds a push's changed pages (they are spread over several
            // tables and UUID-keyed indexes); at SQLite's default 2 MB they spilled to the WAL in
            // the middle of each merge (28 % of its time). Readers keep the default: memory.
            if !db.configuration.readonly { try db.execute(sql: "PRAGMA cache_size = -32768") }
        }
        pool = try DatabasePool(path: path, configuration: configuration)
        self.config = config
        self.logger = logger
        tableIndex = Dictionary(uniqueKeysWithValues: config.tables.enumerated().map { ($1.name, $0) })
        statements = Dictionary(uniqueKeysWithValues: config.tables.map { ($0.name, TableSQL($0)) })
        uniqueIndexes = try pool.write { db in
            try MasterSchema.create(db)
            try Self.migrate(db, config: config)
            let fresh = try Self.prepareTables(db, config: config)
            try Self.applyRules(db, config: config, fresh: fresh)
            return try Dictionary(
                uniqueKeysWithValues: config.tables.map {
                    ($0.name, try SchemaIntrospection.uniqueIndexes(db, table: $0.name))
                })
        }
        let known = try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT number, uuid FROM _ks_replicas")
        }
        writers.withLock { map in
            for row in known {
                let data: Data = row["uuid"]
                map[row["number"]] = Writer(number: row["number"], id: UUID(bytes: [UInt8](data)))
            }
        }
    }

    /// Brings the master to the config's schema version (``MasterMigration`` decides): checks its
    /// tables against the config's at the master's version, carries out each step, records it in
    /// `_ks_migrations`, and stores the new version, in the transaction that opens the master.
    private static func migrate(_ db: Database, config: ServerConfig) throws {
        let created = try String.fetchOne(db, sql: "SELECT value FROM _ks_server WHERE key = 'created_at'") != nil
        let recorded = try String.fetchOne(db, sql: "SELECT value FROM _ks_server WHERE key = 'schema_version'")
            .flatMap { Int($0) }
        let migration = try MasterMigration(recorded: recorded, created: created, config: config)
        if !migration.steps.isEmpty {
            for table in migration.tablesBefore(config) {
                try check(db, table, version: migration.from)
            }
            let now = Timestamp.string(Date())
            for step in migration.steps {
                switch step.change {
                case .createTable(let table, let indexes):
                    if try !db.tableExists(table.name) {
                        try db.execute(sql: table.ddl)
                        for index in indexes { try db.execute(sql: index) }
                    }
                case .addColumn(let table, let column, let definition, _):
                    let existing = try SchemaIntrospection.describe(db, table: table)
                    if existing?.columns.contains(where: { $0.name == column.name }) != true {
                        try db.execute(sql: "ALTER TABLE \(SQL.quote(table)) ADD COLUMN \(definition)")
                    }
                case .createIndex(_, let name, let sql):
                    let exists = try Bool.fetchOne(
                        db, sql: "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'index' AND name = ?",
                        arguments: [name])
                    if exists != true { try db.execute(sql: sql) }
                case .dropIndex(_, let name, _):
                    try db.execute(sql: "DROP INDEX IF EXISTS \(SQL.quote(name))")
                case .untranslated:
                    break  // refused by MasterMigration
                }
                try db.execute(
                    sql: "INSERT INTO _ks_migrations(version, step, description, applied_at) VALUES (?, ?, ?, ?)",
                    arguments: [step.version, step.number, step.description, now])
            }
        }
        try db.execute(
            sql: "INSERT OR REPLACE INTO _ks_server(key, value) VALUES ('schema_version', ?)",
            arguments: [String(config.schemaVersion)])
    }

    /// Refuses a master table that does not have `table`'s key and columns (it may have more).
    private static func check(_ db: Database, _ table: TableSchema, version: Int) throws {
        guard let existing = try SchemaIntrospection.describe(db, table: table.name) else { return }
        if let refusal = MasterMigration.mismatch(
            table, key: existing.primaryKey.map(\.name), columns: existing.columns.map(\.name), version: version)
        {
            throw refusal
        }
    }

    /// Creates missing tables; on a new master, runs the seed. Returns whether the master is new.
    @discardableResult
    private static func prepareTables(_ db: Database, config: ServerConfig) throws -> Bool {
        let created = try String.fetchOne(db, sql: "SELECT value FROM _ks_server WHERE key = 'created_at'")
        for table in config.tables {
            if try db.tableExists(table.name) {
                try check(db, table, version: config.schemaVersion)
            } else {
                try db.execute(sql: table.ddl)
            }
        }
        guard created == nil else { return false }
        if let seed = config.seedFile {
            let sql: String
            do {
                sql = try String(contentsOf: seed, encoding: .utf8)
            } catch {
                throw ConfigError(.unreadable, "Cannot read the seed file \(seed.path): \(error.localizedDescription)")
            }
            try db.execute(sql: sql)
        }
        try adoptExistingRows(db, config: config)
        try db.execute(
            sql: "INSERT INTO _ks_server(key, value) VALUES ('created_at', ?)", arguments: [Timestamp.string(Date())])
        return true
    }

    /// Brings every row's scope in line with the config's sync rules (``RuleChange`` decides).
    private static func applyRules(_ db: Database, config: ServerConfig, fresh: Bool) throws {
        let change = RuleChange(
            config: config,
            stored: RuleChange.decodeRules(
                try String.fetchOne(db, sql: "SELECT value FROM _ks_server WHERE key = 'sync_rules'")),
            fresh: fresh)
        var version = try UInt64.fetchOne(db, sql: "SELECT max(version) FROM _ks_rows") ?? 0
        for table in change.changedTables {
            let sql = TableSQL(table)
            let rows = try Row.fetchAll(
                db, sql: "SELECT pk, deleted, scope, gone_for FROM _ks_rows WHERE tbl = ? ORDER BY version",
                arguments: [table.name])
            for row in rows {
                let pk: Data = row["pk"]
                let key = try PrimaryKeyCoding.decode([UInt8](pk))
                let deleted = (row["deleted"] as Int) != 0
                let update = change.update(
                    table: table, key: key, values: deleted ? nil : try sql.values(db, key: key),
                    scope: SQLValue(row["scope"] as DatabaseValue), goneFor: row["gone_for"])
                if update.bump { version += 1 }
                try db.execute(
                    sql:
                        "UPDATE _ks_rows SET scope = ?, gone_for = ?\(update.bump ? ", version = \(version)" : "") WHERE tbl = ? AND pk = ?",
                    arguments: [update.scope.databaseValue, update.goneFor, table.name, pk])
            }
        }
        try db.execute(
            sql: "INSERT OR REPLACE INTO _ks_server(key, value) VALUES ('sync_rules', ?)",
            arguments: [try change.encodedRules()])
    }

    /// Gives every row already in the replicated tables (seed data, or a master that existed
    /// before KotaSync) merge metadata, as written by the master itself, so replicas pull it.
    private static func adoptExistingRows(_ db: Database, config: ServerConfig) throws {
        var version = try UInt64.fetchOne(db, sql: "SELECT max(version) FROM _ks_rows") ?? 0
        let stamp = HLC(milliseconds: Timestamp.milliseconds(Date()), counter: 0)
        let insert = try db.makeStatement(
            sql: "INSERT OR IGNORE INTO _ks_rows(tbl, pk, version, deleted, clocks) VALUES (?, ?, ?, 0, ?)")
        for table in config.tables {
            let keys = table.primaryKey.map { SQL.quote($0.name) }.joined(separator: ", ")
            let rows = try Row.fetchCursor(db, sql: "SELECT \(keys) FROM \(SQL.quote(table.name))")
            while let row = try rows.next() {
                version += 1
                let pk = (0..<table.primaryKey.count).map { SQLValue(row[$0] as DatabaseValue) }
                let head = Head(writer: .master, version: version, stamp: stamp)
                let clocks = RowClocks(
                    version: version, columns: Array(repeating: head, count: table.columns.count), existence: [head])
                try insert.execute(arguments: [
                    table.name, Data(PrimaryKeyCoding.encode(pk)), Int64(version), Data(RowClocksCoding.encode(clocks)),
                ])
            }
        }
    }

    /// The logger a store gets when its owner passes none: warnings and errors only (the server
    /// passes its own, at the level `--log-level` asks for).
    public static let quietLogger: Logger = {
        var logger = Logger(label: "kotasync.master")
        logger.logLevel = .warning
        return logger
    }()

    /// Reads from a snapshot without ever blocking a Swift concurrency thread.
    ///
    /// GRDB's `async` read waits for a free reader connection on the calling thread and holds it
    /// across a suspension; with more concurrent requests than readers, every cooperative thread
    /// ends up waiting for a reader that needs one of them to be released: the server hangs.
    /// `asyncRead` queues for a reader instead.
    func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            pool.asyncRead { result in
                continuation.resume(with: Result { try body(result.get()) })
            }
        }
    }

    func writer(number: Int64) -> Writer {
        if let known = writers.withLock({ $0[number] }) { return known }
        // A replica registered by another process since this one started (`kotasync-server
        // import` while the server runs). Looked up, not cached: inside a merge the row may be an
        // uncommitted registration that rolls back (see `commitWaitingPushes`).
        let stored = try? pool.unsafeReentrantRead { db in
            try Data.fetchOne(db, sql: "SELECT uuid FROM _ks_replicas WHERE number = ?", arguments: [number])
        }
        guard let data = stored ?? nil else { return Writer(number: number, id: .zero) }
        return Writer(number: number, id: UUID(bytes: [UInt8](data)))
    }

    /// Uploads beside the master, in `MASTER.sqlite.uploads/`: they are not the city's data, and
    /// keeping them out of the database leaves its single writer (and its WAL and backups) to
    /// merges. Only the servers on this machine's disk see them, as only they see the master.
    public func partialUploads(limits: ServerConfig.Limits) throws -> any PartialUploads {
        try UploadStore(
            directory: URL(fileURLWithPath: pool.path + ".uploads"), maxChunkBytes: limits.maxChunkBytes,
            expirySeconds: limits.uploadExpirySeconds, maxPartialPerToken: limits.maxPartialUploadsPerToken,
            maxPartial: limits.maxPartialUploads)
    }

    // MARK: - Tokens

    public func createToken(opd: String, expiresAt: Date?) async throws -> IssuedToken {
        let opd = try CredentialChecks.checkedTokenOPD(opd, config: config)
        return try await insertToken(opd: opd, role: .device, name: nil, expiresAt: expiresAt)
    }

    public func createStaffToken(name: String, role: Device.Role, expiresAt: Date?) async throws -> IssuedToken {
        let name = try CredentialChecks.checkedStaffToken(name: name, role: role)
        // Staff belong to the Command Center, not to an OPD: the empty OPD matches no replica.
        return try await insertToken(opd: "", role: role, name: name, expiresAt: expiresAt)
    }

    func insertToken(opd: String, role: Device.Role, name: String?, expiresAt: Date?, user: String? = nil)
        async throws -> IssuedToken
    {
        let (id, token) = CredentialChecks.newToken()
        try await pool.write { db in
            try db.execute(
                sql: """
                    INSERT INTO _ks_tokens(id, opd, hash, created_at, expires_at, role, name, user_name)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    id, opd, CredentialChecks.tokenHash(token), Timestamp.string(Date()),
                    expiresAt.map(Timestamp.string), role.rawValue,
                    name, user,
                ])
        }
        return IssuedToken(id: id, opd: opd, token: token, expiresAt: expiresAt, role: role, name: name)
    }

    public func authenticate(token: String) async throws -> Device? {
        let hash = CredentialChecks.tokenHash(token)
        let device = try await read { db -> Device? in
            guard
                let row = try Row.fetchOne(
                    db,
                    sql:
                        "SELECT id, opd, expires_at, revoked_at, role, name, user_name FROM _ks_tokens WHERE hash = ?",
                    arguments: [hash]),
                row["revoked_at"] as String? == nil,
                // A role this build does not know grants nothing.
                let role = Device.Role(rawValue: row["role"])
            else { return nil }
            if let expires = (row["expires_at"] as String?).flatMap(Timestamp.date), expires <= Date() { return nil }
            var device = Device(tokenID: row["id"], opd: row["opd"], role: role, name: row["name"])
            device.session = row["user_name"] as String? != nil
            return device
        }
        if let device { noteTokenUse(device.tokenID) }
        return device
    }
}

/// A push waiting for its group commit.
struct PendingPush: Sendable {
    let validated: ValidatedChangeset
    let rows: PushRows
    let device: Device
    let continuation: CheckedContinuation<PushOutcome, any Error>
}

/// The group-commit queue: the pushes waiting, and whether a commit loop is running.
struct CommitState: Sendable {
    var waiting: [PendingPush] = []
    var committing = false
}

extension Data {
    var base64URLEncoded: String {
        base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}

/// Timestamps as the server stores and reports them: ISO 8601 in UTC with milliseconds.
package enum Timestamp {
    package static func string(_ date: Date) -> String {
        date.formatted(
            .iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
    }

    package static func date(_ string: String) -> Date? {
        try? Date(
            string,
            strategy: .iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted)
        )
    }

    package static func milliseconds(_ date: Date) -> UInt64 {
        UInt64(max(date.timeIntervalSince1970 * 1000, 0))
    }
}
