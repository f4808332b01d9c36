import Foundation
import KotaSyncServer
import Testing

/// The backend a test's master is on. A suite that must hold on both takes it as its test's
/// argument (`@Test(arguments: MasterBackend.enabled)`) and gets its master from
/// ``withMaster(_:config:directory:_:)``, so one body runs on each.
public enum MasterBackend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    /// The embedded default: `master.sqlite` in the test's directory.
    case sqlite
    /// A fresh database on the tests' PostgreSQL server (``PostgresCluster``).
    case postgresql

    /// The backends this run tests: both, or SQLite alone when the run leaves the PostgreSQL
    /// suites out with `KOTASYNC_SKIP_POSTGRES=1` (the gate of the `.postgres` trait, which a
    /// single argument cannot carry).
    public static var enabled: [MasterBackend] { PostgresCluster.skipRequested ? [.sqlite] : allCases }

    public var testDescription: String { rawValue }
}

/// Where a test's master is, before any store opens it: what a `kotasync-server` process and
/// the commands are given.
public struct TestMasterLocation: Sendable {
    public let backend: MasterBackend
    /// The SQLite master file (`master.sqlite` in the test's directory); nil on PostgreSQL.
    public let path: String?
    /// The PostgreSQL database; nil on SQLite.
    public let postgres: PostgresLocation?
    /// The password for ``postgres``, if it needs one.
    public let password: String?
    /// How the commands name the master: `--db FILE`, or `--master URL` with a password file.
    public let arguments: [String]
}

/// A test's master opened with every role, and where it is.
public struct TestMaster: Sendable {
    public let location: TestMasterLocation
    /// The store, as the server and the commands see it: through its roles only.
    public let store: any MasterStore
    /// The same store as its concrete class on PostgreSQL, for tests that read its tables; nil on SQLite.
    public let postgresStore: PostgresMasterStore?

    public var backend: MasterBackend { location.backend }
    /// How the commands name the master (``TestMasterLocation/arguments``).
    public var arguments: [String] { location.arguments }
}

/// Runs `body` with a new, empty master on `backend`: `master.sqlite` in `directory`, or a fresh
/// database on the tests' PostgreSQL server (dropped afterwards). Nothing opens it: for a test
/// that starts `kotasync-server` processes on it.
public func withMasterLocation<T: Sendable>(
    _ backend: MasterBackend, directory: URL, _ body: (TestMasterLocation) async throws -> T
) async throws -> T {
    switch backend {
    case .sqlite:
        let path = directory.appendingPathComponent("master.sqlite").path
        return try await body(
            TestMasterLocation(backend: .sqlite, path: path, postgres: nil, password: nil, arguments: ["--db", path]))
    case .postgresql:
        let cluster = try await PostgresCluster.shared()
        return try await cluster.withDatabase { database in
            var arguments = ["--master", database.description]
            if let password = cluster.password {
                // Never on the command line (issue 15 §2): a file only the test's user reads.
                let file = directory.appendingPathComponent("master-password")
                try password.write(to: file, atomically: true, encoding: .utf8)
                arguments += ["--master-password-file", file.path]
            }
            return try await body(
                TestMasterLocation(
                    backend: .postgresql, path: nil, postgres: database, password: cluster.password,
                    arguments: arguments))
        }
    }
}

/// Runs `body` with a new master on `backend` opened for `config` (its schema and seed in
/// place), as ``withMasterLocation(_:directory:_:)`` places it; afterwards writes what the store
/// still queues (audit entries, device reports) and closes it, also when `body` throws.
public func withMaster<T: Sendable>(
    _ backend: MasterBackend, config: ServerConfig, directory: URL, _ body: (TestMaster) async throws -> T
) async throws -> T {
    try await withMasterLocation(backend, directory: directory) { location in
        switch backend {
        case .sqlite:
            let store = try SQLiteMasterStore(path: location.path!, config: config)
            let result = try await body(TestMaster(location: location, store: store, postgresStore: nil))
            try await store.flushAudit()
            return result
        case .postgresql:
            let store = try await PostgresMasterStore.open(
                location.postgres!, password: location.password, config: config)
            do {
                let result = try await body(TestMaster(location: location, store: store, postgresStore: store))
                await store.close()
                return result
            } catch {
                await store.close()
                throw error
            }
        }
    }
}
