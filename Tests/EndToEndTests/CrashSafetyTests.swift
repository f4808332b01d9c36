import Foundation
import GRDB
import KotaSyncCore
import Testing

/// `kill -9` of the real binaries at random points, over many seeded cycles: of the client in
/// the middle of pushes and pulls, and of the server in the middle of merges. After every kill:
/// nothing the client saw acknowledged is missing from the master, `PRAGMA integrity_check` is
/// ok on every database, and at the end every replica equals the master.
///
/// Pushes are split into changesets of at most 120 rows and pulls into pages of 100, so a kill
/// lands between acknowledgements and between pages as well as inside them. The delay before
/// each kill is drawn from the time an uninterrupted sync took on this machine.
///
/// They hold the test process's threads while they wait for the killed programs, and on two
/// cores that starves the time-limited tests running beside them; so they run on their own:
/// `KOTASYNC_CRASH_TESTS=1 swift test --filter CrashSafetyTests` (as `.ci/run` does after the
/// main run).
@Suite(.serialized, .enabled(if: ProcessInfo.processInfo.environment["KOTASYNC_CRASH_TESTS"] != nil))
struct CrashSafetyTests {
    static let notesTable = """

          - name: field_notes
            ddl: |
              CREATE TABLE field_notes (
                id TEXT PRIMARY KEY, n INTEGER, body TEXT
              )
        """
    static let compared = ["villages", "patients", "visits", "diagnoses", "drug_stock", "field_notes"]

