import Foundation
import KotaSyncClient
import KotaSyncCore
import KotaSyncServer

/// Figures 7, 9, 10 and 11: the real server over loopback HTTP.
struct NetworkFigures {
    let merge: MergeFigures
    let config: ServerConfig

    /// Runs `body` against the real `kotasync-server` binary, in a process of its own (as in the
    /// field, the server does not share threads or a disk queue with the clients' work), on a
    /// free port over the SQLite master at `masterPath`. `body` gets the URL and a way to make tokens.
    func withServer<T: Sendable>(
        master masterPath: String,
        _ body: (URL, _ token: @escaping (String) throws -> String, _ pid: Int32) async throws -> T
    ) async throws -> T {
        try await withServers(1, master: FigureMaster(place: .file(masterPath), config: config)) { urls, token, pids in
            try await body(urls[0], token, pids[0])
        }
    }

    /// Runs `body` against `count` real `kotasync-server` processes serving one `master` (more
    /// than one only on PostgreSQL), each on a free port of its own. `body` gets their URLs, a way
    /// to make tokens (made in the master, so valid on every server) and their process ids.
    func withServers<T: Sendable>(
        _ count: Int, master: FigureMaster,
        _ body: ([URL], _ token: @escaping (String) throws -> String, _ pids: [Int32]) async throws -> T
    ) async throws -> T {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            .deletingLastPathComponent()
            .appendingPathComponent("kotasync-server")
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            throw BenchError(
                "kotasync-server is not built beside kotasync-bench (\(binary.path)); run `swift build` first")
        }
        let configPath = merge.directory.appendingPathComponent("bench.yaml").path
        var servers: [Process] = []
        defer {
            for server in servers { server.terminate() }
            for server in servers { server.waitUntilExit() }
        }
        var urls: [URL] = []
        for _ in 0..<count {
            let server = Process()
            server.executableURL = binary
            server.arguments =
                ["serve", "--config", configPath] + master.serverArguments + ["--port", "0", "--log-level", "error"]
            let out = Pipe()
            server.standardOutput = out
            try server.run()
            servers.append(server)
            var line = ""
            while !line.contains("\n") {
                let chunk = out.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                line += String(decoding: chunk, as: UTF8.self)
            }
            guard let start = line.range(of: "http://"),
                let url = URL(
                    string: String(line[start.lowerBound...]).trimmingCharacters(in: .whitespacesAndNewlines))
            else { throw BenchError("the server did not report its address") }
            urls.append(url)
        }
        let token = { (opd: String) throws -> String in
            try runProgram(
                binary.path, ["token", "create", "--config", configPath] + master.serverArguments + ["--opd", opd]
            )
            .trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return try await body(urls, token, servers.map(\.processIdentifier))
    }

    /// One replica's push then pull, request by request: each request's latency (from its first
    /// try to its answer) and the tries that failed and were made again (``withRetries(_:)``).
    static func pushThenPull(_ replica: Replica, _ client: SyncClient) async throws -> (
        latencies: [Double], retries: Int
    ) {
        var latencies: [Double] = []
        var retries = 0
        while let outbound = try replica.nextOutbound() {
            let start = ContinuousClock.now
            let (reply, again) = try await withRetries { try await client.push(outbound.body).0 }
            latencies.append((ContinuousClock.now - start).seconds)
            retries += again
            try replica.acknowledge(outbound, reply: reply)
        }
        var cursor = try replica.cursor()
        while true {
            let start = ContinuousClock.now
            let ((page, more), again) = try await withRetries { try await client.pull(after: cursor, limit: 5000) }
            latencies.append((ContinuousClock.now - start).seconds)
            retries += again
            _ = try replica.apply(page: page)
            cursor = page.lastSequence
            if !more { break }
        }
        return (latencies, retries)
    }

