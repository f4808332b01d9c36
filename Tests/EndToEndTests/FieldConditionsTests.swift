import Foundation
import GRDB
import KotaSyncCore
import Testing

/// Field conditions with the real binaries: changes carried on a USB stick both ways, watch mode,
/// one sync at a time per replica, and what `status` says about each record.
@Suite(.serialized)
struct FieldConditionsTests {
    static let replicated = ["villages", "patients", "visits", "diagnoses", "drug_stock"]
    static let siti = "0b6f2a8e-4c1d-4e0a-9d3b-2f6c1a7e5b01"
    static let kota = "pkm-binjai-kota"

    /// The master's tables and its merge bookkeeping, to show an import changed nothing.
    static func masterState(_ server: ServerProcess) throws -> [String: [[SQLValue]]] {
        try snapshot(
            server.database.path, tables: replicated + ["_ks_rows", "_ks_history", "_ks_changesets", "_ks_conflicts"])
    }

    /// Two replicas of an unscoped master: the offline clinic and a connected one.
    static func twoClinics(_ dir: URL, _ server: ServerProcess) throws -> (offline: String, online: String) {
        var paths: [String] = []
        for opd in [kota, "pkm-kebun-lada"] {
            let path = dir.appendingPathComponent("\(opd).sqlite").path
            let result = try run(
                "kotasync",
                ["init", "--db", path, "--server", server.url.absoluteString, "--token", try server.token(opd: opd)])
            try #require(result.status == 0, "init \(opd): \(result.stderr)")
            paths.append(path)
        }
        return (paths[0], paths[1])
    }

    static func records(_ db: String) throws -> RecordsView {
        let status = try run("kotasync", ["status", "--db", db, "--json"])
        return try ProtocolJSON.decoder().decode(RecordsView.self, from: Data(status.stdout.utf8))
    }

    @Test func changesCarriedOnAUSBStickMergeOnceAndTheReplicasConverge() throws {
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(config: try sampleConfig(in: dir), directory: dir)
        defer { server.stop() }
        let (offline, online) = try Self.twoClinics(dir, server)

        try run("/usr/bin/sqlite3", [offline, "UPDATE patients SET phone = '0811-7777' WHERE id = '\(Self.siti)'"])
        try run(
            "/usr/bin/sqlite3",
            [
                offline,
                "INSERT INTO drug_stock (clinic_id, drug_code, quantity) VALUES ('\(Self.kota)', 'PCT500', 120)",
            ])
        try run("/usr/bin/sqlite3", [online, "UPDATE villages SET name = 'Desa Online' WHERE code = '1275020003'"])
        #expect(try run("kotasync", ["sync", "--db", online]).status == 0)

        // Out: the clinic writes its changes to the stick; they stay pending, in the outbox.
        let stick = dir.appendingPathComponent("clinic-push.json").path
        let export = try run("kotasync", ["export", "--db", offline, "--out", stick])
        try #require(export.status == 0, "export: \(export.stderr)")
        #expect(try Self.records(offline).records.map(\.state).sorted() == ["sent", "sent"])

        // At the Command Center: the first import merges, the second changes nothing.
        let first = try server.admin(["import", stick])
        try #require(first.status == 0, "import: \(first.stderr)")
        let merged = try Self.masterState(server)
        let patient = merged["patients"]!.first { $0.first == .text(Self.siti) }!
        #expect(patient.contains(.text("0811-7777")))
        let again = try server.admin(["import", stick, "--reply", dir.appendingPathComponent("again.json").path])
        #expect(again.status == 0)
        #expect(again.stdout.contains("merged before"))
        #expect(try Self.masterState(server) == merged)

        // Back: the reply acknowledges the changes (once), the pull file brings the others'.
        let reply = stick + ".reply.json"
        let acknowledged = try run("kotasync", ["import", "--db", offline, reply, "--json"])
        try #require(acknowledged.status == 0, "import reply: \(acknowledged.stderr)")
        #expect(acknowledged.stdout.contains("\"acknowledged\" : 1"))
        let view = try Self.records(offline)
        #expect(view.pendingChanges == 0)
        #expect(view.records.map(\.state) == ["acknowledged", "acknowledged"])
        let replyAgain = try run("kotasync", ["import", "--db", offline, reply, "--json"])
        #expect(replyAgain.status == 0)
        #expect(replyAgain.stdout.contains("\"already_acknowledged\" : 1"))

        let cursor = try Self.records(offline).cursor
        let pullFile = dir.appendingPathComponent("clinic-pull.json").path
        let exported = try server.admin([
            "export", "--opd", Self.kota, "--since", String(cursor), "--out", pullFile,
        ])
        try #require(exported.status == 0, "server export: \(exported.stderr)")
        let applied = try run("kotasync", ["import", "--db", offline, pullFile])
        try #require(applied.status == 0, "import pull: \(applied.stderr)")
        let replicaAfter = try snapshot(offline, tables: Self.replicated)
        let pullAgain = try run("kotasync", ["import", "--db", offline, pullFile])
        #expect(pullAgain.status == 0)
        #expect(pullAgain.stdout.contains("applied before"))
        #expect(try snapshot(offline, tables: Self.replicated) == replicaAfter)

        #expect(try run("kotasync", ["sync", "--db", online]).status == 0)
        let master = try snapshot(server.database.path, tables: Self.replicated)
        #expect(try snapshot(offline, tables: Self.replicated) == master)
        #expect(try snapshot(online, tables: Self.replicated) == master)
    }

