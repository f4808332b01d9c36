import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite

/// An OPD's local SQLite replica: the replicated tables, their change log, and the sync state.
///
/// The file stays an ordinary SQLite database that the OPD's own app keeps using; KotaSync adds
/// tables whose names start with `_ks_` and capture triggers. Open one `Replica` per file for
/// the lifetime of the process.
public final class Replica: Sendable {
    let dbQueue: DatabaseQueue
    /// The database file.
    public let path: String
    /// The replica's id, made at `init`.
    public let id: UUID
    /// The tables, as the server published them at `init`.
    public let schema: SchemaDocument
    /// The server this replica syncs with.
    public let serverURL: URL
    let tables: [String: TableSchema]
    let statements: [String: TableSQL]
    /// Each table's place in a push (``ChangeLog/pushRanks(tables:parents:)``).
    let pushRanks: [String: Int]

    static func openQueue(_ path: String) throws -> DatabaseQueue {
        var configuration = Configuration()
        // Pulled pages may hold a child row before its parent; constraints are the master's job.
        configuration.foreignKeysEnabled = false
        configuration.busyMode = .timeout(10)
        // This connection's own commits need not wait for the disk: a power cut that takes back
        // an acknowledgement or a pulled page is repaired by the protocol (the outbox is resent
        // and answered from the server's stored reply; the page is pulled again). The outbox
        // itself is the exception and is written with FULL (`nextOutbound`). The OPD's own
        // writes, and the log entries their triggers add, keep their app's setting.
        configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = NORMAL") }
        return try DatabaseQueue(path: path, configuration: configuration)
    }

    /// Opens an initialised replica.
    public init(path: String) throws {
        guard FileManager.default.fileExists(atPath: path) else {
            throw ReplicaError(.notInitialized, "No database at \(path). Create the replica with `kotasync init`.")
        }
        let queue = try Self.openQueue(path)
        let state = try queue.read { db -> [String: DatabaseValue]? in
            guard try db.tableExists("_ks_state") else { return nil }
            return try Dictionary(
                uniqueKeysWithValues: Row.fetchAll(db, sql: "SELECT key, value FROM _ks_state").map {
                    ($0["key"] as String, $0["value"] as DatabaseValue)
                })
        }
        guard let state, let idText = String.fromDatabaseValue(state[StateKey.replicaID] ?? .null),
            let id = UUID(uuidString: idText),
            let schemaText = String.fromDatabaseValue(state[StateKey.schema] ?? .null),
            let urlText = String.fromDatabaseValue(state[StateKey.serverURL] ?? .null), let url = URL(string: urlText)
        else {
            throw ReplicaError(
                .notInitialized, "\(path) is not a KotaSync replica yet. Run `kotasync init --db \(path) ...` first.")
        }
        let schema = try ProtocolJSON.decoder().decode(SchemaDocument.self, from: Data(schemaText.utf8))
        self.dbQueue = queue
        self.path = path
        self.id = id
        self.schema = schema
        self.serverURL = url
        self.tables = Dictionary(uniqueKeysWithValues: schema.tables.map { ($0.name, $0) })
        self.statements = Dictionary(uniqueKeysWithValues: schema.tables.map { ($0.name, TableSQL($0)) })
        self.pushRanks = ChangeLog.pushRanks(tables: schema.tables.map(\.name), parents: Self.referencedTables(schema))
    }

    /// The tables each table's foreign keys refer to, read from the published DDL (the server
    /// holds a child whose parent it lacks by those references, whatever this file's own tables
    /// declare). Empty if the DDL cannot be read back, which only costs the push its parent-first
    /// order.
    static func referencedTables(_ schema: SchemaDocument) -> [String: [String]] {
        (try? DatabaseQueue().write { db in
            for table in schema.tables { try db.execute(sql: table.ddl) }
            var parents: [String: [String]] = [:]
            for table in schema.tables {
                parents[table.name] = try db.foreignKeys(on: table.name).map(\.destinationTable)
            }
            return parents
        }) ?? [:]
    }