    /// `request` tried as a device's synchronizer tries it: a transient failure (the server not
    /// reached in time, or no byte moving for the client's idle limit while the server still
    /// works) is tried again after ``RetryPolicy/standard``'s backoff, at most its number of
    /// tries. Sending the same push again is harmless (the server merges it once). The answer,
    /// and how many tries failed before it.
    static func withRetries<T>(_ request: () async throws -> T) async throws -> (T, retries: Int) {
        var failures = 0
        while true {
            do {
                return (try await request(), failures)
            } catch let error as ReplicaError {
                failures += 1
                guard
                    case .retry(let wait) = RetryPolicy.standard.decision(
                        after: error, failures: failures, jitter: Double.random(in: 0..<1))
                else { throw error }
                try await Task.sleep(for: wait)
            }
        }
    }

    /// 7: N replicas push concurrently, then pull, through the real HTTP server, on a copy of the
    /// initial master at `site`.
    func endToEnd(on site: MasterSite, into report: inout Report) async throws -> Figure {
        let shape = merge.workload.shape
        let files = try (0..<shape.replicas).map { r in
            let file = try merge.makeReplica("e2e-\(r).sqlite")
            try Bench.apply(merge.workload.operations(replica: r), to: RawDatabase(path: file), batch: shape.batch)
            return file
        }
        let (seconds, latencies, retries, master) = try await withMaster(
            on: site, from: merge.path("master-initial.sqlite"), copy: "master-e2e.sqlite"
        ) { master in
            let (seconds, latencies, retries) = try await withServers(1, master: master) { urls, token, _ in
                let url = urls[0]
                let tokens = try (0..<files.count).map { try token(String(format: "clinic-%02d", $0 + 1)) }
                let start = ContinuousClock.now
                var (latencies, retries) = try await withThrowingTaskGroup(
                    of: (latencies: [Double], retries: Int).self
                ) { group in
                    for (file, token) in zip(files, tokens) {
                        group.addTask {
                            try await Self.pushThenPull(try Replica(path: file), SyncClient(baseURL: url, token: token))
                        }
                    }
                    return try await group.reduce(into: ([Double](), 0)) {
                        $0.0 += $1.latencies
                        $0.1 += $1.retries
                    }
                }
                // A second round so every replica also has the others' changes.
                for (file, token) in zip(files, tokens) {
                    retries += try await Self.pushThenPull(
                        try Replica(path: file), SyncClient(baseURL: url, token: token)
                    ).retries
                }
                return ((ContinuousClock.now - start).seconds, latencies, retries)
            }
            return (seconds, latencies, retries, try await master.contents())
        }
        var converged = true
        for file in files where try Bench.contents(RawDatabase(path: file)) != master { converged = false }
        report.checks["end to end\(site.nameSuffix): every replica equals the master"] = converged
        return Figure(
            id: "7\(site.idSuffix)",
            name: "End to end over loopback HTTP (\(files.count) replicas push, then pull)\(site.nameSuffix)",
            value: seconds, unit: "s",
            note: String(
                format: "%d requests; latency p50 %.1f ms, p99 %.1f ms%@", latencies.count,
                Bench.percentile(latencies, 0.5) * 1000,
                Bench.percentile(latencies, 0.99) * 1000,
                retries == 0 ? "" : "; \(retries) tries failed (the client's limits) and were made again"))
    }

