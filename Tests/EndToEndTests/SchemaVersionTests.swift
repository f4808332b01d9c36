import Foundation
import GRDB
import KotaSyncCore
import Testing

/// Issue 16 with the real binaries: the Command Center raises the Binjai sample to schema version
/// 2 (patients gain a NOT NULL `bpjs_number` with a default, and a new `referrals` table) and
/// restarts the server; a clinic whose replica was made at version 1 keeps working and syncing,
/// beside a replica made at version 2, and no value is lost either way.
@Suite(.serialized)
struct SchemaVersionTests {
    /// The sample's config at version 2.
    static func version2(of config: URL) throws -> URL {
        var text = try String(contentsOf: config, encoding: .utf8)
        let patients = "        clinic_id    TEXT NOT NULL,\n        updated_at   TEXT\n      )\n"
        guard text.contains(patients) else { throw TestFailure("the sample's patients table changed") }
        text = text.replacingOccurrences(
            of: patients,
            with: "        clinic_id    TEXT NOT NULL,\n        updated_at   TEXT,\n"
                + "        bpjs_number  TEXT NOT NULL DEFAULT 'belum'\n      )\n")
        text = text.replacingOccurrences(of: "tables:\n", with: "schema_version: 2\ntables:\n")
        text += """

              - name: referrals
                ddl: "CREATE TABLE referrals (id TEXT PRIMARY KEY, patient_id TEXT, hospital TEXT)"
            migrations:
              - version: 2
                steps:
                  - add_column: {table: patients, column: bpjs_number}
                  - add_table: {table: referrals}

            """
        let url = config.deletingLastPathComponent().appendingPathComponent("kotasync-v2.yaml")
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    static func sqlite(_ db: String, _ sql: String) throws {
        let result = try run("/usr/bin/sqlite3", [db, sql])
        guard result.status == 0 else { throw TestFailure("sqlite3: \(result.stderr)") }
    }

    static func value(_ db: String, _ sql: String) throws -> String {
        try run("/usr/bin/sqlite3", [db, sql]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `kotasync init` of a clinic's replica at `db` through `server`.
    static func initialize(_ db: String, through server: ServerProcess) throws {
        let made = try run(
            "kotasync",
            [
                "init", "--db", db, "--server", server.url.absoluteString, "--token",
                try server.token(opd: "pkm-binjai-kota"),
            ])
        guard made.status == 0 else { throw TestFailure("init failed: \(made.stderr)") }
    }

    static func sync(_ db: String) throws {
        let result = try run("kotasync", ["sync", "--db", db])
        guard result.status == 0 else { throw TestFailure("kotasync sync failed: \(result.stderr)\(result.stdout)") }
    }

    @Test func aReplicaOfVersionOneKeepsSyncingAfterTheMasterMovesToVersionTwo() async throws {
        let dir = try makeTemporaryDirectory()
        let v1 = try sampleConfig(in: dir)
        let old = dir.appendingPathComponent("old.sqlite").path
        let siti = "0b6f2a8e-4c1d-4e0a-9d3b-2f6c1a7e5b01"
        try await offPool {
            let server = try ServerProcess(config: v1, directory: dir)
            defer { server.stop() }
            try Self.initialize(old, through: server)
        }
        // Offline at version 1: an edit and a new patient.
        try Self.sqlite(
            old,
            """
            UPDATE patients SET phone = '0811-2222' WHERE id = '\(siti)';
            INSERT INTO patients (id, nik, name, clinic_id) VALUES ('p-old', '1275010101010077', 'Pasien Lama', 'pkm-binjai-kota');
            """)

        let v2 = try Self.version2(of: v1)
        let new = dir.appendingPathComponent("new.sqlite").path
        let seen = try await offPool { () throws -> [String: String] in
            let server = try ServerProcess(config: v2, directory: dir)
            defer { server.stop() }
            try Self.initialize(new, through: server)
            // The version 2 replica has the new column and table, and writes both.
            try Self.sqlite(
                new,
                """
                INSERT INTO patients (id, nik, name, clinic_id, bpjs_number) VALUES ('p-new', '1275010101010078', 'Pasien Baru', 'pkm-binjai-kota', '0001234567890');
                INSERT INTO referrals VALUES ('r1', 'p-new', 'RSUD Djoelham');
                """)
            try Self.sync(new)

            // The version 1 replica syncs (the restarted server listens on another port here; in
            // the field its address stays): its changes go up, the other replica's rows come down
            // without the column and the table it does not have.
            try Self.sqlite(old, "UPDATE _ks_state SET value = '\(server.url.absoluteString)' WHERE key = 'server_url'")
            try Self.sync(old)
            // The version 2 replica gets the old replica's rows, its new patient with the default.
            try Self.sync(new)
            return [
                "old p-new": try Self.value(old, "SELECT name FROM patients WHERE id = 'p-new'"),
                "old referrals": try Self.value(old, "SELECT count(*) FROM sqlite_master WHERE name = 'referrals'"),
                "new siti phone": try Self.value(new, "SELECT phone FROM patients WHERE id = '\(siti)'"),
                "new p-old bpjs": try Self.value(new, "SELECT bpjs_number FROM patients WHERE id = 'p-old'"),
                "new r1": try Self.value(new, "SELECT hospital FROM referrals WHERE id = 'r1'"),
                "old status": try run("kotasync", ["status", "--db", old]).stdout,
                "new status": try run("kotasync", ["status", "--db", new]).stdout,
            ]
        }
        #expect(seen["old p-new"] == "Pasien Baru")
        #expect(seen["old referrals"] == "0")
        #expect(seen["new siti phone"] == "0811-2222")
        #expect(seen["new p-old bpjs"] == "belum")
        #expect(seen["new r1"] == "RSUD Djoelham")
        #expect(seen["old status"]?.contains("Schema version: 1") == true)
        #expect(seen["new status"]?.contains("Schema version: 2") == true)
        // Nothing waits to go up on either side.
        #expect(seen["old status"]?.contains("Pending changes: 0") == true, "\(seen["old status"] ?? "")")
        #expect(seen["new status"]?.contains("Pending changes: 0") == true, "\(seen["new status"] ?? "")")
    }
}