    @Test func anExportedChangesetPushedOverTheNetworkToo() throws {
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(config: try sampleConfig(in: dir), directory: dir)
        defer { server.stop() }
        let (offline, _) = try Self.twoClinics(dir, server)
        try run("/usr/bin/sqlite3", [offline, "UPDATE patients SET phone = '0811-8888' WHERE id = '\(Self.siti)'"])
        let stick = dir.appendingPathComponent("push.json").path
        try #require(try run("kotasync", ["export", "--db", offline, "--out", stick]).status == 0)
        #expect(try server.admin(["import", stick]).status == 0)
        let merged = try Self.masterState(server)

        // The link came back before the reply did: the push sends the same changeset, which the
        // server recognises; the late reply file then has nothing left to acknowledge.
        let push = try run("kotasync", ["push", "--db", offline, "--json"])
        try #require(push.status == 0, "push: \(push.stderr)")
        #expect(push.stdout.contains("\"replayed\" : 1"))
        #expect(try Self.masterState(server) == merged)
        let late = try run("kotasync", ["import", "--db", offline, stick + ".reply.json"])
        #expect(late.status == 0)
        #expect(late.stdout.contains("acknowledged before"))
    }

    @Test func theRunningServerKnowsAReplicaThatAnImportRegistered() throws {
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(config: try sampleConfig(in: dir), directory: dir)
        defer { server.stop() }
        let (offline, online) = try Self.twoClinics(dir, server)
        // Concurrent edits of one phone: the offline clinic's arrives by file, registering its
        // replica from another process; the online clinic's then merges in the running server.
        try run("/usr/bin/sqlite3", [offline, "UPDATE patients SET phone = '0811-1010' WHERE id = '\(Self.siti)'"])
        try run("/usr/bin/sqlite3", [online, "UPDATE patients SET phone = '0822-2020' WHERE id = '\(Self.siti)'"])
        let stick = dir.appendingPathComponent("push.json").path
        try #require(try run("kotasync", ["export", "--db", offline, "--out", stick]).status == 0)
        try #require(try server.admin(["import", stick]).status == 0)
        #expect(try run("kotasync", ["sync", "--db", online]).status == 0)

        let ids = try [offline, online].map { db in
            let status = try run("kotasync", ["status", "--db", db, "--json"])
            return try ProtocolJSON.decoder().decode(IdView.self, from: Data(status.stdout.utf8)).replicaId
        }
        let status = try run("kotasync", ["status", "--db", online, "--json"])
        let view = try ProtocolJSON.decoder().decode(StatusView.self, from: Data(status.stdout.utf8))
        let conflict = try #require(view.conflicts.first { $0.column == "phone" })
        // The tie-break and the record name the imported replica, not an unknown (zero) id.
        #expect(Set([conflict.winner?.replicaId, conflict.loser?.replicaId]) == Set(ids))

        // The losing clinic learns of it at its next sync (its outbox is answered from the
        // stored reply), and its status lists the record as conflicted.
        let loser = conflict.loser?.replicaId == ids[0] ? offline : online
        #expect(try run("kotasync", ["sync", "--db", loser]).status == 0)
        #expect(try Self.records(loser).records.contains { $0.state == "conflicted" && $0.table == "patients" })
    }