    /// 9: a new replica downloads a master of `rows` rows at `site`.
    ///
    /// On SQLite the rows are written into a plain file the server adopts when it starts, as a
    /// Command Center's existing database is. On PostgreSQL the same rows are written to a file
    /// of their own, adopted by opening it as an SQLite master here, and that master is copied
    /// (``withMaster(on:from:copy:_:)``); neither step is timed.
    func bootstrap(rows: Int, on site: MasterSite, into report: inout Report) async throws -> Figure {
        let path = merge.path(site.idSuffix.isEmpty ? "master-bootstrap.sqlite" : "master-bootstrap-source.sqlite")
        try? FileManager.default.removeItem(atPath: path)
        let db = try RawDatabase(path: path)
        try db.execute("PRAGMA journal_mode = WAL")
        try db.execute(ClinicData.patientsDDL)
        try db.execute(ClinicData.visitsDDL)
        var rng = SeededGenerator(seed: 99)
        try db.execute("BEGIN")
        for _ in 0..<rows {
            try db.run(ClinicData.insertSQL(0), ClinicData.row(table: 0, &rng, clinic: "dinkes", patients: []))
        }
        try db.execute("COMMIT")
        if case .postgres = site { _ = try SQLiteMasterStore(path: path, config: config) }
        let replicaPath = merge.path("bootstrap-replica\(site.idSuffix).sqlite")
        let (seconds, pulled) = try await withMaster(on: site, from: path, copy: nil) { master in
            try await withServers(1, master: master) { urls, makeToken, _ in
                let token = try makeToken("dinkes")
                let start = ContinuousClock.now
                let (_, _, pulled) = try await Synchronizer.initialize(
                    path: replicaPath, serverURL: urls[0], token: token, pageSize: 5000)
                return ((ContinuousClock.now - start).seconds, pulled.rows)
            }
        }
        report.checks["bootstrap\(site.nameSuffix) downloads every row"] = pulled == rows
        return Figure(
            id: "9\(site.idSuffix)", name: "Bootstrap of a new replica from \(rows) rows\(site.nameSuffix)",
            value: seconds, unit: "s",
            target: rows >= 1_000_000 ? "≤ 20 s for 1M rows" : nil, met: rows >= 1_000_000 ? seconds <= 20 : nil,
            note: String(format: "%.0f rows/s, pages of 5000", Double(pulled) / seconds))
    }

