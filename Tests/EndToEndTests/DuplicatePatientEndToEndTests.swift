import Foundation
import GRDB
import KotaSyncCore
import Testing

/// Issue 4's story with the real binaries: two clinics register the same NIK offline and each
/// records a visit for "their" patient; both sync; the second patient is quarantined; staff merge
/// the two with the CLI; after the next sync both replicas hold one patient with both visits, and
/// the master's history shows both originals.
@Suite(.serialized)
struct DuplicatePatientEndToEndTests {
    static let nik = "1275014101900007"

    static func sql(_ db: String, _ statements: String) throws -> String {
        let result = try run("/usr/bin/sqlite3", [db, statements])
        guard result.status == 0 else { throw TestFailure("sqlite3 failed: \(result.stderr)") }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func twoClinicsRegisterTheSameNIKAndStaffMergeThem() async throws {
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(config: try sampleConfig(in: dir), directory: dir)
        defer { server.stop() }
        let admin = ["--config", server.config.path, "--db", server.database.path]
        var replicas: [String] = []
        for opd in ["pkm-binjai-kota", "pkm-kebun-lada"] {
            let db = dir.appendingPathComponent("\(opd).sqlite").path
            let result = try run(
                "kotasync",
                ["init", "--db", db, "--server", server.url.absoluteString, "--token", try server.token(opd: opd)])
            #expect(result.status == 0, "init failed: \(result.stderr)")
            replicas.append(db)
        }
        // Offline, each clinic registers the patient and records a visit.
        for (i, db) in replicas.enumerated() {
            let clinic = i == 0 ? "pkm-binjai-kota" : "pkm-kebun-lada"
            _ = try Self.sql(
                db,
                """
                INSERT INTO patients (id, nik, name, birth_date, sex, clinic_id)
                  VALUES ('p-\(i)', '\(Self.nik)', '\(i == 0 ? "Nur Aisyah" : "Nurul Aisyah")', '1990-01-01', 'P', '\(clinic)');
                INSERT INTO visits (id, patient_id, clinic_id, visit_date, complaint)
                  VALUES ('v-\(i)', 'p-\(i)', '\(clinic)', '2026-11-2\(i)', 'kontrol');
                """)
        }
        for db in replicas {
            let sync = try run("kotasync", ["sync", "--db", db])
            #expect(sync.status == 0, "sync failed: \(sync.stdout) \(sync.stderr)")
        }
        // The second patient is quarantined, its visit held; nothing else was blocked.
        let list = try run("kotasync-server", ["conflicts", "list", "--status", "open", "--json"] + admin)
        #expect(list.status == 0, "\(list.stderr)")
        let open = try ProtocolJSON.decoder().decode(ConflictList.self, from: Data(list.stdout.utf8)).conflicts
        let quarantined = try #require(open.first { $0.kind == .unique }, "\(list.stdout)")
        #expect(quarantined.table == "patients")
        #expect(quarantined.primaryKey == [.text("p-1")])
        #expect(quarantined.related?.primaryKey == [.text("p-0")])
        #expect(quarantined.held?.values["name"] == .text("Nurul Aisyah"))
        let clinicView = try run("kotasync", ["conflicts", "--db", replicas[1], "--json"])
        #expect(clinicView.status == 0)
        #expect(clinicView.stdout.contains("\"unique\""), "the clinic sees its quarantined patient: \(clinicView.stdout)")

        // Staff merge the two, keeping the second clinic's spelling of the name.
        let resolve = try run(
            "kotasync-server",
            ["conflicts", "resolve", String(quarantined.id), "--take", "merged", "--set", "name=Nurul Aisyah",
                "--note", "same person, same NIK"] + admin)
        #expect(resolve.status == 0, "resolve failed: \(resolve.stdout) \(resolve.stderr)")

        for _ in 0..<2 {
            for db in replicas {
                let sync = try run("kotasync", ["sync", "--db", db])
                #expect(sync.status == 0, "sync failed: \(sync.stdout) \(sync.stderr)")
            }
        }
        for db in replicas {
            #expect(try Self.sql(db, "SELECT id || '|' || name FROM patients WHERE nik = '\(Self.nik)'") == "p-0|Nurul Aisyah")
            #expect(
                try Self.sql(db, "SELECT group_concat(id || '>' || patient_id, ',') FROM (SELECT * FROM visits WHERE id LIKE 'v-_' ORDER BY id)")
                    == "v-0>p-0,v-1>p-0")
            #expect(try Self.sql(db, "PRAGMA integrity_check") == "ok")
        }
        // The master's history shows both originals.
        let master = server.database.path
        #expect(try Self.sql(master, "SELECT count(*) FROM patients WHERE nik = '\(Self.nik)'") == "1")
        let shown = try run("kotasync-server", ["conflicts", "show", String(quarantined.id), "--json"] + admin)
        let record = try ProtocolJSON.decoder().decode(ConflictReport.self, from: Data(shown.stdout.utf8))
        #expect(record.status == "resolved")
        #expect(record.resolution?.take == .merged)
        #expect(record.held?.values["name"] == .text("Nurul Aisyah"), "the second original")
        #expect(record.winner.value == .text(Self.nik))
        let history = try run("kotasync-server", ["history", "patients", "p-0", "--json"] + admin)
        #expect(history.status == 0, "\(history.stderr)")
        #expect(history.stdout.contains("Nur Aisyah"), "the first original: \(history.stdout)")
        let removed = try run("kotasync-server", ["history", "patients", "p-1", "--json"] + admin)
        #expect(removed.stdout.contains("Nurul Aisyah"), "the second original: \(removed.stdout)")
    }
}