    @Test func aFileChangedOnTheWayOrMadeForAnotherClinicIsRefused() throws {
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(config: try sampleConfig(in: dir), directory: dir)
        defer { server.stop() }
        let (offline, online) = try Self.twoClinics(dir, server)
        try run("/usr/bin/sqlite3", [offline, "UPDATE patients SET phone = '0811-9999' WHERE id = '\(Self.siti)'"])
        let stick = dir.appendingPathComponent("push.json")
        try #require(try run("kotasync", ["export", "--db", offline, "--out", stick.path]).status == 0)
        let before = try Self.masterState(server)

        // Changed rows with a recomputed checksum: the authentication code no longer matches.
        var file = try TransferFile.read(try Data(contentsOf: stick))
        var body = try file.decodedBody()
        body.createdAt = "2020-01-01T00:00:00.000Z"
        let forged = try TransferFile.seal(body, keys: [(file.macs[0].tokenId, TransferFile.key(forToken: "guess"))])
        file.body = forged.body
        file.sha256 = forged.sha256
        let forgedURL = dir.appendingPathComponent("forged.json")
        try file.encoded().write(to: forgedURL)
        let refused = try server.admin(["import", forgedURL.path])
        #expect(refused.status == 4)
        #expect(refused.stderr.contains("invalid_transfer_file"))

        // A flipped byte: the integrity check.
        var damaged = try Data(contentsOf: stick)
        let offset = try #require(damaged.range(of: Data("\"body\" : \"".utf8))).upperBound + 10
        damaged[offset] = damaged[offset] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        let damagedURL = dir.appendingPathComponent("damaged.json")
        try damaged.write(to: damagedURL)
        #expect(try server.admin(["import", damagedURL.path]).status == 4)
        #expect(try Self.masterState(server) == before)

        // Merged changes for the other clinic are not this replica's to apply.
        let other = dir.appendingPathComponent("other.json").path
        #expect(try server.admin(["export", "--opd", "pkm-kebun-lada", "--since", "0", "--out", other]).status == 0)
        let wrong = try run("kotasync", ["import", "--db", offline, other])
        #expect(wrong.status == 7)
        #expect(wrong.stderr.contains("invalid_transfer_file"))
        // Nor is a file that starts after this replica's cursor.
        let cursor = try Self.records(online).cursor
        let ahead = dir.appendingPathComponent("ahead.json").path
        #expect(
            try server.admin(["export", "--opd", Self.kota, "--since", String(cursor + 1), "--out", ahead]).status == 0)
        let gap = try run("kotasync", ["import", "--db", offline, ahead])
        #expect(gap.status == 7)
        #expect(gap.stderr.contains("--since"))
    }

    @Test func watchModeSyncsLocalChangesKeepsTryingWhileTheServerIsDownAndHoldsTheLock() throws {
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(config: try sampleConfig(in: dir), directory: dir)
        defer { server.stop() }
        let (replica, _) = try Self.twoClinics(dir, server)
        let watch = try BackgroundProcess(
            "kotasync", ["sync", "--watch", "--interval", "1h", "--db", replica], directory: dir)
        defer { watch.kill() }
        try watch.waitForStderr(containing: "Watching", timeout: 30)

        // A second process on the same replica refuses at once.
        let second = try run("kotasync", ["push", "--db", replica])
        #expect(second.status == 6)
        #expect(second.stderr.contains("Another kotasync process"))

        // A local write reaches the master without waiting for the hour's interval.
        try run("/usr/bin/sqlite3", [replica, "UPDATE patients SET phone = '0811-5555' WHERE id = '\(Self.siti)'"])
        try waitUntil(timeout: 60) {
            try snapshot(server.database.path, tables: ["patients"])["patients"]!.contains {
                $0.first == .text(Self.siti) && $0.contains(.text("0811-5555"))
            }
        }

        // The server goes away: the watcher reports failures and keeps running.
        server.stop()
        try run("/usr/bin/sqlite3", [replica, "UPDATE patients SET phone = '0811-6666' WHERE id = '\(Self.siti)'"])
        try watch.waitForStderr(containing: "sync failed [server_unreachable]", timeout: 60)
        #expect(watch.isRunning)
        let status = try Self.records(replica)
        #expect(status.advice?.contains("kotasync export") == true)

        // SIGTERM stops it cleanly, and the lock goes with it.
        let code = try watch.terminate(timeout: 60)
        #expect(code == 0)
        #expect(try run("kotasync", ["push", "--db", replica]).status == 3)
    }

    @Test func aKilledSyncLeavesNoStaleLock() throws {
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(config: try sampleConfig(in: dir), directory: dir)
        defer { server.stop() }
        let (replica, _) = try Self.twoClinics(dir, server)
        let watch = try BackgroundProcess("kotasync", ["sync", "--watch", "--db", replica], directory: dir)
        try watch.waitForStderr(containing: "Watching", timeout: 30)
        #expect(try run("kotasync", ["pull", "--db", replica]).status == 6)
        watch.kill()
        #expect(try run("kotasync", ["pull", "--db", replica]).status == 0)
    }
}

