import Foundation
import GRDB
import KotaSyncClient
import KotaSyncCore
import Testing

/// The review queue from the command lines, with the real binaries: `kotasync-server conflicts`
/// on the master, `kotasync conflicts` and `status` on a replica.
@Suite(.serialized)
struct ReviewCommandLineTests {
    static let siti = ConflictScenario.siti

    /// Two clinics change Siti's phone offline and sync with the real `kotasync`; returns the
    /// replicas' paths (pkm-binjai-kota, pkm-kebun-lada).
    static func twoClinicsEditTheSamePhone(_ server: ServerProcess) throws -> [String] {
        var paths: [String] = []
        for (i, (opd, phone)) in [("pkm-binjai-kota", "0811-1111"), ("pkm-kebun-lada", "0822-2222")].enumerated() {
            let path = server.directory.appendingPathComponent("clinic\(i).sqlite").path
            let initialised = try run(
                "kotasync",
                ["init", "--db", path, "--server", server.url.absoluteString, "--token", try server.token(opd: opd)])
            try #require(initialised.status == 0, "init: \(initialised.stderr)")
            let edit = try run(
                "/usr/bin/sqlite3", [path, "UPDATE patients SET phone = '\(phone)' WHERE id = '\(siti)'"])
            try #require(edit.status == 0, "sqlite3: \(edit.stderr)")
            paths.append(path)
        }
        for path in paths + paths {
            let synced = try run("kotasync", ["sync", "--db", path])
            try #require(synced.status == 0, "sync: \(synced.stderr)")
        }
        return paths
    }

    @Test func listAndShowPrintExactlyTheReviewAPIsJSON() async throws {
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(config: try sampleConfig(in: dir), directory: dir)
        defer { server.stop() }
        _ = try Self.twoClinicsEditTheSamePhone(server)
        let viewer = try server.staffToken("Ani Lubis", role: "viewer")

        let listed = try server.admin(["conflicts", "list", "--json"])
        #expect(listed.status == 0, "\(listed.stderr)")
        let api = try await http("GET", server.url.appendingPathComponent("v1/review/conflicts"), token: viewer)
        #expect(api.status == 200)
        #expect(listed.stdout == String(decoding: api.body, as: UTF8.self) + "\n")
        let list = try ProtocolJSON.decoder().decode(ConflictList.self, from: Data(listed.stdout.utf8))
        let record = try #require(list.conflicts.first { $0.column == "phone" })
        #expect(Set([record.winner?.value, record.loser?.value]) == [.text("0811-1111"), .text("0822-2222")])

        let filtered = try server.admin(["conflicts", "list", "--json", "--table", "villages"])
        #expect(filtered.stdout == #"{"conflicts":[]}"# + "\n")
        let byOPD = try server.admin(["conflicts", "list", "--json", "--opd", "pkm-kebun-lada", "--limit", "1"])
        let page = try ProtocolJSON.decoder().decode(ConflictList.self, from: Data(byOPD.stdout.utf8))
        #expect(page.conflicts.map(\.id) == [list.conflicts[0].id])

        let shown = try server.admin(["conflicts", "show", String(record.id), "--json"])
        #expect(shown.status == 0, "\(shown.stderr)")
        let one = try await http(
            "GET", server.url.appendingPathComponent("v1/review/conflicts/\(record.id)"), token: viewer)
        #expect(shown.stdout == String(decoding: one.body, as: UTF8.self) + "\n")
    }

    @Test func listAndShowReadWellForAPerson() throws {
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(config: try sampleConfig(in: dir), directory: dir)
        defer { server.stop() }
        _ = try Self.twoClinicsEditTheSamePhone(server)
        let record = try #require(
            try ProtocolJSON.decoder().decode(
                ConflictList.self, from: Data(try server.admin(["conflicts", "list", "--json"]).stdout.utf8)
            ).conflicts.first { $0.column == "phone" })

        let table = try server.admin(["conflicts", "list"])
        #expect(table.status == 0)
        let lines = table.stdout.split(separator: "\n")
        #expect(lines.first?.hasPrefix("ID") == true)
        let row = try #require(lines.first { $0.hasPrefix("\(record.id) ") })
        for text in [
            record.status, "update_update", "patients", "phone", "lww", "'0811-1111'", "'0822-2222'",
            "pkm-binjai-kota", "pkm-kebun-lada", record.decidedAt,
        ] {
            #expect(row.contains(text), "the row shows \(text): \(row)")
        }