    /// 10: many small pushes (1–10 rows) from concurrent replicas, on a copy of the initial master
    /// at `site`, through `servers` servers (more than one only on PostgreSQL), the replicas spread
    /// over them in turn.
    ///
    /// Measured twice against the same servers. First the servers alone: every replica's pushes
    /// are built (each after the previous one was acknowledged locally) before the clock starts,
    /// then the replicas send them concurrently, each waiting for its reply before the next. This
    /// is the figure: in the field each device is its own machine, and here fifty devices' SQLite
    /// writes, outbox fsyncs and acknowledgements would otherwise share the server's two cores and
    /// disk. Then, for the note, fifty devices do all of that on this machine while they push.
    func smallPushes(
        replicas: Int, pushes: Int, on site: MasterSite, servers: Int = 1, into report: inout Report
    ) async throws -> Figure {
        let clinics = (0..<replicas).map { String(format: "clinic-%02d", $0 + 1) }
        var prebuilt: [[[UInt8]]] = []
        var rowsSent = 0
        for (r, clinic) in clinics.enumerated() {
            let device = try SmallPushDevice(
                file: try merge.makeReplica("small-prebuilt-\(r).sqlite"), seed: 8_000 + UInt64(r), clinic: clinic)
            var bodies: [[UInt8]] = []
            for _ in 0..<pushes {
                guard let outbound = try device.writeAndPrepare() else { continue }
                try device.replica.acknowledge(
                    outbound,
                    reply: PushReply(
                        changesetId: outbound.id, replicaId: device.replica.id, rows: outbound.rows,
                        applied: outbound.rows, clampedStamps: 0, masterSequence: 0, conflicts: []))
                bodies.append(outbound.body)
                rowsSent += outbound.rows
            }
            prebuilt.append(bodies)
        }
        let devices = try clinics.enumerated().map { r, clinic in
            try SmallPushDevice(
                file: try merge.makeReplica("small-\(r).sqlite"), seed: 7_000 + UInt64(r), clinic: clinic)
        }
        let bodies = prebuilt
        let (alone, withDevices, holdsEveryRow) = try await withMaster(
            on: site, from: merge.path("master-initial.sqlite"), copy: "master-small.sqlite"
        ) { master in
            let visitsBefore = try await master.count("visits")
            let (alone, withDevices) = try await withServers(servers, master: master) { urls, token, _ in
                let clients = try clinics.enumerated().map { r, clinic in
                    SyncClient(baseURL: urls[r % urls.count], token: try token(clinic))
                }
                let alone = try await Self.timedPushes(clients.count) { r in
                    var latencies: [Double] = []
                    for body in bodies[r] {
                        let start = ContinuousClock.now
                        _ = try await clients[r].push(body)
                        latencies.append((ContinuousClock.now - start).seconds)
                    }
                    return latencies
                }
                let withDevices = try await Self.timedPushes(clients.count) { r in
                    let device = devices[r]
                    var latencies: [Double] = []
                    for _ in 0..<pushes {
                        let prepared: OutboundChangeset? = try await Bench.offPool { try device.writeAndPrepare() }
                        guard let outbound = prepared else { continue }
                        let start = ContinuousClock.now
                        let (reply, _) = try await clients[r].push(outbound.body)
                        latencies.append((ContinuousClock.now - start).seconds)
                        try await Bench.offPool { try device.replica.acknowledge(outbound, reply: reply) }
                    }
                    return latencies
                }
                return (alone, withDevices)
            }
            let holdsEveryRow =
                try await master.count("visits") == visitsBefore + rowsSent + devices.reduce(0) { $0 + $1.written }
            return (alone, withDevices, holdsEveryRow)
        }
        let through = servers > 1 ? ", through \(servers) servers" : ""
        report.checks["small pushes\(site.nameSuffix)\(through): the master holds every pushed row"] = holdsEveryRow
        let rate = Double(alone.latencies.count) / alone.seconds
        let p99 = Bench.percentile(alone.latencies, 0.99) * 1000
        return Figure(
            id: "10\(site.idSuffix)\(servers > 1 ? "×\(servers)" : "")",
            name: "Small pushes (1–10 rows) from \(replicas) concurrent replicas\(through)\(site.nameSuffix)",
            value: rate, unit: "pushes/s",
            target: "≥ 500/s, p99 < 250 ms", met: rate >= 500 && p99 < 250,
            note: String(
                format:
                    "p50 %.1f ms, p99 %.1f ms over %d pushes built beforehand; with the %d devices' own writes, builds"
                    + " and acknowledgements on this machine: %.0f pushes/s, p50 %.1f ms, p99 %.1f ms",
                Bench.percentile(alone.latencies, 0.5) * 1000, p99, alone.latencies.count, replicas,
                Double(withDevices.latencies.count) / withDevices.seconds,
                Bench.percentile(withDevices.latencies, 0.5) * 1000,
                Bench.percentile(withDevices.latencies, 0.99) * 1000))
    }

    /// Runs `device` for `count` replicas at once; the wall time and every push's latency.
    private static func timedPushes(
        _ count: Int, _ device: @escaping @Sendable (Int) async throws -> [Double]
    ) async throws -> (seconds: Double, latencies: [Double]) {
        let start = ContinuousClock.now
        let latencies = try await withThrowingTaskGroup(of: [Double].self) { group in
            for r in 0..<count { group.addTask { try await device(r) } }
            return try await group.reduce(into: [Double]()) { $0 += $1 }
        }
        return ((ContinuousClock.now - start).seconds, latencies)
    }

