import Foundation
import KotaSyncCore
import KotaSyncServer
import PostgresNIO

/// Where a network figure's master is: an SQLite file in the bench's folder (the default), or a
/// database of its own on the PostgreSQL server given with `--master`. The same figure code runs
/// on either; only the master's place, the server's `--db`/`--master` argument and the checks'
/// reads of the master differ.
enum MasterSite {
    case sqlite
    case postgres(MergeFigures.Postgres)

    /// What a figure's id gets on this master: "" or "pg" (figure 7 becomes 7pg).
    var idSuffix: String {
        switch self {
        case .sqlite: ""
        case .postgres: "pg"
        }
    }

    /// What a figure's name and its checks get on this master.
    var nameSuffix: String {
        switch self {
        case .sqlite: ""
        case .postgres: " on a PostgreSQL master"
        }
    }
}

/// One figure's master, as `kotasync-server` is pointed at it and as the figure's checks read it.
struct FigureMaster: Sendable {
    enum Place: Sendable {
        case file(String)
        case postgres(PostgresMaster)
    }
    let place: Place
    let config: ServerConfig

    /// The arguments that name this master to `kotasync-server serve` and `token create`. A
    /// PostgreSQL master's password reaches the server through the environment the bench was
    /// given (`KOTASYNC_MASTER_PASSWORD_FILE` or `PGPASSWORD`), never its command line.
    var serverArguments: [String] {
        switch place {
        case .file(let path): ["--db", path]
        case .postgres(let master): ["--master", "\(master.location)"]
        }
    }

    /// Every row of the benchmark tables, in key order, as ``Bench/contents(_:)`` reads a file:
    /// what the figures' convergence checks compare every replica with.
    func contents() async throws -> [[[SQLValue]]] {
        switch place {
        case .file(let path):
            return try Bench.contents(RawDatabase(path: path))
        case .postgres(let master):
            var tables: [[[SQLValue]]] = []
            for name in ClinicData.tables {
                guard let schema = config.tables.first(where: { $0.name == name }) else {
                    throw BenchError("the bench config has no table \(name)")
                }
                let table = try PostgresTableDefinition(schema)
                var rows: [[SQLValue]] = []
                for try await row in try await master.client.query(PostgresQuery(unsafeSQL: table.selectRows)) {
                    let (key, values) = try table.decodeRow(row)
                    rows.append(key + values)
                }
                // The replicas sort by SQLite's binary collation; the database's may differ.
                rows.sort { Self.binaryOrder($0[0], $1[0]) }
                tables.append(rows)
            }
            return tables
        }
    }

    /// The number of rows in `table`.
    func count(_ table: String) async throws -> Int {
        switch place {
        case .file(let path):
            return try RawDatabase(path: path).count(table)
        case .postgres(let master):
            let rows = try await master.client.query(
                PostgresQuery(unsafeSQL: "SELECT count(*) FROM public.\(PostgresTableDefinition.quote(table))"))
            for try await count in rows.decode(Int64.self) { return Int(count) }
            return 0
        }
    }

    /// SQLite's `ORDER BY` of two keys of the benchmark's tables (text, compared byte for byte).
    private static func binaryOrder(_ a: SQLValue, _ b: SQLValue) -> Bool {
        guard case .text(let x) = a, case .text(let y) = b else { return false }
        return x.utf8.lexicographicallyPrecedes(y.utf8)
    }
}

extension NetworkFigures {
    /// Runs `body` on a master of its own for one figure, made from the SQLite master file
    /// `source` before any server starts.
    ///
    /// On SQLite the master is a copy of `source` named `name` (or `source` itself, when `name` is
    /// nil). On PostgreSQL it is a new database on the `--master` server, into which `source` is
    /// copied as `kotasync-server master copy` copies (the same code, in this process, not timed);
    /// the database is dropped afterwards, whatever happens.
    func withMaster<T>(
        on site: MasterSite, from source: String, copy name: String?, _ body: (FigureMaster) async throws -> T
    ) async throws -> T {
        switch site {
        case .sqlite:
            var path = source
            if let name {
                path = merge.path(name)
                try Bench.copy(source, to: path)
            }
            return try await body(FigureMaster(place: .file(path), config: config))
        case .postgres(let postgres):
            return try await postgres.withDatabase { master in
                _ = try await PostgresMasterCopy.copy(from: source, to: master, config: config)
                return try await body(FigureMaster(place: .postgres(master), config: config))
            }
        }
    }
}

extension MergeFigures.Postgres {
    /// Runs `body` with a pool on a new database of this server (`kotasync_bench_…`), then closes
    /// the pool and drops the database (with the connections servers may still hold).
    func withDatabase<T>(_ body: (PostgresMaster) async throws -> T) async throws -> T {
        let name = "kotasync_bench_\(UUID().uuidString.prefix(8).lowercased())"
        let admin = try PostgresMaster.connect(to: server, password: password)
        do {
            try await admin.client.query(
                PostgresQuery(unsafeSQL: "CREATE DATABASE \(name) TEMPLATE template0 ENCODING 'UTF8'"))
        } catch {
            await admin.close()
            throw error
        }
        var location = server
        location.database = name
        let master = try PostgresMaster.connect(to: location, password: password)
        let result: Result<T, any Error>
        do {
            result = .success(try await body(master))
        } catch {
            result = .failure(error)
        }
        await master.close()
        _ = try? await admin.client.query(PostgresQuery(unsafeSQL: "DROP DATABASE \(name) WITH (FORCE)"))
        await admin.close()
        return try result.get()
    }
}