        let shown = try server.admin(["conflicts", "show", String(record.id)])
        #expect(shown.status == 0)
        let winner = try #require(record.winner, "staff are told both sides")
        let loser = try #require(record.loser)
        for text in [
            "Conflict \(record.id): update_update on patients.phone", "base:      '081260001111'",
            "local  (winner, the master's value): \(winner.value!)",
            "remote (loser):                     \(loser.value!)",
            "replica \(winner.replicaId.uuidString)", "replica \(loser.replicaId.uuidString)",
            "stamp \(loser.stamp)",
        ] {
            #expect(shown.stdout.contains(text), "show prints \(text):\n\(shown.stdout)")
        }
    }

    @Test func theCommandsExitWithTheDocumentedStatus() throws {
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(config: try sampleConfig(in: dir), directory: dir)
        defer { server.stop() }
        _ = try Self.twoClinicsEditTheSamePhone(server)
        let id = try #require(
            try ProtocolJSON.decoder().decode(
                ConflictList.self, from: Data(try server.admin(["conflicts", "list", "--json"]).stdout.utf8)
            ).conflicts.first?.id)
        let before = try snapshot(server.database.path, tables: ["patients", "_ks_conflicts"])

        let missing = try server.admin(["conflicts", "show", "999999"])
        #expect(missing.status == 4)
        #expect(missing.stderr.contains("[not_found]"))
        let missingResolve = try server.admin(["conflicts", "resolve", "999999", "--take", "local"])
        #expect(missingResolve.status == 4)
        #expect(missingResolve.stderr.contains("[not_found]"))

        for arguments in [
            ["conflicts", "list", "--status", "bogus"],
            ["conflicts", "list", "--limit", "0"],
            ["conflicts", "show"],
            ["conflicts", "resolve", String(id)],
            ["conflicts", "resolve", String(id), "--take", "both"],
            ["conflicts", "resolve", String(id), "--take", "merged", "--set", "phone"],
            ["conflicts", "resolve", String(id), "--take", "merged", "--set", "no_such_column=1"],
            ["conflicts", "resolve", String(id), "--take", "merged", "--set", "phone=1", "--set", "phone=2"],
            ["token", "create"],
            ["token", "create", "--opd", "dinkes", "--staff", "Ani"],
            ["token", "create", "--staff", "Ani"],
            ["token", "create", "--staff", "Ani", "--role", "device"],
            ["token", "create", "--opd", "dinkes", "--role", "viewer"],
        ] {
            let result = try server.admin(arguments)
            #expect(result.status == 2, "\(arguments.joined(separator: " ")): \(result.stderr)")
            #expect(!result.stderr.isEmpty)
        }
        #expect(try run("kotasync-server", ["conflicts", "list", "--config", "/nonexistent.yaml"]).status == 2)
        #expect(try snapshot(server.database.path, tables: ["patients", "_ks_conflicts"]) == before)
    }

    @Test func aStaffTokenFromTheCommandLineOpensTheReviewAPIOnly() async throws {
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(config: try sampleConfig(in: dir), directory: dir)
        defer { server.stop() }
        let viewer = try server.staffToken("Ani Lubis", role: "viewer")
        let review = try await http("GET", server.url.appendingPathComponent("v1/review/conflicts"), token: viewer)
        #expect(review.status == 200)
        let pull = try await http("GET", server.url.appendingPathComponent("v1/pull"), token: viewer)
        #expect(pull.status == 403)
        let device = try server.token(opd: "dinkes")
        let refused = try await http("GET", server.url.appendingPathComponent("v1/review/conflicts"), token: device)
        #expect(refused.status == 403)
        // A staff member cannot make a replica: init pulls.
        let initialised = try run(
            "kotasync",
            [
                "init", "--db", dir.appendingPathComponent("r.sqlite").path, "--server", server.url.absoluteString,
                "--token", viewer,
            ])
        #expect(initialised.status == 4)
        #expect(initialised.stderr.contains("[forbidden]"))
    }

    @Test func aClinicSeesItsConflictsAndWhatBecameOfItsChange() throws {
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(config: try sampleConfig(in: dir), directory: dir)
        defer { server.stop() }
        let paths = try Self.twoClinicsEditTheSamePhone(server)

        var records: [ConflictReport] = []
        var replicaIDs: [UUID] = []
        for path in paths {
            let listed = try run("kotasync", ["conflicts", "--db", path, "--json"])
            #expect(listed.status == 0, "\(listed.stderr)")
            let view = try ProtocolJSON.decoder().decode(ConflictsView.self, from: Data(listed.stdout.utf8))
            let record = try #require(view.conflicts.first { $0.column == "phone" })
            #expect(Set([record.winner?.value, record.loser?.value]) == [.text("0811-1111"), .text("0822-2222")])
            #expect(record.base == .text("081260001111"))
            records.append(record)
            replicaIDs.append(view.replicaId)
        }
        #expect(records[0].id == records[1].id, "both clinics know the same record")
        let record = records[0]
        let loser = try #require(record.loser.flatMap { replicaIDs.firstIndex(of: $0.replicaId) })
        let winner = 1 - loser
        #expect(replicaIDs[winner] == record.winner?.replicaId)

        // The loser is told its change did not stand, and why; the winner is told nothing.
        let loserStatus = try ProtocolJSON.decoder().decode(
            StatusCounts.self, from: Data(try run("kotasync", ["status", "--db", paths[loser], "--json"]).stdout.utf8))
        let outcome = try #require(loserStatus.outcomes.first { $0.conflictId == record.id })
        #expect([ChangeOutcome.Kind.overridden, .awaitingReview].contains(outcome.kind))
        #expect(loserStatus.outcomeCounts.overridden + loserStatus.outcomeCounts.awaitingReview == 1)
        let winnerStatus = try ProtocolJSON.decoder().decode(
            StatusCounts.self, from: Data(try run("kotasync", ["status", "--db", paths[winner], "--json"]).stdout.utf8))
        #expect(winnerStatus.outcomes.isEmpty)
        #expect(winnerStatus.outcomeCounts == ChangeOutcome.Counts([]))

        let text = try run("kotasync", ["conflicts", "--db", paths[loser]])
        #expect(text.status == 0)
        for part in ["#\(record.id) update_update on patients.phone", "'0811-1111'", "'0822-2222'", "your change: "] {
            #expect(text.stdout.contains(part), "kotasync conflicts prints \(part):\n\(text.stdout)")
        }
        let status = try run("kotasync", ["status", "--db", paths[loser]])
        #expect(status.stdout.contains("Your changes: "))
        #expect(status.stdout.contains("\(outcome.kind.rawValue): \(outcome.why)"))
    }
}

/// `kotasync conflicts --json`.
struct ConflictsView: Decodable {
    var replicaId: UUID
    var conflicts: [ConflictReport]
    var outcomes: [ChangeOutcome]
}

/// The outcome parts of `kotasync status --json`.
struct StatusCounts: Decodable {
    var outcomes: [ChangeOutcome]
    var outcomeCounts: ChangeOutcome.Counts
}
