import Foundation
import GRDB
import KotaSyncClient
import KotaSyncCore
import KotaSyncServer
import Testing

/// Resolving records, as `Protocol/http-api.md` documents it: the decision is a new change of the
/// master that every replica pulls, and the record keeps both sides and who decided.
///
/// These need `SQLiteMasterStore.resolveConflict`, which lands with the merge side of issue 4.
@Suite(.serialized)
struct ReviewResolveTests {
    static func phone(_ path: String) throws -> SQLValue {
        let queue = try DatabaseQueue(path: path)
        defer { try? queue.close() }
        return try queue.read { db in
            SQLValue(
                try DatabaseValue.fetchOne(
                    db, sql: "SELECT phone FROM patients WHERE id = ?", arguments: [ConflictScenario.siti]) ?? .null)
        }
    }

    @Test func aReviewerTakingTheLosingValueChangesTheMasterAndEveryReplica() async throws {
        try await InProcessServerTests.withServer { url, store, dir in
            let scenario = try await ConflictScenario.make(url: url, store: store, dir: dir)
            let a = scenario.replicas[0]
            let b = scenario.replicas[1]
            for replica in scenario.replicas { _ = try await Synchronizer(replica: replica).pull() }
            let record = try #require(
                try await store.reviewConflicts(ReviewFilter(table: "patients")).conflicts.first {
                    $0.column == "phone"
                })
            let master = dir.appendingPathComponent("master.sqlite").path
            #expect(try Self.phone(master) == record.winner?.value)
            let loserValue = try #require(record.loser?.value)
            let reviewer = try await store.createStaffToken(name: "Ani Lubis", role: .reviewer, expiresAt: nil)

            let response = try await resolve(
                url, id: record.id, ResolveRequest(take: .remote, note: "the clinic called"), token: reviewer.token)
            #expect(response.status == 200, "\(String(decoding: response.body, as: UTF8.self))")
            let resolved = try ProtocolJSON.decoder().decode(ConflictReport.self, from: response.body)
            #expect(resolved.id == record.id)
            #expect(resolved.status == "resolved")
            #expect(resolved.winner == record.winner && resolved.loser == record.loser, "both sides are kept")
            let resolution = try #require(resolved.resolution)
            #expect(resolution.take == .remote)
            #expect(resolution.by == "Ani Lubis")
            #expect(resolution.note == "the clinic called")
            #expect(try await store.reviewConflict(id: record.id) == resolved)
            #expect(try Self.phone(master) == loserValue)

            let again = try await resolve(url, id: record.id, ResolveRequest(take: .local), token: reviewer.token)
            #expect(again.status == 409)
            #expect(errorCode(again.body) == "already_resolved")
            #expect(try Self.phone(master) == loserValue, "a second decision changes nothing")

            for replica in [a, b] { _ = try await Synchronizer(replica: replica).sync() }
            #expect(try Self.phone(a.path) == loserValue)
            #expect(try Self.phone(b.path) == loserValue)

            // Each clinic's copy of the record was fetched again and now says resolved: the
            // loser's change stands, the former winner's was overridden by the reviewer.
            for replica in [a, b] {
                let stored = try #require(try replica.conflicts().first { $0.id == record.id })
                #expect(stored.status == "resolved")
                let outcome = ChangeOutcome.of(stored, for: replica.id)
                if replica.id == record.loser?.replicaId {
                    #expect(outcome == nil)
                } else {
                    #expect(outcome?.kind == .overridden)
                }
            }
        }
    }

    @Test func aReviewerKeepingTheMastersValueChangesNoValue() async throws {
        try await InProcessServerTests.withServer { url, store, dir in
            _ = try await ConflictScenario.make(url: url, store: store, dir: dir)
            let record = try #require(
                try await store.reviewConflicts(ReviewFilter(table: "villages")).conflicts.first)
            let master = dir.appendingPathComponent("master.sqlite").path
            let before = try snapshot(master, tables: ["villages", "patients"])
            let admin = try await store.createStaffToken(name: "Rudi", role: .admin, expiresAt: nil)
            let response = try await resolve(url, id: record.id, ResolveRequest(take: .local), token: admin.token)
            #expect(response.status == 200, "\(String(decoding: response.body, as: UTF8.self))")
            let resolved = try ProtocolJSON.decoder().decode(ConflictReport.self, from: response.body)
            #expect(resolved.status == "resolved")
            #expect(resolved.resolution?.take == .local)
            #expect(resolved.resolution?.by == "Rudi")
            #expect(try snapshot(master, tables: ["villages", "patients"]) == before)
        }
    }

    @Test func theCommandLineResolvesWithAMergedValueThatReachesBothClinics() throws {
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(config: try sampleConfig(in: dir), directory: dir)
        defer { server.stop() }
        let paths = try ReviewCommandLineTests.twoClinicsEditTheSamePhone(server)
        let record = try #require(
            try ProtocolJSON.decoder().decode(
                ConflictList.self, from: Data(try server.admin(["conflicts", "list", "--json"]).stdout.utf8)
            ).conflicts.first { $0.column == "phone" })

        let historyBefore = try Self.historyCount(server.database.path)
        let resolved = try server.admin([
            "conflicts", "resolve", String(record.id), "--take", "merged", "--set", "phone=0899-1234", "--note",
            "both numbers were old", "--by", "Budi", "--json",
        ])
        #expect(resolved.status == 0, "\(resolved.stderr)")
        let report = try ProtocolJSON.decoder().decode(ConflictReport.self, from: Data(resolved.stdout.utf8))
        #expect(report.status == "resolved")
        #expect(report.resolution?.take == .merged)
        #expect(report.resolution?.by == "Budi")
        #expect(report.resolution?.values == ["phone": .text("0899-1234")])
        #expect(try Self.phone(server.database.path) == .text("0899-1234"))

        let shown = try server.admin(["conflicts", "show", String(record.id)])
        #expect(shown.stdout.contains("resolution: take merged, by Budi"))
        let again = try server.admin(["conflicts", "resolve", String(record.id), "--take", "local"])
        #expect(again.status == 4)
        #expect(again.stderr.contains("[already_resolved]"))

        for path in paths {
            let synced = try run("kotasync", ["sync", "--db", path])
            #expect(synced.status == 0, "\(synced.stderr)")
            #expect(try Self.phone(path) == .text("0899-1234"))
            let listed = try run("kotasync", ["conflicts", "--db", path, "--json"])
            let view = try ProtocolJSON.decoder().decode(ConflictsView.self, from: Data(listed.stdout.utf8))
            #expect(view.conflicts.first { $0.id == record.id }?.status == "resolved")
            #expect(view.outcomes.first { $0.conflictId == record.id }?.kind == .overridden)
        }
        #expect(try Self.historyCount(server.database.path) > historyBefore, "the replaced value is in the history")
    }

    static func historyCount(_ path: String) throws -> Int {
        let queue = try DatabaseQueue(path: path)
        defer { try? queue.close() }
        return try queue.read { db in
            try Int.fetchOne(db, sql: "SELECT count(*) FROM _ks_history WHERE tbl = 'patients'") ?? 0
        }
    }
}

