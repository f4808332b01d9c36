import Foundation
import KotaSyncServer
import Logging
import PostgresNIO
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A PostgreSQL server for tests: the one `KOTASYNC_TEST_POSTGRES` names (CI starts one), or
/// else a private cluster this process creates in a temporary folder, starts on a free port of
/// 127.0.0.1 and removes when it exits.
///
/// Each test asks for a fresh database with ``withDatabase(_:)``. One cluster serves every test
/// of the process (starting one takes a few seconds; a database takes milliseconds).
///
/// When there is neither a URL nor a PostgreSQL installation, ``shared()`` throws an error that
/// says how to get one, so a suite that needs PostgreSQL fails instead of passing silently. A run
/// that means to leave the PostgreSQL suites out says so with `KOTASYNC_SKIP_POSTGRES=1`
/// (``skipRequested``), which their suites check.
public final class PostgresCluster: Sendable {
    /// The environment variable with the URL of a server to use instead of a private cluster:
    /// `postgresql://USER@HOST:PORT/DATABASE` of a superuser (or a user that may create databases);
    /// its password, if any, in `PGPASSWORD`.
    public static let urlVariable = "KOTASYNC_TEST_POSTGRES"
    /// The environment variable that skips the PostgreSQL suites when `1`.
    public static let skipVariable = "KOTASYNC_SKIP_POSTGRES"
    /// The environment variable naming the folder with `initdb` and `pg_ctl`, when they are
    /// neither on the `PATH` nor in Debian's `/usr/lib/postgresql/<version>/bin`.
    public static let binariesVariable = "KOTASYNC_PG_BIN"

    /// Whether the run asked to leave the PostgreSQL suites out.
    public static var skipRequested: Bool { ProcessInfo.processInfo.environment[skipVariable] == "1" }

    /// Where the server is: a database that exists (the server's maintenance database).
    public let location: PostgresLocation
    /// The password for `location`'s user, if it needs one.
    public let password: String?
    /// The private cluster's folder; nil for a server named by `KOTASYNC_TEST_POSTGRES`.
    let directory: URL?
    let binaries: URL?

    private init(location: PostgresLocation, password: String?, directory: URL?, binaries: URL?) {
        self.location = location
        self.password = password
        self.directory = directory
        self.binaries = binaries
    }

    private static let started = Mutex<Task<PostgresCluster, any Error>?>(nil)

    /// The server for this process's tests, started on first use.
    public static func shared() async throws -> PostgresCluster {
        let task = started.withLock { task in
            if let task { return task }
            let new = Task { try await PostgresCluster.make() }
            task = new
            return new
        }
        return try await task.value
    }

    private static func make() async throws -> PostgresCluster {
        let environment = ProcessInfo.processInfo.environment
        if let url = environment[urlVariable], !url.isEmpty {
            let location: PostgresLocation
            do {
                location = try PostgresLocation(parsing: url)
            } catch {
                throw PostgresClusterError("\(urlVariable) is not a usable URL: \(error)")
            }
            let cluster = PostgresCluster(
                location: location, password: environment[MasterLocation.libpqPasswordVariable], directory: nil,
                binaries: nil)
            try await cluster.checkConnection()
            return cluster
        }
        return try await startPrivate()
    }

    // MARK: - Databases

