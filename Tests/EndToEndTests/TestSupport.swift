import Foundation
import GRDB
import Hummingbird
import KotaSyncClient
import KotaSyncCore
import KotaSyncSQLite
import KotaSyncServer
// The programs under test and how to run them, shared with the other test targets.
@_exported import KotaSyncTesting
import Logging
import PostgresNIO
import ServiceLifecycle
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif
#if canImport(Glibc)
    import Glibc
#else
    import Darwin
#endif

/// A fresh temporary directory, removed when the value is deinitialised... by the OS: tests keep
/// their files for inspection after a failure.
func makeTemporaryDirectory(_ name: String = #function) throws -> URL {
    let safe = name.filter { $0.isLetter || $0.isNumber }
    let url = FileManager.default.temporaryDirectory.appendingPathComponent(
        "kotasync-e2e-\(safe)-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Runs `body` with the port of `store`'s server, an `Application` on a free port in this
/// process (logging at `logLevel`), then shuts the server down gracefully, also when `body`
/// throws. `uploads` and `routes` are passed to ``SyncServer/application``.
func withInProcessServer(
    config: ServerConfig, store: any MasterStore, logLevel: Logger.Level,
    uploads: (any PartialUploads)? = nil, routes: (Router<ServerRequestContext>) -> Void = { _ in },
    _ body: (Int) async throws -> Void
) async throws {
    let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
    var logger = Logger(label: "test")
    logger.logLevel = logLevel
    let app = SyncServer.application(
        config: config, store: store, port: 0, logger: logger, uploads: uploads, routes: routes,
        onListening: { continuation.yield($0) })
    let group = ServiceGroup(services: [app], logger: logger)
    try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        var iterator = ports.makeAsyncIterator()
        let port = try #require(await iterator.next())
        do {
            try await body(port)
        } catch {
            await group.triggerGracefulShutdown()
            throw error
        }
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
    }
}

/// A `kotasync-server` process on a free port, stopped by ``stop()``.
final class ServerProcess: @unchecked Sendable {
    // Mutated only during init (before the object is shared) and in stop(); tests call stop() once.
    let process = Process()
    let url: URL
    let directory: URL
    let config: URL
    /// The SQLite master file (unused when the master is on PostgreSQL).
    let database: URL
    /// How the commands name this server's master: `--db FILE`, or `--master URL` with a
    /// password file.
    let masterArguments: [String]

    /// Starts the server on `config` with a master database in `directory` (or on the PostgreSQL
    /// master at `master`, with `password`), and waits until it prints the port it listens on.
    /// `errors` receives the server's standard error (its log) instead of the test's.
    init(
        config: URL, directory: URL, master: String? = nil, password: String? = nil, logLevel: String = "warning",
        errors: URL? = nil
    ) throws {
        self.directory = directory
        self.config = config
        self.database = directory.appendingPathComponent("master.sqlite")
        if let master {
            var arguments = ["--master", master]
            if let password {
                let file = directory.appendingPathComponent("master-password")
                try password.write(to: file, atomically: true, encoding: .utf8)
                arguments += ["--master-password-file", file.path]
            }
            masterArguments = arguments
        } else {
            masterArguments = ["--db", database.path]
        }
        process.executableURL = binDirectory.appendingPathComponent("kotasync-server")
        process.arguments =
            ["serve", "--config", config.path] + masterArguments + ["--port", "0", "--log-level", logLevel]
        let out = Pipe()
        process.standardOutput = out
        if let errors {
            _ = FileManager.default.createFile(atPath: errors.path, contents: nil)
            process.standardError = try FileHandle(forWritingTo: errors)
        } else {
            process.standardError = FileHandle.standardError
        }
        try process.run()
        var buffer = ""
        let handle = out.fileHandleForReading
        while !buffer.contains("\n") {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            buffer += String(decoding: chunk, as: UTF8.self)
        }
        guard let line = buffer.split(separator: "\n").first, let range = line.range(of: "http://") else {
            process.terminate()
            throw TestFailure("kotasync-server did not report its address; it printed: \(buffer)")
        }
        url = URL(string: String(line[range.lowerBound...]))!
    }

    /// A new device token for `opd`.
    func token(opd: String) throws -> String {
        let result = try run(
            "kotasync-server", ["token", "create", "--config", config.path, "--opd", opd] + masterArguments)
        guard result.status == 0 else { throw TestFailure("token create failed: \(result.stderr)") }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A new staff token (`viewer`, `reviewer` or `admin`) for `name`.
    func staffToken(_ name: String, role: String) throws -> String {
        let result = try admin(["token", "create", "--staff", name, "--role", role])
        guard result.status == 0 else { throw TestFailure("token create --staff failed: \(result.stderr)") }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Runs `kotasync-server` with `arguments` on this server's config and master database.
    func admin(_ arguments: [String], input: String? = nil) throws -> ProgramResult {
        try run("kotasync-server", arguments + ["--config", config.path] + masterArguments, input: input)
    }

    /// Stops the server with SIGTERM: a graceful stop, which writes the queued audit entries.
    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    deinit { stop() }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Copies the Binjai sample configuration (and its seed) into `directory`, optionally adding
/// tables, and returns the config's path.
///
/// With `scoped` false the tables' `sync` entries are left out, so every device sees every row:
/// the conflict stories need clinics that edit the same rows. The sample's rules as shipped are
/// tested with `scoped: true` (`ScopedSyncTests`).
func sampleConfig(in directory: URL, extraTables: String = "", scoped: Bool = false) throws -> URL {
    let sample = packageRoot.appendingPathComponent("samples/binjai")
    try FileManager.default.copyItem(
        at: sample.appendingPathComponent("seed.sql"), to: directory.appendingPathComponent("seed.sql"))
    var text = try String(contentsOf: sample.appendingPathComponent("kotasync.yaml"), encoding: .utf8)
    if !scoped {
        var lines: [Substring] = []
        var skipping = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line == "    sync:" {
                skipping = true
                continue
            }
            if skipping, line.hasPrefix("      ") { continue }
            skipping = false
            lines.append(line)
        }
        text = lines.joined(separator: "\n")
    }
    text += extraTables
    let url = directory.appendingPathComponent("kotasync.yaml")
    try text.write(to: url, atomically: true, encoding: .utf8)
    return url
}

/// Every row of every table named, as exact values (storage class and bits), in key order,
/// for comparing databases bit for bit.
func snapshot(_ path: String, tables: [String]) throws -> [String: [[SQLValue]]] {
    var configuration = Configuration()
    configuration.readonly = true
    let queue = try DatabaseQueue(path: path, configuration: configuration)
    return try queue.read { db in
        var out: [String: [[SQLValue]]] = [:]
        for table in tables {
            let rows = try Row.fetchAll(db, sql: "SELECT * FROM \"\(table)\"")
            out[table] = rows.map { row in row.databaseValues.map(SQLValue.init) }
                .sorted { $0.map(\.description).joined(separator: "|") < $1.map(\.description).joined(separator: "|") }
        }
        return out
    }
}

/// A raw HTTP request to the server.
func http(
    _ method: String, _ url: URL, token: String? = nil, body: [UInt8]? = nil,
    contentType: String = changesetMediaType
) async throws -> (status: Int, headers: [String: String], body: Data) {
    var request = URLRequest(url: url)
    request.httpMethod = method
    if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
    if let body {
        request.httpBody = Data(body)
        request.setValue(contentType, forHTTPHeaderField: "Content-Type")
    }
    let (data, response) = try await URLSession.shared.data(for: request)
    let http = response as! HTTPURLResponse
    var headers: [String: String] = [:]
    for (k, v) in http.allHeaderFields { headers["\(k)".lowercased()] = "\(v)" }
    return (http.statusCode, headers, data)
}

/// The secret part of a bearer token (`kst_<8 hex id>_<secret>`; the secret may hold `_` itself).
func secretPart(_ token: String) -> String {
    String(token.dropFirst("kst_00000000_".count))
}

/// The error code of an error response body, or nil if the body is not one.
func errorCode(_ body: Data) -> String? {
    (try? ProtocolJSON.decoder().decode(ErrorBody.self, from: body))?.error.code
}

/// `POST /v1/review/conflicts/{id}/resolve` with `request` as JSON.
func resolve(
    _ base: URL, id: Int64, _ request: ResolveRequest, token: String
) async throws -> (status: Int, headers: [String: String], body: Data) {
    try await http(
        "POST", base.appendingPathComponent("v1/review/conflicts/\(id)/resolve"), token: token,
        body: [UInt8](try ProtocolJSON.encoder().encode(request)), contentType: "application/json")
}

/// Concurrent edits by three OPDs' replicas, pushed through the client library: A
/// (pkm-binjai-kota) and B (pkm-kebun-lada) both change Siti's phone and name, A and C (bappeda)
/// both rename a village. That makes three conflict records: patients.phone and patients.name
/// between A and B, villages.name between A and C.
struct ConflictScenario {
    static let siti = "0b6f2a8e-4c1d-4e0a-9d3b-2f6c1a7e5b01"
    static let village = "1275020003"
    static let opds = ["pkm-binjai-kota", "pkm-kebun-lada", "bappeda"]

    var replicas: [Replica]
    var tokens: [String]

    static func make(url: URL, store: some MasterStore, dir: URL) async throws -> ConflictScenario {
        var replicas: [Replica] = []
        var tokens: [String] = []
        for (i, opd) in opds.enumerated() {
            let token = try await store.createToken(opd: opd, expiresAt: nil).token
            let (replica, _, _) = try await Synchronizer.initialize(
                path: dir.appendingPathComponent("replica\(i).sqlite").path, serverURL: url, token: token)
            replicas.append(replica)
            tokens.append(token)
        }
        let edits = [
            """
            UPDATE patients SET phone = '0811-1111', name = 'Siti A' WHERE id = '\(siti)';
            UPDATE villages SET name = 'Desa A' WHERE code = '\(village)';
            """,
            "UPDATE patients SET phone = '0822-2222', name = 'Siti B' WHERE id = '\(siti)'",
            "UPDATE villages SET name = 'Desa C' WHERE code = '\(village)'",
        ]
        // Every edit is made before any push, so none saw another.
        for (replica, sql) in zip(replicas, edits) {
            let queue = try DatabaseQueue(path: replica.path)
            try await queue.write { db in try db.execute(sql: sql) }
            try queue.close()
        }
        for replica in replicas { _ = try await Synchronizer(replica: replica).push() }
        return ConflictScenario(replicas: replicas, tokens: tokens)
    }
}

extension Process {
    /// SIGKILL, as a power cut or the OOM killer would; returns once the process has ended.
    func killAndWait() {
        guard isRunning else { return }
        #if canImport(Glibc)
            Glibc.kill(processIdentifier, SIGKILL)
        #else
            Darwin.kill(processIdentifier, SIGKILL)
        #endif
        waitUntilExit()
    }
}

/// A test's master read with SQL, as staff would read it, on either backend: its replicated
/// tables and the bookkeeping the oracles check them against. Opened after the store made the
/// schema; ``close()`` when done.
final class MasterTables {
    let master: TestMaster
    let config: ServerConfig
    /// The SQLite master, read-only; nil on PostgreSQL.
    private let queue: DatabaseQueue?

    init(_ master: TestMaster, config: ServerConfig) throws {
        self.master = master
        self.config = config
        if let path = master.location.path {
            var configuration = Configuration()
            configuration.readonly = true
            queue = try DatabaseQueue(path: path, configuration: configuration)
        } else {
            queue = nil
        }
    }

    func close() throws { try queue?.close() }

    private var client: PostgresClient {
        get throws {
            guard let store = master.postgresStore else { throw TestFailure("no PostgreSQL store") }
            return store.master.client
        }
    }

    /// Every row of `table` (a replicated table), each column by name, with its exact value.
    func rows(_ table: String) async throws -> [[String: SQLValue]] {
        if let queue {
            return try await queue.read { db in
                try Row.fetchAll(db, sql: "SELECT * FROM \(SQL.quote(table))").map { row in
                    Dictionary(uniqueKeysWithValues: row.columnNames.map { ($0, SQLValue(row[$0] as DatabaseValue)) })
                }
            }
        }
        guard let schema = config.table(named: table) else { throw TestFailure("no table \(table) in the config") }
        let definition = try PostgresTableDefinition(schema)
        let names = (schema.primaryKey + schema.columns).map(\.name)
        var out: [[String: SQLValue]] = []
        for try await row in try await client.query(PostgresQuery(unsafeSQL: definition.selectRows)) {
            let (key, values) = try definition.decodeRow(row)
            out.append(Dictionary(uniqueKeysWithValues: zip(names, key + values).map { ($0, $1) }))
        }
        return out
    }

    /// How many rows of `table` the bookkeeping counts as live (not tombstones).
    func liveCount(_ table: String) async throws -> Int {
        if let queue {
            return try await queue.read { db in
                try Int.fetchOne(
                    db, sql: "SELECT count(*) FROM _ks_rows WHERE tbl = ? AND deleted = 0", arguments: [table])
                    ?? -1
            }
        }
        for try await count in try await client.query(
            "SELECT count(*) FROM kotasync.rows WHERE tbl = \(table) AND NOT deleted"
        ).decode(Int64.self) {
            return Int(count)
        }
        return -1
    }

    /// What devices last reported about each replica the master knows: the replica, the OPD it
    /// belongs to, and its last error.
    func deviceReports() async throws -> [(replica: UUID, opd: String, lastError: String?)] {
        if let queue {
            return try await queue.read { db in
                try Row.fetchAll(
                    db,
                    sql:
                        "SELECT r.uuid, r.opd, d.last_error FROM _ks_devices d JOIN _ks_replicas r ON r.number = d.replica"
                ).map { row in (UUID(bytes: [UInt8](row["uuid"] as Data)), row["opd"], row["last_error"]) }
            }
        }
        var out: [(replica: UUID, opd: String, lastError: String?)] = []
        let rows = try await client.query(
            "SELECT r.uuid, r.opd, d.last_error FROM kotasync.devices d JOIN kotasync.replicas r ON r.number = d.replica"
        ).decode((ByteBuffer, String, String?).self)
        for try await (uuid, opd, lastError) in rows {
            out.append((UUID(bytes: Array(uuid.readableBytesView)), opd, lastError))
        }
        return out
    }

    /// SQLite's `PRAGMA integrity_check` (`["ok"]` when sound); nil on PostgreSQL, whose pages
    /// the server checks itself (checksums, WAL) and which has no equivalent a test can ask for
    /// without an extension (`amcheck`) the master does not install.
    func integrityCheck() async throws -> [String]? {
        guard let queue else { return nil }
        return try await queue.read { db in try String.fetchAll(db, sql: "PRAGMA integrity_check") }
    }
}