    /// The sample configuration with the notes table and small pushes and pull pages.
    static func config(in dir: URL) throws -> URL {
        let url = try sampleConfig(in: dir, extraTables: notesTable)
        var text = try String(contentsOf: url, encoding: .utf8)
        text = text.replacingOccurrences(of: "max_rows: 200000", with: "max_rows: 120")
        text = text.replacingOccurrences(of: "max_pull_page: 5000", with: "max_pull_page: 100")
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    @Test func killingTheClientMidPushOrMidPullLosesNothingAcknowledged() throws {
        var rng = SeededGenerator(seed: 0x6B6F_7461)
        let dir = try makeTemporaryDirectory()
        let server = try KillableServer(config: try Self.config(in: dir), directory: dir)
        defer { server.kill() }
        let writer = try server.replica("pkm-binjai-kota", at: dir.appendingPathComponent("writer.sqlite").path)
        let reader = try server.replica("pkm-kebun-lada", at: dir.appendingPathComponent("reader.sqlite").path)
        var notes = NoteWriter()

        // One uninterrupted sync, to learn how long one takes here.
        try notes.write(writer, rng: &rng, inserts: 600)
        let started = Date()
        try #require(try run("kotasync", ["sync", "--db", writer]).status == 0)
        let span = max(Date().timeIntervalSince(started), 0.2)

        var interrupted = 0
        for cycle in 0..<10 {
            try notes.write(writer, rng: &rng, inserts: 400)
            let push = try BackgroundProcess("kotasync", ["sync", "--db", writer], directory: dir)
            usleep(UInt32(Double.random(in: 0...span, using: &rng) * 1_000_000))
            interrupted += push.isRunning ? 1 : 0
            push.kill()
            try Self.checkAcknowledgedChangesAreOnTheMaster(writer, server.database, cycle: cycle)
            try Self.checkIntegrity(writer)

            let pull = try BackgroundProcess("kotasync", ["pull", "--db", reader], directory: dir)
            usleep(UInt32(Double.random(in: 0...span, using: &rng) * 1_000_000))
            interrupted += pull.isRunning ? 1 : 0
            pull.kill()
            try Self.checkIntegrity(reader)
        }
        try Self.checkIntegrity(server.database)
        try Self.checkConvergence([writer, reader], master: server.database)
        print("CrashSafetyTests: \(interrupted) of 20 client runs were killed mid-way (uninterrupted sync: \(span)s)")
    }

    @Test func killingTheServerMidMergeLosesNothingAcknowledged() throws {
        var rng = SeededGenerator(seed: 0x6D61_7374)
        let dir = try makeTemporaryDirectory()
        let server = try KillableServer(config: try Self.config(in: dir), directory: dir)
        defer { server.kill() }
        let writer = try server.replica("pkm-binjai-kota", at: dir.appendingPathComponent("writer.sqlite").path)
        let reader = try server.replica("dinkes", at: dir.appendingPathComponent("reader.sqlite").path)
        var notes = NoteWriter()

        try notes.write(writer, rng: &rng, inserts: 600)
        let started = Date()
        try #require(try run("kotasync", ["push", "--db", writer]).status == 0)
        let span = max(Date().timeIntervalSince(started), 0.2)

        var interrupted = 0
        for cycle in 0..<8 {
            try notes.write(writer, rng: &rng, inserts: 400)
            let push = try BackgroundProcess("kotasync", ["push", "--db", writer], directory: dir)
            usleep(UInt32(Double.random(in: 0...span, using: &rng) * 1_000_000))
            interrupted += push.isRunning ? 1 : 0
            server.kill()
            try waitUntil(timeout: 120, "the client to give up after the server died") { !push.isRunning }
            try Self.checkIntegrity(server.database)
            try Self.checkIntegrity(writer)
            try server.restart()
            try Self.checkAcknowledgedChangesAreOnTheMaster(writer, server.database, cycle: cycle)
            // Now and then a replica pulls while the master is recovering its pushes.
            if cycle % 2 == 0 { #expect(try run("kotasync", ["pull", "--db", reader]).status == 0) }
        }
        try Self.checkConvergence([writer, reader], master: server.database)
        print(
            "CrashSafetyTests: the server was killed during \(interrupted) of 8 pushes (uninterrupted push: \(span)s)")
    }

    /// Every note whose change left the replica's log (the server acknowledged it) has its local
    /// value on the master, and every note the master has is either on the replica or pending.
    static func checkAcknowledgedChangesAreOnTheMaster(_ replica: String, _ master: String, cycle: Int) throws {
        let pending = Set(
            try read(replica, "SELECT DISTINCT k0 FROM _ks_log WHERE op <> 0 AND tbl = 'field_notes'").map { $0[0] })
        let local = try notes(replica)
        let merged = try notes(master)
        var lost: [String] = []
        for (id, row) in local where !pending.contains(id) && merged[id] != row {
            lost.append("\(id): replica \(row), master \(merged[id].map { "\($0)" } ?? "missing")")
        }
        for id in merged.keys where local[id] == nil && !pending.contains(id) {
            lost.append("\(id): deleted on the replica and acknowledged, still on the master")
        }
        #expect(
            lost.isEmpty, "cycle \(cycle): \(lost.count) acknowledged change(s) not on the master: \(lost.prefix(3))")
    }

    static func checkIntegrity(_ path: String) throws {
        let result = try read(path, "PRAGMA integrity_check")
        #expect(result == [[.text("ok")]], "\(path): \(result)")
    }

    /// Syncs every replica until nothing is pending, then compares each with the master.
    static func checkConvergence(_ replicas: [String], master: String) throws {
        for _ in 0..<2 {
            for replica in replicas {
                let sync = try run("kotasync", ["sync", "--db", replica])
                #expect(sync.status == 0, "sync \(replica): \(sync.stderr)")
            }
        }
        let expected = try snapshot(master, tables: compared)
        for replica in replicas {
            #expect(try snapshot(replica, tables: compared) == expected, "\(replica) differs from the master")
            #expect(try read(replica, "SELECT count(*) FROM _ks_log WHERE op <> 0") == [[.integer(0)]])
        }
    }

    static func read(_ path: String, _ sql: String) throws -> [[SQLValue]] {
        let queue = try DatabaseQueue(path: path)
        defer { try? queue.close() }
        return try queue.read { db in try Row.fetchAll(db, sql: sql).map { $0.databaseValues.map(SQLValue.init) } }
    }

    static func notes(_ path: String) throws -> [SQLValue: [SQLValue]] {
        var out: [SQLValue: [SQLValue]] = [:]
        for row in try read(path, "SELECT id, n, body FROM field_notes") { out[row[0]] = row }
        return out
    }
}

/// Writes field notes on a replica as an app would: new notes, edits and deletions of earlier
/// ones, in one transaction per batch.
struct NoteWriter {
    private var ids: [String] = []
    private var next = 0