    /// 11: the server process's peak memory while it merges one large changeset into a copy of
    /// the initial master at `site`. On PostgreSQL that is `kotasync-server`'s memory alone: the
    /// PostgreSQL server's processes are not the server's, and are not counted.
    func bigChangesetMemory(megabytes: Int, on site: MasterSite, into report: inout Report) async throws -> Figure {
        var rng = SeededGenerator(seed: 5)
        var rows: [Changeset.Row] = []
        var payload = 0
        var stamp = HLC(milliseconds: UInt64(Date().timeIntervalSince1970 * 1000), counter: 0)
        while payload < megabytes << 20 {
            let values = ClinicData.row(table: 1, &rng, clinic: "clinic-01", patients: merge.workload.seedPatients)
            stamp = stamp.successor
            rows.append(
                Changeset.Row(
                    table: 0, operation: .upsert, version: 0, stamp: stamp, primaryKey: [values[0]],
                    columns: values.dropFirst().enumerated().map {
                        Changeset.ColumnValue(column: $0.offset, value: $0.element)
                    }
                ))
            payload += values.reduce(12) { size, value in
                if case .text(let t) = value { return size + t.utf8.count + 2 }
                return size + 9
            }
        }
        let changeset = Changeset(
            kind: .push, id: UUID(), replicaID: UUID(), firstSequence: 1, lastSequence: UInt64(rows.count),
            tables: [
                Changeset.Table(name: "visits", primaryKey: ["id"], columns: Array(ClinicData.columns[1].dropFirst()))
            ],
            rows: rows)
        let body = ChangesetCodec.encode(changeset)
        let raw = try ChangesetCodec.decodeHeader(body, limits: DecodeLimits(maxUncompressedBytes: 1 << 30))
            .uncompressedLength
        let (seconds, idle, peak) = try await withMaster(
            on: site, from: merge.path("master-initial.sqlite"), copy: "master-big.sqlite"
        ) { master in
            try await withServers(1, master: master) { urls, token, pids in
                let idle = Bench.peakRSS(pid: pids[0]) ?? 0
                // The push is sent once and its answer awaited however long the merge takes: the
                // figure is the server's memory for one changeset. With a device's 20 s idle limit
                // a merge longer than that is abandoned and sent again, and every copy waiting
                // for its merge turn holds its body in the server too (a PostgreSQL run: 231 MB).
                let transport = HTTPTransport(timeouts: .init(connect: .seconds(10), idle: .seconds(1800)))
                let client = SyncClient(baseURL: urls[0], token: try token("clinic-01"), transport: transport)
                let seconds: Double
                do {
                    seconds = try await Bench.timeAsync { _ = try await client.push(body) }
                } catch {
                    try? await transport.shutdown()
                    throw error
                }
                try await transport.shutdown()
                return (seconds, idle, Bench.peakRSS(pid: pids[0]) ?? 0)
            }
        }
        let peakMB = Double(peak) / 1_048_576
        let whose =
            if case .postgres = site { " (kotasync-server's process; PostgreSQL's own processes not counted)" } else {
                ""
            }
        return Figure(
            id: "11\(site.idSuffix)",
            name: "Server peak RSS merging one \(raw >> 20) MB changeset\(site.nameSuffix)", value: peakMB, unit: "MB",
            target: "≤ 150 MB", met: peakMB <= 150,
            note: String(
                format: "%d rows, %d bytes compressed, merged in %.1f s; %.0f MB before the push%@", rows.count,
                body.count, seconds, Double(idle) / 1_048_576, whose))
    }

    func runProgram(_ path: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw BenchError("\(path) \(arguments.first ?? "") failed") }
        return String(decoding: data, as: UTF8.self)
    }
}

/// One device of the small-push figure: its replica, a plain connection for its app's writes, and
/// its random source. Used by one task at a time, one step after the other.
private final class SmallPushDevice: @unchecked Sendable {
    let replica: Replica
    let db: RawDatabase
    var rng: SeededGenerator
    let clinic: String
    /// Rows written so far.
    var written = 0

    init(file: String, seed: UInt64, clinic: String) throws {
        replica = try Replica(path: file)
        db = try RawDatabase(path: file)
        // Fifty devices share this machine's disk here; in the field each has its own.
        try db.execute("PRAGMA synchronous = NORMAL")
        rng = SeededGenerator(seed: seed)
        self.clinic = clinic
    }

    /// Writes 1–10 visits in one transaction, as the clinic's app would, and builds the push.
    func writeAndPrepare() throws -> OutboundChangeset? {
        try db.execute("BEGIN")
        for _ in 0..<Int.random(in: 1...10, using: &rng) {
            try db.run(ClinicData.insertSQL(1), ClinicData.row(table: 1, &rng, clinic: clinic, patients: []))
            written += 1
        }
        try db.execute("COMMIT")
        return try replica.nextOutbound()
    }
}
