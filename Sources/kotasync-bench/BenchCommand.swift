import ArgumentParser
import Foundation
import KotaSyncCore
import KotaSyncServer

/// `kotasync-bench`: where KotaSync stands against SQLite's session extension on this machine,
/// measured in one run. Build in release mode for numbers that mean anything:
/// `swift run -c release kotasync-bench`.
@main
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kotasync-bench",
        abstract: "Benchmark KotaSync against SQLite's session extension and a plain upsert, in one run.",
        discussion: "Prints a Markdown table (or JSON with --json). Exits non-zero if a correctness check fails.")

    @Option(help: "Replicas making offline changes.") var replicas = 20
    @Option(help: "Offline operations per replica.") var ops = 5_000
    @Option(help: "Operations per local transaction.") var batch = 100
    @Option(help: "Patients seeded in the master.") var patients = 10_000
    @Option(help: "Visits seeded in the master.") var visits = 20_000
    @Option(help: "Shared hot rows per table that replicas collide on.") var hotSet = 200
    @Option(help: "Seed of the deterministic workload.") var seed: UInt64 = 2026
    @Option(help: "Rows in the master for the bootstrap figure.") var bootstrapRows = 1_000_000
    @Option(help: "Concurrent replicas for the small-push figure.") var smallPushReplicas = 50
    @Option(help: "Pushes per replica in the small-push figure.") var smallPushes = 20
    @Option(help: "Uncompressed megabytes of the one big changeset for the memory figure.") var bigChangesetMB = 50
    @Option(
        help:
            "Figures to skip: network, bootstrap, small-pushes, memory, bad-link-push, bad-link-init (comma-separated)."
    ) var skip: String = ""
    @Option(help: "Directory for the databases (default: a new temporary one, removed afterwards).") var workDir:
        String?
    @Flag(help: "Print JSON instead of Markdown.") var json = false
    @Flag(
        help: """
            Measure only figure 12, the bad link: a push of --bad-link-visits visits and an init of             --bad-link-init-rows rows over an emulated village link (64 kbit/s, 300 ms round trip, a cut             every 30 s). Takes about half an hour at the default sizes.
            """)
    var badLink = false
    @Option(help: "Visits of the bad-link push.") var badLinkVisits = 30_000
    @Option(help: "Rows of the bad-link init.") var badLinkInitRows = 100_000
    @Option(
        help: ArgumentHelp(
            "A PostgreSQL server (postgresql://USER@HOST:PORT/DB) on which USER may create databases: figures 4, 7, 9, 10 and 11 are measured on a PostgreSQL master there too (4pg, 7pg, 9pg, 10pg, 11pg), each in a database the bench creates and drops, and small pushes through three servers on one master (10pg×3).",
            discussion: "The password from KOTASYNC_MASTER_PASSWORD_FILE or PGPASSWORD."))
    var master: String?

    func run() async throws {
        let shape = WorkloadShape(
            patients: patients, visits: visits, replicas: replicas, ops: ops, batch: batch, hotSet: hotSet, seed: seed)
        let directory = URL(
            fileURLWithPath: workDir ?? NSTemporaryDirectory() + "kotasync-bench-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { if workDir == nil { try? FileManager.default.removeItem(at: directory) } }
        let skipped = Set(skip.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })

        var report = Report(
            machine: machineDescription(), command: CommandLine.arguments.joined(separator: " "),
            shape: [
                "replicas": replicas, "ops": ops, "batch": batch, "patients": patients, "visits": visits,
                "hot_set": hotSet,
                "seed": Int(seed),
            ])
        let config = try benchConfig(replicas: max(replicas, smallPushReplicas), directory: directory)
        let workload = Workload(shape: shape)
        var postgres: MergeFigures.Postgres?
        if let master {
            postgres = MergeFigures.Postgres(
                server: try PostgresLocation(parsing: master),
                password: try MasterLocation.password(file: nil, environment: ProcessInfo.processInfo.environment))
        }
        let merge = MergeFigures(workload: workload, directory: directory, config: config, postgres: postgres)
        progress("seeding the master and bootstrapping a replica template")
        try await merge.prepare()
        if !badLink {
            progress("capture, encode, merge, baselines, client apply")
            try await merge.run(into: &report)
        }

        let network = NetworkFigures(merge: merge, config: config)
        if badLink {
            let figures = BadLinkFigures(network: network)
            if !skipped.contains("bad-link-push") {
                progress("bad link: push of \(badLinkVisits) visits")
                try await figures.push(visits: badLinkVisits, shape: BadLinkFigures.village, into: &report)
            }
            if !skipped.contains("bad-link-init") {
                progress("bad link: init from \(badLinkInitRows) rows")
                try await figures.initialize(rows: badLinkInitRows, shape: BadLinkFigures.village, into: &report)
            }
        }
        // The network figures on the SQLite master, then (with --master) each again at once on a
        // PostgreSQL master of its own, compared with the SQLite figure of the same run.
        let sites: [MasterSite] = [.sqlite] + (postgres.map { [.postgres($0)] } ?? [])
        func onEachMaster(
            lowerIsBetter: Bool = false, _ figure: (MasterSite, inout Report) async throws -> Figure
        ) async throws {
            var sqlite: Figure?
            for site in sites {
                if case .postgres = site { progress("the same on a PostgreSQL master") }
                let measured = try await figure(site, &report)
                report.add(sqlite.map { measured.compared(with: $0, lowerIsBetter: lowerIsBetter) } ?? measured)
                if sqlite == nil { sqlite = measured }
            }
        }
        if !badLink, !skipped.contains("network") {
            progress("end to end over loopback HTTP")
            try await onEachMaster(lowerIsBetter: true) { try await network.endToEnd(on: $0, into: &$1) }
        }
        if !badLink, !skipped.contains("bootstrap") {
            progress("bootstrap of a new replica from \(bootstrapRows) rows")
            try await onEachMaster(lowerIsBetter: true) {
                try await network.bootstrap(rows: bootstrapRows, on: $0, into: &$1)
            }
        }
        if !badLink, !skipped.contains("small-pushes") {
            progress("small pushes from \(smallPushReplicas) concurrent replicas")
            try await onEachMaster {
                try await network.smallPushes(
                    replicas: smallPushReplicas, pushes: smallPushes, on: $0, into: &$1)
            }
            if let postgres {
                progress("small pushes from \(smallPushReplicas) concurrent replicas through three servers")
                // No nginx: each device is given one of the servers, in turn, as nginx would spread them.
                let three = try await network.smallPushes(
                    replicas: smallPushReplicas, pushes: smallPushes, on: .postgres(postgres), servers: 3,
                    into: &report)
                let sqlite = report.figures.last { $0.id == "10" }
                report.add(sqlite.map { three.compared(with: $0) } ?? three)
            }
        }
        if !badLink, !skipped.contains("memory") {
            progress("server memory while merging a \(bigChangesetMB) MB changeset")
            try await onEachMaster(lowerIsBetter: true) {
                try await network.bigChangesetMemory(megabytes: bigChangesetMB, on: $0, into: &$1)
            }
        }

        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(report.markdown)
        }
        if report.checks.values.contains(false) { throw ExitCode(1) }
    }

    func progress(_ text: String) {
        FileHandle.standardError.write(Data("kotasync-bench: \(text)…\n".utf8))
    }

    /// The server configuration for the benchmark schema, with limits that admit its largest changeset.
    func benchConfig(replicas: Int, directory: URL) throws -> ServerConfig {
        let opds = (0...replicas).map { i in
            i == 0
                ? "  - id: dinkes\n    name: Dinas Kesehatan"
                : String(format: "  - id: clinic-%02d\n    name: Puskesmas %02d", i, i)
        }
        let yaml = """
            name: KotaSync benchmark
            opds:
            \(opds.joined(separator: "\n"))
            limits:
              max_body_bytes: 268435456
              max_uncompressed_bytes: 268435456
              max_rows: 5000000
              max_pull_page: 5000
            tables:
              - name: patients
                ddl: "\(ClinicData.patientsDDL)"
              - name: visits
                ddl: "\(ClinicData.visitsDDL)"
            """
        try yaml.write(to: directory.appendingPathComponent("bench.yaml"), atomically: true, encoding: .utf8)
        return try ServerConfig.parse(yaml: yaml, baseURL: directory)
    }
}