    mutating func write(_ path: String, rng: inout SeededGenerator, inserts: Int) throws {
        let queue = try DatabaseQueue(path: path)
        defer { try? queue.close() }
        let letters = Array("abcdefghijklmnopqrstuvwxyz ")
        try queue.write { db in
            for _ in 0..<inserts {
                let id = "note-\(next)"
                next += 1
                let body = String((0..<160).map { _ in letters[Int.random(in: 0..<letters.count, using: &rng)] })
                try db.execute(
                    sql: "INSERT INTO field_notes (id, n, body) VALUES (?, ?, ?)",
                    arguments: [id, Int.random(in: 0...1_000_000, using: &rng), body])
                ids.append(id)
            }
            for _ in 0..<(inserts / 6) where !ids.isEmpty {
                let id = ids[Int.random(in: 0..<ids.count, using: &rng)]
                try db.execute(
                    sql: "UPDATE field_notes SET n = ? WHERE id = ?",
                    arguments: [Int.random(in: 0...1_000_000, using: &rng), id])
            }
            for _ in 0..<(inserts / 20) where !ids.isEmpty {
                let index = Int.random(in: 0..<ids.count, using: &rng)
                try db.execute(sql: "DELETE FROM field_notes WHERE id = ?", arguments: [ids[index]])
                ids.remove(at: index)
            }
        }
    }
}

/// SplitMix64: the same seed draws the same cycles on every run.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A `kotasync-server` that can be killed with SIGKILL and started again on the same port and
/// master database, so replicas keep their server address.
final class KillableServer: @unchecked Sendable {
    // Used from one test task only; `process` is replaced by restart().
    private var process: Process
    let config: URL
    let database: String
    let url: URL

    init(config: URL, directory: URL) throws {
        self.config = config
        database = directory.appendingPathComponent("master.sqlite").path
        (process, url) = try Self.start(config: config, database: database, port: 0)
    }

    private static func start(config: URL, database: String, port: Int) throws -> (Process, URL) {
        let process = Process()
        process.executableURL = binDirectory.appendingPathComponent("kotasync-server")
        process.arguments = [
            "serve", "--config", config.path, "--db", database, "--port", String(port), "--log-level", "error",
        ]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.standardError
        try process.run()
        var buffer = ""
        while !buffer.contains("\n") {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            buffer += String(decoding: chunk, as: UTF8.self)
        }
        guard let line = buffer.split(separator: "\n").first, let range = line.range(of: "http://") else {
            process.terminate()
            throw TestFailure("kotasync-server did not start; it printed: \(buffer)")
        }
        return (process, URL(string: String(line[range.lowerBound...]))!)
    }

    /// Starts the server again on its port after ``kill()``.
    func restart() throws {
        let port = url.port ?? 0
        var lastError: (any Error)?
        // The old socket may linger for a moment after the kill.
        for _ in 0..<50 {
            do {
                (process, _) = try Self.start(config: config, database: database, port: port)
                return
            } catch {
                lastError = error
                usleep(100_000)
            }
        }
        throw lastError!
    }

    func kill() {
        process.killAndWait()
    }

    /// A new replica of `opd` at `path`.
    func replica(_ opd: String, at path: String) throws -> String {
        let token = try run(
            "kotasync-server", ["token", "create", "--config", config.path, "--db", database, "--opd", opd])
        try #require(token.status == 0, "token: \(token.stderr)")
        let result = try run(
            "kotasync",
            [
                "init", "--db", path, "--server", url.absoluteString, "--token",
                token.stdout.trimmingCharacters(in: .whitespacesAndNewlines),
            ])
        try #require(result.status == 0, "init \(opd): \(result.stderr)")
        return path
    }
}
