import Foundation
import KotaSyncClient
import KotaSyncCore

#if canImport(Glibc)
    import Glibc
#endif

/// Figure 12, "bad link": the real `kotasync` over an emulated village link (``LinkEmulator``).
///
/// 12a: a clinic pushes a day's worth of visits; 12b: a new replica's `init` downloads the
/// master. Each is the wall time as a ratio of the payload's bytes ÷ the link's bandwidth (the
/// time a perfect link of that rate would need for the changeset or the pages, headers and
/// round trips not counted), with the bytes moved again after cuts and the client's CPU seconds.
/// The client runs with its default timeouts and `--until-done`.
struct BadLinkFigures {
    let network: NetworkFigures
    var merge: MergeFigures { network.merge }

    /// 64 kbit/s each way, 300 ms round trip, every connection cut every 30 s.
    static let village = LinkEmulator.Shape(bytesPerSecond: 64_000 / 8, oneWayDelay: 0.150, dropEvery: 30)

    /// What one run of the client did.
    struct Run: Sendable {
        var seconds: Double
        var cpu: Double
        /// The rows the command reports (`rows` of a push, `pulled_rows` of an init).
        var rows: Int
        var link: LinkStats
    }

    /// 12a: `kotasync push` of `visits` new visits.
    func push(visits: Int, shape: LinkEmulator.Shape, into report: inout Report) async throws {
        let master = merge.path("master-badlink.sqlite")
        try Bench.copy(merge.path("master-initial.sqlite"), to: master)
        let replica = merge.path("badlink-clinic.sqlite")
        try? FileManager.default.removeItem(atPath: replica)
        let (run, bytes, drops) = try await network.withServer(master: master) { url, token, _ in
            let link = try LinkEmulator(upstreamPort: url.port ?? 0)
            defer { link.stop() }
            let clinicToken = try token("clinic-01")
            _ = try Self.client(["init", "--db", replica, "--server", link.url.absoluteString, "--token", clinicToken])
            let db = try RawDatabase(path: replica)
            var rng = SeededGenerator(seed: 1919)
            try db.execute("BEGIN")
            for _ in 0..<visits {
                try db.run(
                    ClinicData.insertSQL(1),
                    ClinicData.row(table: 1, &rng, clinic: "clinic-01", patients: merge.workload.seedPatients))
            }
            try db.execute("COMMIT")
            // Builds the outbox entry the push then sends, to know its size.
            let bytes = try Replica(path: replica).nextOutbound()?.body.count ?? 0
            link.setShape(shape)
            let run = try Self.client(["push", "--db", replica, "--json", "--until-done", "--deadline", "3h"])
            return (run, bytes, link.counters.drops)
        }
        report.checks["bad link: the push delivers every visit"] = run.rows == visits
        add(
            "12a", "Bad link: push of \(visits) visits (\(bytes) bytes)", run: run, payload: bytes, drops: drops,
            shape: shape, into: &report)
    }

    /// 12b: `kotasync init` of a new replica from a master of `rows` rows.
    func initialize(rows: Int, shape: LinkEmulator.Shape, into report: inout Report) async throws {
        let master = merge.path("master-badlink-init.sqlite")
        try? FileManager.default.removeItem(atPath: master)
        let db = try RawDatabase(path: master)
        try db.execute("PRAGMA journal_mode = WAL")
        try db.execute(ClinicData.patientsDDL)
        try db.execute(ClinicData.visitsDDL)
        var rng = SeededGenerator(seed: 100)
        try db.execute("BEGIN")
        for _ in 0..<rows {
            try db.run(ClinicData.insertSQL(0), ClinicData.row(table: 0, &rng, clinic: "dinkes", patients: []))
        }
        try db.execute("COMMIT")
        let replica = merge.path("badlink-init.sqlite")
        try? FileManager.default.removeItem(atPath: replica)
        let (run, drops) = try await network.withServer(master: master) { url, token, _ in
            let link = try LinkEmulator(upstreamPort: url.port ?? 0)
            defer { link.stop() }
            let dinkes = try token("dinkes")
            link.setShape(shape)
            let run = try Self.client([
                "init", "--db", replica, "--server", link.url.absoluteString, "--token", dinkes, "--json",
                "--until-done", "--deadline", "3h",
            ])
            return (run, link.counters.drops)
        }
        report.checks["bad link: init downloads every row"] = run.rows == rows
        let payload = run.link.bytesReceived - run.link.bytesResent
        add(
            "12b", "Bad link: init of a new replica from \(rows) rows (\(payload) bytes of pages)", run: run,
            payload: payload, drops: drops, shape: shape, into: &report)
    }

    private func add(
        _ id: String, _ name: String, run: Run, payload: Int, drops: Int, shape: LinkEmulator.Shape,
        into report: inout Report
    ) {
        let ideal = Double(payload) / shape.bytesPerSecond
        let ratio = run.seconds / ideal
        report.add(
            Figure(
                id: id, name: name, value: ratio, unit: "× bytes÷bandwidth", target: "≤ 1.3×", met: ratio <= 1.3,
                note: String(
                    format:
                        "%.0f s for %d bytes at %.0f B/s (%.0f s ideal), %.0f ms round trip, a cut every %.0f s: %d cuts, %d resumes, %d bytes moved again (largest chunk %d B, largest page %d B); client CPU %.2f s",
                    run.seconds, payload, shape.bytesPerSecond, ideal, shape.oneWayDelay * 2000, shape.dropEvery ?? 0,
                    drops, run.link.resumes, run.link.bytesResent, run.link.largestChunk, run.link.largestPage,
                    run.cpu)))
    }

    /// Runs the `kotasync` beside this program with `arguments`; its wall time, the CPU seconds
    /// it used, and its JSON output. Fails unless it exits 0.
    static func client(_ arguments: [String]) throws -> Run {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            .deletingLastPathComponent().appendingPathComponent("kotasync")
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        let before = childrenCPU()
        let start = ContinuousClock.now
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let seconds = (ContinuousClock.now - start).seconds
        guard process.terminationStatus == 0 else {
            throw BenchError("kotasync \(arguments.first ?? "") failed: \(String(decoding: data, as: UTF8.self))")
        }
        let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        let link =
            (json["link"]).flatMap { try? JSONSerialization.data(withJSONObject: $0) }
            .flatMap { try? ProtocolJSON.decoder().decode(LinkStats.self, from: $0) } ?? LinkStats()
        let rows = (json["rows"] as? Int) ?? (json["pulled_rows"] as? Int) ?? 0
        return Run(seconds: seconds, cpu: childrenCPU() - before, rows: rows, link: link)
    }

    /// User and system CPU seconds of the children waited for so far.
    private static func childrenCPU() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_CHILDREN.rawValue, &usage)
        func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }
}
