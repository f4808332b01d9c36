import Foundation
import GRDB
import KotaSyncCore
import Testing

/// The whole system as an OPD uses it: the real `kotasync-server` and `kotasync` binaries, real
/// SQLite files, real HTTP on loopback, and writes from programs that know nothing of KotaSync.
@Suite(.serialized)
struct SyncEndToEndTests {
    static let replicated = ["villages", "patients", "visits", "diagnoses", "kinds"]

    /// A table with one column of each affinity and an untyped one, to carry every storage class.
    static let kindsTable = """

          - name: kinds
            ddl: |
              CREATE TABLE kinds (
                id TEXT PRIMARY KEY, i INTEGER, r REAL, t TEXT, b BLOB, anything
              )
        """

    @Test func threeReplicasConvergeAndTheSameColumnConflictIsRecordedWithBothValues() async throws {
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(config: try sampleConfig(in: dir, extraTables: Self.kindsTable), directory: dir)
        defer { server.stop() }
        let clinics = ["pkm-binjai-kota", "pkm-kebun-lada", "dinkes"]
        var replicas: [String] = []
        for (i, opd) in clinics.enumerated() {
            let db = dir.appendingPathComponent("replica\(i).sqlite").path
            let result = try run(
                "kotasync",
                ["init", "--db", db, "--server", server.url.absoluteString, "--token", try server.token(opd: opd)])
            #expect(result.status == 0, "init failed: \(result.stderr)")
            replicas.append(db)
        }
        let siti = "0b6f2a8e-4c1d-4e0a-9d3b-2f6c1a7e5b01"

        // Replica 0: the sqlite3 shell, as an operator would.
        let shell = try run(
            "/usr/bin/sqlite3",
            [
                replicas[0],
                """
                UPDATE patients SET phone = '0811-1111' WHERE id = '\(siti)';
                INSERT INTO kinds VALUES ('k1', 9223372036854775807, 0.1, '007', x'', x'00ff00');
                INSERT INTO visits (id, patient_id, clinic_id, visit_date, weight_kg) VALUES
                  ('v-shell', '\(siti)', 'pkm-binjai-kota', '2026-11-28', 61.25);
                """,
            ])
        #expect(shell.status == 0, "sqlite3 failed: \(shell.stderr)")

        // Replica 1: Python's sqlite3 module, as the OPD's own app might; it edits the same column
        // of the same patient (a conflict) and a different column (no conflict).
        let python = try run(
            "/usr/bin/env",
            [
                "python3", "-c",
                """
                import sqlite3, sys
                c = sqlite3.connect(sys.argv[1])
                c.execute("UPDATE patients SET phone = '0822-2222', village_code = '1275020003' WHERE id = ?", (sys.argv[2],))
                c.execute("INSERT INTO kinds VALUES ('k2', -1, 2.5, '1e3', 'teks', -0.0)")
                c.commit()
                """,
                replicas[1], siti,
            ])
        #expect(python.status == 0, "python3 failed: \(python.stderr)")

        // Replica 2: an app using SQLite directly (here GRDB), deleting a diagnosis.
        let queue = try DatabaseQueue(path: replicas[2])
        try await queue.write { db in
            try db.execute(sql: "DELETE FROM diagnoses WHERE line = 1")
            try db.execute(sql: "UPDATE villages SET name = 'Kebun Lada Baru' WHERE code = '1275020003'")
        }
        try queue.close()

        for _ in 0..<2 {
            for db in replicas {
                let result = try run("kotasync", ["sync", "--db", db])
                #expect(result.status == 0, "sync failed: \(result.stderr)")
            }
        }

        let master = try snapshot(server.database.path, tables: Self.replicated)
        for db in replicas {
            #expect(try snapshot(db, tables: Self.replicated) == master, "\(db) differs from the master")
            let status = try run("kotasync", ["status", "--db", db, "--json"])
            let decoded = try ProtocolJSON.decoder().decode(StatusView.self, from: Data(status.stdout.utf8))
            #expect(decoded.pendingChanges == 0)
        }
        let patients = master["patients"]!.first { $0.first == .text(siti) }!
        #expect(patients.contains(.text("1275020003")), "the non-conflicting column edit must survive")
        #expect(master["diagnoses"]!.isEmpty)
        #expect(
            master["kinds"]!.contains([
                .text("k1"), .integer(.max), .real(0.1), .text("007"), .blob([]), .blob([0, 255, 0]),
            ]))
        #expect(
            master["kinds"]!.contains([.text("k2"), .integer(-1), .real(2.5), .text("1e3"), .text("teks"), .real(-0.0)])
        )
        #expect(master["visits"]!.contains { $0.first == .text("v-shell") && $0.contains(.real(61.25)) })

        // The conflict: both phone values, the base, the two replicas.
        let loser = try run("kotasync", ["status", "--db", replicas[0], "--json"])
        let view = try ProtocolJSON.decoder().decode(StatusView.self, from: Data(loser.stdout.utf8))
        let conflict = try #require(view.conflicts.first { $0.column == "phone" })
        #expect(conflict.kind == .updateUpdate)
        #expect(Set([conflict.winner?.value, conflict.loser?.value]) == [.text("0811-1111"), .text("0822-2222")])
        #expect(conflict.base == .text("081260001111"))
        #expect(Set([conflict.winner?.opd, conflict.loser?.opd]) == ["pkm-binjai-kota", "pkm-kebun-lada"])
        let winning = patients.contains((conflict.winner?.value)!)
        #expect(winning, "the master holds the winner's value")
        let stored = try DatabaseQueue(path: server.database.path).read { db in
            try Row.fetchAll(db, sql: "SELECT loser_value, winner_value FROM _ks_conflicts WHERE col = 'phone'")
        }
        #expect(stored.count == 1)
    }

    /// A clinic registers a patient, records a visit and its diagnosis, then corrects the patient
    /// and the visit: by last edit the diagnosis comes first and the patient before the visit.
    /// The push sends parents first, so the server merges all three and holds nothing.
    @Test func rowsCreatedTogetherOfflineMergeWithoutWaitingForTheirParents() async throws {
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(config: try sampleConfig(in: dir), directory: dir)
        defer { server.stop() }
        let db = dir.appendingPathComponent("replica.sqlite").path
        let initialised = try run(
            "kotasync",
            [
                "init", "--db", db, "--server", server.url.absoluteString, "--token",
                try server.token(opd: "pkm-binjai-kota"),
            ])
        #expect(initialised.status == 0, "init failed: \(initialised.stderr)")
        let shell = try run(
            "/usr/bin/sqlite3",
            [
                db,
                """
                INSERT INTO patients (id, name, clinic_id) VALUES ('p-new', 'Rina', 'pkm-binjai-kota');
                INSERT INTO visits (id, patient_id, clinic_id, visit_date) VALUES
                  ('v-new', 'p-new', 'pkm-binjai-kota', '2026-11-29');
                INSERT INTO diagnoses (visit_id, line, clinic_id, icd10) VALUES ('v-new', 1, 'pkm-binjai-kota', 'J06.9');
                UPDATE patients SET phone = '0813-0000' WHERE id = 'p-new';
                UPDATE visits SET notes = 'kontrol 3 hari' WHERE id = 'v-new';
                """,
            ])
        #expect(shell.status == 0, "sqlite3 failed: \(shell.stderr)")
        let synced = try run("kotasync", ["sync", "--db", db])
        #expect(synced.status == 0, "sync failed: \(synced.stderr)")

        let master = try snapshot(server.database.path, tables: ["patients", "visits", "diagnoses", "_ks_conflicts"])
        #expect(master["patients"]!.contains { $0.first == .text("p-new") && $0.contains(.text("0813-0000")) })
        #expect(master["visits"]!.contains { $0.first == .text("v-new") && $0.contains(.text("kontrol 3 hari")) })
        #expect(master["diagnoses"]!.contains { $0.first == .text("v-new") && $0.contains(.text("J06.9")) })
        #expect(master["_ks_conflicts"]!.isEmpty, "nothing was held: \(master["_ks_conflicts"]!)")
    }

    @Test func aPullTakesAColleaguesEditWhileALocalEditOfTheSameRowWaits() async throws {
        // Device A edits a patient's name offline; device B of the same clinic edits the
        // patient's phone and syncs. A's pull must take the phone and keep the name pending
        // (it failed on `patients.name NOT NULL`: the pull's upsert left the name out).
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(config: try sampleConfig(in: dir), directory: dir)
        defer { server.stop() }
        let siti = "0b6f2a8e-4c1d-4e0a-9d3b-2f6c1a7e5b01"
        var replicas: [String] = []
        for name in ["a", "b"] {
            let db = dir.appendingPathComponent("\(name).sqlite").path
            let result = try run(
                "kotasync",
                [
                    "init", "--db", db, "--server", server.url.absoluteString, "--token",
                    try server.token(opd: "pkm-binjai-kota"),
                ])
            #expect(result.status == 0, "init failed: \(result.stderr)")
            replicas.append(db)
        }
        let edits = [
            (replicas[0], "UPDATE patients SET name = 'Siti Aminah Lubis' WHERE id = '\(siti)'"),
            (replicas[1], "UPDATE patients SET phone = '0812-7777' WHERE id = '\(siti)'"),
        ]
        for (db, sql) in edits {
            let shell = try run("/usr/bin/sqlite3", [db, sql])
            #expect(shell.status == 0, "sqlite3 failed: \(shell.stderr)")
        }
        let synced = try run("kotasync", ["sync", "--db", replicas[1]])
        #expect(synced.status == 0, "sync failed: \(synced.stderr)")

        let pulled = try run("kotasync", ["pull", "--db", replicas[0]])
        #expect(pulled.status == 0, "pull failed: \(pulled.stderr)")
        let query = "SELECT name, phone FROM patients WHERE id = '\(siti)'"
        let local = try run("/usr/bin/sqlite3", [replicas[0], query])
        #expect(local.stdout == "Siti Aminah Lubis|0812-7777\n")
        // A's name edit still goes up, and both edits end on the master.
        let pushed = try run("kotasync", ["sync", "--db", replicas[0]])
        #expect(pushed.status == 0, "sync failed: \(pushed.stderr)")
        let master = try run("/usr/bin/sqlite3", [server.database.path, query])
        #expect(master.stdout == "Siti Aminah Lubis|0812-7777\n")
    }

    @Test func anAcknowledgedPushRetriedAfterALostReplyChangesNothing() async throws {
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(config: try sampleConfig(in: dir), directory: dir)
        defer { server.stop() }
        let token = try server.token(opd: "pkm-binjai-kota")
        let changeset = Changeset(
            kind: .push, id: UUID(), replicaID: UUID(), firstSequence: 1, lastSequence: 1,
            tables: [Changeset.Table(name: "villages", primaryKey: ["code"], columns: ["name", "district"])],
            rows: [
                Changeset.Row(
                    table: 0, operation: .upsert, version: 0, stamp: HLC(milliseconds: 1_764_000_000_000, counter: 0),
                    primaryKey: [.text("9999")],
                    columns: [.init(column: 0, value: .text("Desa Uji")), .init(column: 1, value: .text("Uji"))])
            ])
        let body = ChangesetCodec.encode(changeset)
        let first = try await http("POST", server.url.appendingPathComponent("v1/push"), token: token, body: body)
        #expect(first.status == 200)
        let before = try snapshot(server.database.path, tables: ["villages", "_ks_rows", "_ks_history"])
        let second = try await http("POST", server.url.appendingPathComponent("v1/push"), token: token, body: body)
        #expect(second.status == 200)
        #expect(second.body == first.body)
        #expect(second.headers["kotasync-replay"] == "true")
        #expect(try snapshot(server.database.path, tables: ["villages", "_ks_rows", "_ks_history"]) == before)
    }
}

/// The parts of `kotasync status --json` the tests read.
struct StatusView: Decodable {
    var pendingChanges: Int
    var conflicts: [ConflictReport]
}