    /// Makes `path` a replica of the server's `schema`: creates the tables it lacks (or adopts
    /// matching tables that exist, logging their rows as local inserts), installs capture, and
    /// records the server and token. Returns the number of adopted rows.
    @discardableResult
    public static func create(at path: String, schema: SchemaDocument, serverURL: URL, token: String) throws -> Int {
        let queue = try openQueue(path)
        try queue.writeWithoutTransaction { db in
            // A new file: WAL lets the OPD's app read while a sync writes. An existing file keeps
            // the journal mode its app chose.
            if try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_master") == 0 {
                try db.execute(sql: "PRAGMA journal_mode = WAL")
            }
        }
        return try queue.write { db in
            if try db.tableExists("_ks_state"),
                try String.fetchOne(
                    db, sql: "SELECT value FROM _ks_state WHERE key = ?", arguments: [StateKey.replicaID])
                    != nil
            {
                throw ReplicaError(
                    .alreadyInitialized,
                    "\(path) is already a KotaSync replica. Use `kotasync sync`; to start over, move the file away first."
                )
            }
            for statement in ChangeLog.tableStatements { try db.execute(sql: statement) }
            var adopted = 0
            for table in schema.tables {
                if let existing = try SchemaIntrospection.describe(db, table: table.name) {
                    try checkAdoptable(existing, as: table)
                    let keys = table.primaryKey.map { SQL.quote($0.name) }.joined(separator: ", ")
                    let slots = (0..<table.primaryKey.count).map { "k\($0)" }.joined(separator: ", ")
                    try db.execute(
                        sql: """
                            INSERT INTO _ks_log (tbl, op, mask, at, \(slots))
                            SELECT ?, 1, 0, \(ChangeLog.nowSQL), \(keys) FROM \(SQL.quote(table.name))
                            """, arguments: [table.name])
                    adopted += db.changesCount
                } else {
                    try db.execute(sql: table.ddl)
                }
                for trigger in ChangeLog.triggerStatements(for: table) { try db.execute(sql: trigger) }
            }
            let schemaJSON = String(decoding: try ProtocolJSON.encoder().encode(schema), as: UTF8.self)
            let state: [(String, DatabaseValueConvertible)] = [
                (StateKey.replicaID, UUID().uuidString), (StateKey.serverURL, serverURL.absoluteString),
                (StateKey.token, token), (StateKey.schema, schemaJSON), (StateKey.cursor, 0), (StateKey.clock, 0),
                (StateKey.opd, schema.opd), (StateKey.createdAt, Date().iso8601),
            ]
            for (key, value) in state {
                try db.execute(
                    sql: "INSERT OR REPLACE INTO _ks_state(key, value) VALUES (?, ?)", arguments: [key, value])
            }
            return adopted
        }
    }

    /// Refuses an existing table that would not hold the server's rows faithfully: a different
    /// key, or a replicated column missing or of another type affinity.
    private static func checkAdoptable(
        _ existing: (primaryKey: [ColumnSchema], columns: [ColumnSchema]), as table: TableSchema
    ) throws {
        func describe(_ columns: [ColumnSchema]) -> String {
            columns.map { "\($0.name) \($0.declaredType)" }.joined(separator: ", ")
        }
        guard existing.primaryKey.map(\.name) == table.primaryKey.map(\.name),
            existing.primaryKey.map(\.affinity) == table.primaryKey.map(\.affinity)
        else {
            throw ReplicaError(
                .schemaMismatch,
                "Table \(table.name) exists but is keyed by (\(describe(existing.primaryKey))); the server keys it by (\(describe(table.primaryKey))). Move the table aside or migrate it first."
            )
        }
        for column in table.columns {
            guard let local = existing.columns.first(where: { $0.name == column.name }) else {
                throw ReplicaError(
                    .schemaMismatch,
                    "Table \(table.name) exists but lacks column \(column.name) (\(column.declaredType)), which the server replicates. Add it with ALTER TABLE ... ADD COLUMN and run init again."
                )
            }
            guard local.affinity == column.affinity else {
                throw ReplicaError(
                    .schemaMismatch,
                    "Column \(table.name).\(column.name) is declared \(local.declaredType) here but \(column.declaredType) on the server; values would change type. Migrate the column first."
                )
            }
        }
    }

    /// The device token stored at `init`.
    public func token() throws -> String {
        try dbQueue.read { db in try Self.state(db, StateKey.token) ?? "" }
    }

    static func state<T: DatabaseValueConvertible>(_ db: Database, _ key: String) throws -> T? {
        try T.fetchOne(db, sql: "SELECT value FROM _ks_state WHERE key = ?", arguments: [key])
    }

    static func setState(_ db: Database, _ key: String, _ value: (any DatabaseValueConvertible)?) throws {
        try db.execute(sql: "INSERT OR REPLACE INTO _ks_state(key, value) VALUES (?, ?)", arguments: [key, value])
    }

    /// Records the outcome of a sync attempt for `status`.
    public func recordError(_ error: ReplicaError?) throws {
        try dbQueue.write { db in
            if let error {
                let body = ErrorRecord(
                    code: error.server?.code.rawValue ?? error.code.rawValue, message: error.message, at: Date().iso8601
                )
                try Self.setState(
                    db, StateKey.lastError, String(decoding: try JSONEncoder().encode(body), as: UTF8.self))
            } else {
                try Self.setState(db, StateKey.lastError, nil)
                try Self.setState(db, StateKey.lastSyncAt, Date().iso8601)
            }
        }
    }
}

/// Keys of `_ks_state`.
enum StateKey {
    static let replicaID = "replica_id"
    static let serverURL = "server_url"
    static let token = "token"
    static let schema = "schema"
    static let opd = "opd"
    static let cursor = "cursor"
    static let clock = "clock"
    static let createdAt = "created_at"
    static let lastPushAt = "last_push_at"
    static let lastPullAt = "last_pull_at"
    static let lastSyncAt = "last_sync_at"
    static let lastError = "last_error"
    static let conflictsAfter = "conflicts_after"
}

/// The last failed sync attempt, as `status` shows it.
public struct ErrorRecord: Codable, Sendable, Equatable {
    public var code: String
    public var message: String
    public var at: String
}

extension Date {
    /// The date as `2026-11-29T08:15:00Z`. A format style, not a new `ISO8601DateFormatter` each
    /// time: every applied page stores its time, and creating the formatter (an ICU date format)
    /// was a tenth of the apply's time in `perf`. Same text as the formatter's default.
    var iso8601: String { formatted(Self.iso8601Style) }

    private static let iso8601Style = Date.ISO8601FormatStyle()
}