/// The replica id of `kotasync status --json`.
struct IdView: Decodable {
    var replicaId: UUID
}

/// The parts of `kotasync status --json` these tests read.
struct RecordsView: Decodable {
    struct Record: Decodable {
        var table: String
        var state: String
    }

    var pendingChanges: Int
    var cursor: UInt64
    var records: [Record]
    var advice: String?
}

/// A program left running while a test talks to it; its stdout and stderr go to files.
final class BackgroundProcess: @unchecked Sendable {
    // Set up in init, then only read; tests use one from one task.
    let process = Process()
    let stdoutURL: URL
    let stderrURL: URL

    init(_ executable: String, _ arguments: [String], directory: URL) throws {
        let name = "\(executable)-\(UUID().uuidString.prefix(6))"
        stdoutURL = directory.appendingPathComponent("\(name).out")
        stderrURL = directory.appendingPathComponent("\(name).err")
        FileManager.default.createFile(atPath: stdoutURL.path, contents: nil)
        FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
        process.executableURL = binDirectory.appendingPathComponent(executable)
        process.arguments = arguments
        process.standardOutput = try FileHandle(forWritingTo: stdoutURL)
        process.standardError = try FileHandle(forWritingTo: stderrURL)
        try process.run()
    }

    var isRunning: Bool { process.isRunning }
    var stderr: String { (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? "" }
    var stdout: String { (try? String(contentsOf: stdoutURL, encoding: .utf8)) ?? "" }

    func waitForStderr(containing text: String, timeout: Double) throws {
        try waitUntil(timeout: timeout, "stderr to contain \(text); it has: \(stderr)") { self.stderr.contains(text) }
    }

    /// Sends SIGTERM and waits for the exit; returns the exit status.
    func terminate(timeout: Double) throws -> Int32 {
        process.terminate()
        try waitUntil(timeout: timeout, "the process to exit after SIGTERM") { !self.process.isRunning }
        return process.terminationStatus
    }

    /// SIGKILL, as a power cut or the OOM killer would.
    func kill() {
        process.killAndWait()
    }
}

/// Polls `condition` every 50 ms until it holds, failing after `timeout` seconds.
func waitUntil(timeout: Double, _ what: @autoclosure () -> String = "a condition", _ condition: () throws -> Bool)
    throws
{
    let deadline = Date().addingTimeInterval(timeout)
    while try !condition() {
        guard Date() < deadline else { throw TestFailure("timed out after \(timeout)s waiting for \(what())") }
        usleep(50_000)
    }
}