/// The end-to-end case with the real binaries: two clinics register the same NIK offline
/// and record a visit each for "their" patient; the second registration is quarantined; staff
/// merge the two records with the CLI; after the next sync both clinics hold one patient with
/// both visits, and the master's history keeps both originals.
@Suite(.serialized)
struct DuplicateRegistrationTests {
    static let nik = "1275019999990001"

    @Test func aDuplicateNIKIsQuarantinedAndMergedByStaffWithEveryVisitKept() throws {
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(config: try sampleConfig(in: dir), directory: dir)
        defer { server.stop() }
        let clinics = [("pkm-binjai-kota", "p-kota", "v-kota"), ("pkm-kebun-lada", "p-lada", "v-lada")]
        var paths: [String] = []
        for (i, (opd, patient, visit)) in clinics.enumerated() {
            let path = dir.appendingPathComponent("clinic\(i).sqlite").path
            let initialised = try run(
                "kotasync",
                ["init", "--db", path, "--server", server.url.absoluteString, "--token", try server.token(opd: opd)])
            try #require(initialised.status == 0, "init: \(initialised.stderr)")
            let registered = try run(
                "/usr/bin/sqlite3",
                [
                    path,
                    """
                    INSERT INTO patients (id, nik, name, clinic_id) VALUES ('\(patient)', '\(Self.nik)', 'Budi Santoso', '\(opd)');
                    INSERT INTO visits (id, patient_id, clinic_id, visit_date) VALUES ('\(visit)', '\(patient)', '\(opd)', '2026-11-2\(i)');
                    """,
                ])
            try #require(registered.status == 0, "sqlite3: \(registered.stderr)")
            paths.append(path)
        }
        for path in paths + paths {
            let synced = try run("kotasync", ["sync", "--db", path])
            #expect(synced.status == 0, "sync \(path): \(synced.stderr)")
        }

        let queued = try ProtocolJSON.decoder().decode(
            ConflictList.self,
            from: Data(
                try server.admin(["conflicts", "list", "--status", "open", "--table", "patients", "--json"]).stdout.utf8
            ))
        let quarantine = try #require(queued.conflicts.first { $0.kind == .unique })
        #expect(quarantine.held?.values["id"] == .text("p-lada"))
        #expect(quarantine.related == RowReference(table: "patients", primaryKey: [.text("p-kota")]))
        let shown = try server.admin(["conflicts", "show", String(quarantine.id)])
        #expect(shown.stdout.contains("collided with: patients ['p-kota']"), "\(shown.stdout)")
        #expect(shown.stdout.contains("nik = '\(Self.nik)'"), "\(shown.stdout)")

        let merged = try server.admin([
            "conflicts", "resolve", String(quarantine.id), "--take", "merged", "--set", "phone=0812-5555",
            "--by", "Ani Lubis", "--note", "same person, registered twice",
        ])
        #expect(merged.status == 0, "resolve: \(merged.stderr)")

        for path in paths + paths {
            let synced = try run("kotasync", ["sync", "--db", path])
            #expect(synced.status == 0, "sync \(path): \(synced.stderr)")
        }
        let tables = ["patients", "visits"]
        let master = try snapshot(server.database.path, tables: tables)
        for path in paths {
            #expect(try snapshot(path, tables: tables) == master, "\(path) equals the master")
            let budi = try rows(path, "SELECT id, phone FROM patients WHERE nik = '\(Self.nik)'")
            #expect(budi == [[.text("p-kota"), .text("0812-5555")]], "one patient, with the merged phone")
            let visits = try rows(
                path, "SELECT id, patient_id FROM visits WHERE id IN ('v-kota', 'v-lada') ORDER BY id")
            #expect(visits == [[.text("v-kota"), .text("p-kota")], [.text("v-lada"), .text("p-kota")]])
        }
        // Both originals stay in the master's history: the incoming row's values went there
        // when its key was closed.
        let history = try rows(
            server.database.path, "SELECT count(*) FROM _ks_history WHERE tbl = 'patients' AND pk = ?",
            [Data(PrimaryKeyCoding.encode([.text("p-lada")]))])
        #expect(history.first?.first.map { $0 != .integer(0) } == true)
        // ... and `kotasync-server history` shows them: the survivor's values before the merge,
        // and the second registration's values, replaced by its removal.
        let survivor = try server.admin(["history", "patients", "p-kota", "--json"])
        #expect(survivor.status == 0, "\(survivor.stderr)")
        let versions = try ProtocolJSON.decoder().decode([RowVersion].self, from: Data(survivor.stdout.utf8))
        #expect(versions.first?.opd == "master")
        #expect(versions.first?.values?["phone"] == .text("0812-5555"))
        #expect(versions.last?.opd == "pkm-binjai-kota")
        #expect(versions.last?.values?["phone"] == .null, "the first original")
        let removed = try server.admin(["history", "patients", "p-lada"])
        #expect(removed.stdout.contains("delete by master"), "\(removed.stdout)")
        #expect(removed.stdout.contains("clinic_id = 'pkm-kebun-lada'"), "the second original: \(removed.stdout)")
    }

    func rows(_ path: String, _ sql: String, _ arguments: [any DatabaseValueConvertible] = []) throws -> [[SQLValue]] {
        let queue = try DatabaseQueue(path: path)
        defer { try? queue.close() }
        return try queue.read { db in
            try Row.fetchAll(db, sql: sql, arguments: StatementArguments(arguments)).map {
                $0.databaseValues.map(SQLValue.init)
            }
        }
    }
}