    /// Runs `body` with a new, empty database on the server, dropped afterwards (also when
    /// `body` throws). Its location has the server's user and password.
    public func withDatabase<T: Sendable>(_ body: (PostgresLocation) async throws -> T) async throws -> T {
        let name = "ks_test_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        try await admin { client in
            try await client.query(
                PostgresQuery(unsafeSQL: "CREATE DATABASE \(name) TEMPLATE template0 ENCODING 'UTF8'"))
        }
        var database = location
        database.database = name
        do {
            let result = try await body(database)
            try await drop(name)
            return result
        } catch {
            try? await drop(name)
            throw error
        }
    }

    private func drop(_ name: String) async throws {
        try await admin { client in
            try await client.query(PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(name) WITH (FORCE)"))
        }
    }

    /// A client for `location` that runs for the duration of `body`.
    public static func withClient<T: Sendable>(
        _ location: PostgresLocation, password: String?, _ body: (PostgresClient) async throws -> T
    ) async throws -> T {
        var configuration = PostgresClient.Configuration(
            host: location.host, port: location.port, username: location.user, password: password,
            database: location.database, tls: .disable)
        configuration.options.maximumConnections = 4
        let client = PostgresClient(configuration: configuration, backgroundLogger: quietLogger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            return try await body(client)
        }
    }

    private func admin(_ body: (PostgresClient) async throws -> Void) async throws {
        try await Self.withClient(location, password: password, body)
    }

    func checkConnection() async throws {
        // One connection, not the pool: the pool retries a refused connection for a minute
        // before it gives up, and a test should say at once that the server is not there.
        do {
            let connection = try await PostgresConnection.connect(
                configuration: PostgresConnection.Configuration(
                    host: location.host, port: location.port, username: location.user, password: password,
                    database: location.database, tls: .disable),
                id: 0, logger: Self.quietLogger)
            defer { Task { try? await connection.close() } }
            try await connection.query("SELECT 1", logger: Self.quietLogger)
        } catch {
            throw PostgresClusterError(
                "Cannot connect to the PostgreSQL server at \(location) (\(Self.urlVariable)): \(String(reflecting: error))"
            )
        }
    }

    static let quietLogger: Logger = {
        var logger = Logger(label: "kotasync.test.postgres")
        logger.logLevel = .critical
        return logger
    }()

    // MARK: - The private cluster

    /// Creates a cluster in a new temporary folder (as the `postgres` user when this process is
    /// root: PostgreSQL refuses to run as root), starts it on a free port of 127.0.0.1 only,
    /// waits until it accepts connections, and arranges for it to be stopped and removed when
    /// the process exits.
    private static func startPrivate() async throws -> PostgresCluster {
        let bin = try findBinaries()
        removeAbandonedClusters(bin: bin)
        let pid = getpid()
        let folder = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("kotasync-pg-\(pid)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        registered.withLock { $0 = (folder, bin) }
        // A normal exit stops the cluster in the exit handler; a process that is killed (kill -9,
        // `timeout`, a crash) runs no handler, so a watchdog outside it stops the cluster then.
        atexit { PostgresCluster.stopRegistered() }
        // Its pipe's writing end stays open for the rest of the process, on purpose.
        _ = try startWatchdog(folder: folder, bin: bin)
        return try await startServer(in: folder, bin: bin)
    }

    /// Creates a cluster in the empty `folder` and starts it on a free port of 127.0.0.1; returns
    /// once it accepts connections. Stopping it is the caller's (``stop(folder:bin:)``).
    static func startServer(in folder: URL, bin: URL) async throws -> PostgresCluster {
        let asRoot = geteuid() == 0
        if asRoot {
            try run("/bin/chown", ["postgres:postgres", folder.path], what: "chown the cluster folder to postgres")
        }
        let data = folder.appendingPathComponent("data").path
        try run(
            bin.appendingPathComponent("initdb").path,
            ["-D", data, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"],
            asPostgres: asRoot, what: "initdb")
        // A taken port (another process picked the same free one meanwhile) fails the start; try another.
        var lastError: (any Error)?
        for _ in 0..<5 {
            let port = try freePort()
            let options =
                "-c listen_addresses=127.0.0.1 -c port=\(port) -c unix_socket_directories=\(folder.path) -c fsync=off -c max_connections=200"
            do {
                // -w: pg_ctl polls the server until it accepts connections (its readiness check).
                try run(
                    bin.appendingPathComponent("pg_ctl").path,
                    [
                        "-D", data, "-l", folder.appendingPathComponent("server.log").path, "-o", options, "-w", "-t",
                        "120",
                        "start",
                    ],
                    asPostgres: asRoot, what: "pg_ctl start")
                let cluster = PostgresCluster(
                    location: PostgresLocation(user: "postgres", host: "127.0.0.1", port: port, database: "postgres"),
                    password: nil, directory: folder, binaries: bin)
                try await cluster.checkConnection()
                return cluster
            } catch {
                lastError = error
            }
        }
        let log = (try? String(contentsOf: folder.appendingPathComponent("server.log"), encoding: .utf8)) ?? ""
        throw PostgresClusterError(
            "The private PostgreSQL cluster in \(folder.path) did not start: \(lastError.map { "\($0)" } ?? "") \(log.suffix(2000))"
        )
    }

    /// The cluster this process started, for the exit handler.
    private static let registered = Mutex<(folder: URL, bin: URL)?>(nil)

    /// Stops the process's cluster (immediate mode: its databases are throw-away) and removes its folder.
    static func stopRegistered() {
        guard let (folder, bin) = registered.withLock({ $0 }) else { return }
        stop(folder: folder, bin: bin)
    }

    static func stop(folder: URL, bin: URL) {
        let data = folder.appendingPathComponent("data").path
        if FileManager.default.fileExists(atPath: data + "/postmaster.pid") {
            try? run(
                bin.appendingPathComponent("pg_ctl").path, ["-D", data, "-m", "immediate", "-w", "stop"],
                asPostgres: geteuid() == 0, what: "pg_ctl stop")
        }
        try? FileManager.default.removeItem(at: folder)
    }

    /// Starts a watchdog that stops the cluster in `folder` and removes the folder when this
    /// process ends, however it ends: a shell in its own session (so a signal to the test's
    /// process group, as `timeout` sends, does not reach it) that reads a pipe whose only writer
    /// is this process. The kernel closes the writer when the process ends, even on `kill -9`;
    /// the shell then reads end-of-file and stops the server. After a normal exit the exit
    /// handler has already stopped it, and the watchdog finds nothing left to do.
    ///
    /// Returns the watchdog's pid and the pipe's writing end (close-on-exec, so no program this
    /// process starts holds it); closing that end triggers the watchdog as the process's end would.
    static func startWatchdog(folder: URL, bin: URL) throws -> (pid: pid_t, trigger: Int32) {
        var ends: [Int32] = [-1, -1]
        guard GNU.pipe2(&ends, O_CLOEXEC) == 0 else { throw PostgresClusterError("pipe2() failed: \(errno)") }
        defer { close(ends[0]) }  // the reading end is the watchdog's alone
        let stop = geteuid() == 0 ? "/usr/sbin/runuser -u postgres -- " : ""
        let script = """
            cat >/dev/null
            if [ -f "$1/data/postmaster.pid" ]; then \(stop)"$2/pg_ctl" -D "$1/data" -m immediate -w stop; fi
            rm -rf "$1"
            rm -f "$3"*
            """
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, ends[0], 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        _ = GNU.addCloseFrom(&actions, 3)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, GNU.spawnSetSID)
        // $3: the prefix of this process's `run` output files, one of which may be left by a kill.
        let outputs = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent(
            "kotasync-pg-output-\(getpid())-")
        let argv = ["/bin/sh", "-c", script, "kotasync-pg-watchdog", folder.path, bin.path, outputs.path]
        var pointers: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for pointer in pointers { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, argv[0], &actions, &attributes, &pointers, environ)
        guard spawned == 0 else {
            close(ends[1])
            throw PostgresClusterError(
                "The cluster's watchdog could not be started: \(String(cString: strerror(spawned)))")
        }
        return (pid, ends[1])
    }

    /// Clusters left by test processes that died without their exit handler (a crash, a kill -9):
    /// folders `kotasync-pg-<pid>-…` whose process is gone.
    private static func removeAbandonedClusters(bin: URL) {
        let temp = URL(fileURLWithPath: NSTemporaryDirectory())
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: temp.path) else { return }
        for name in names where name.hasPrefix("kotasync-pg-") {
            let parts = name.split(separator: "-")
            guard parts.count >= 3, let pid = Int32(parts[2]), pid != getpid() else { continue }
            if kill(pid, 0) == 0 || errno == EPERM { continue }
            stop(folder: temp.appendingPathComponent(name), bin: bin)
        }
    }

    /// The folder with `initdb` and `pg_ctl`: `KOTASYNC_PG_BIN`, the `PATH`, or the newest of
    /// Debian's `/usr/lib/postgresql/<version>/bin`.
    static func findBinaries() throws -> URL {
        let environment = ProcessInfo.processInfo.environment
        let fm = FileManager.default
        var candidates: [String] = []
        if let bin = environment[binariesVariable] { candidates.append(bin) }
        candidates += (environment["PATH"] ?? "").split(separator: ":").map(String.init)
        if let versions = try? fm.contentsOfDirectory(atPath: "/usr/lib/postgresql") {
            candidates += versions.compactMap { Int($0) }.sorted(by: >).map { "/usr/lib/postgresql/\($0)/bin" }
        }
        for folder in candidates
        where fm.isExecutableFile(atPath: folder + "/initdb") && fm.isExecutableFile(atPath: folder + "/pg_ctl") {
            return URL(fileURLWithPath: folder)
        }
        throw PostgresClusterError(
            """
            This suite needs PostgreSQL and found none: no \(urlVariable) URL, and no initdb and pg_ctl on the PATH, \
            in \(binariesVariable) or in /usr/lib/postgresql/*/bin. Install Debian's postgresql package \
            (`apt-get install postgresql`), or set \(urlVariable)=postgresql://USER@HOST:PORT/DATABASE, or leave \
            the PostgreSQL suites out with \(skipVariable)=1.
            """)
    }

    /// A port of 127.0.0.1 that nothing listens on now.
    private static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw PostgresClusterError("socket() failed: \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0 else { throw PostgresClusterError("bind() to a free port failed: \(errno)") }
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { throw PostgresClusterError("getsockname() failed: \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Runs a program to its end; as the `postgres` user (`runuser`) when `asPostgres`.
    ///
    /// posix_spawn and waitpid rather than Foundation's `Process`: `pg_ctl start` leaves the
    /// server running as its grandchild, which inherits what `Process` watches for the exit, and
    /// `waitUntilExit()` then never returns. Output goes to a file, read back on failure.
    static func run(_ program: String, _ arguments: [String], asPostgres: Bool = false, what: String) throws {
        let argv =
            asPostgres ? ["/usr/sbin/runuser", "-u", "postgres", "--", program] + arguments : [program] + arguments
        let output = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("kotasync-pg-output-\(getpid())-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: output) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // Nothing else of this process: the server `pg_ctl start` leaves running would otherwise
        // hold the test runner's descriptors (pipes a caller waits on for their end) open.
        _ = GNU.addCloseFrom(&actions, 3)
        var pointers: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for pointer in pointers { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, argv[0], &actions, nil, &pointers, environ)
        guard spawned == 0 else {
            throw PostgresClusterError("\(what) could not be started: \(String(cString: strerror(spawned)))")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 {
            guard errno == EINTR else { throw PostgresClusterError("\(what): waitpid failed (\(errno))") }
        }
        // Exited normally with status 0 (WIFEXITED and WEXITSTATUS, which Swift does not import).
        guard status & 0x7f == 0, (status >> 8) & 0xff == 0 else {
            let text = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
            throw PostgresClusterError("\(what) failed (wait status \(status)): \(text.suffix(4000))")
        }
    }
}

/// Why the tests' PostgreSQL server could not be had; the message says what to do.
public struct PostgresClusterError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// glibc's GNU extensions the harness needs, which Swift's Glibc module does not import (it is
/// built without `_GNU_SOURCE`): looked up by name, present in glibc since 2.34 (Debian 12).
private enum GNU {
    typealias Pipe2 = @convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32
    typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32

    /// `POSIX_SPAWN_SETSID` (spawn.h): the child starts a new session and process group.
    static let spawnSetSID: Int16 = 0x80

    private static func symbol<T>(_ name: String, as type: T.Type) -> T {
        guard let address = dlsym(nil, name) else {
            fatalError("glibc has no \(name); the PostgreSQL test harness needs glibc 2.34 or later")
        }
        return unsafeBitCast(address, to: type)
    }

    /// `pipe2(2)`: a pipe whose ends have `flags` (`O_CLOEXEC`) from the start, with no moment at
    /// which a program started by another thread could inherit them.
    static func pipe2(_ ends: UnsafeMutablePointer<Int32>, _ flags: Int32) -> Int32 {
        symbol("pipe2", as: Pipe2.self)(ends, flags)
    }

    /// `posix_spawn_file_actions_addclosefrom_np`: the child closes every descriptor from `from` on.
    static func addCloseFrom(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ from: Int32) -> Int32 {
        symbol("posix_spawn_file_actions_addclosefrom_np", as: AddCloseFrom.self)(actions, from)
    }
}
