import Foundation
import GRDB
import KotaSyncCore
import Testing

/// The sample's sync rules as shipped, with the real binaries: each clinic holds only its own
/// patients, visits and diagnoses, the health office holds all of its clinics', villages are
/// read-only on replicas, and a clinic that tries to write another clinic's rows — from the
/// sqlite3 shell, as anyone could — is refused row by row while the rest of its work syncs.
@Suite(.serialized)
struct ScopedSyncTests {
    static let siti = "0b6f2a8e-4c1d-4e0a-9d3b-2f6c1a7e5b01"
    static let budi = "0b6f2a8e-4c1d-4e0a-9d3b-2f6c1a7e5b02"
    static let scoped = ["patients", "visits", "diagnoses", "drug_stock"]

    static func rows(_ path: String, _ sql: String) throws -> [[SQLValue]] {
        let queue = try DatabaseQueue(path: path)
        defer { try? queue.close() }
        return try queue.read { db in try Row.fetchAll(db, sql: sql).map { $0.databaseValues.map(SQLValue.init) } }
    }

    /// The master's rows of `table` that an OPD whose subtree is `clinics` may hold.
    static func masterRows(_ master: String, _ table: String, clinics: [String]) throws -> [[SQLValue]] {
        let list = clinics.map { "'\($0)'" }.joined(separator: ", ")
        return try rows(master, "SELECT * FROM \(table) WHERE clinic_id IN (\(list)) ORDER BY 1, 2")
    }

    @Test func eachClinicHoldsOnlyItsOwnRowsAndCannotWriteAnotherClinicsOrReferenceData() throws {
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(config: try sampleConfig(in: dir, scoped: true), directory: dir)
        defer { server.stop() }
        let opds = ["pkm-binjai-kota", "pkm-kebun-lada", "dinkes"]
        var paths: [String: String] = [:]
        for opd in opds {
            let path = dir.appendingPathComponent("\(opd).sqlite").path
            let result = try run(
                "kotasync",
                ["init", "--db", path, "--server", server.url.absoluteString, "--token", try server.token(opd: opd)])
            try #require(result.status == 0, "init \(opd): \(result.stderr)")
            paths[opd] = path
        }
        let kota = paths["pkm-binjai-kota"]!
        #expect(try Self.rows(kota, "SELECT id FROM patients") == [[.text(Self.siti)]])
        #expect(try Self.rows(paths["pkm-kebun-lada"]!, "SELECT id FROM patients") == [[.text(Self.budi)]])
        #expect(try Self.rows(paths["dinkes"]!, "SELECT count(*) FROM patients") == [[.integer(3)]])
        #expect(try Self.rows(kota, "SELECT count(*) FROM villages") == [[.integer(20)]])

        // The clinic's operator, in the sqlite3 shell: its own new patient (allowed), and three
        // writes it may not make.
        let shell = try run(
            "/usr/bin/sqlite3",
            [
                kota,
                """
                INSERT INTO patients (id, nik, name, clinic_id) VALUES ('p-own', '1275010101010001', 'Ani', 'pkm-binjai-kota');
                INSERT INTO patients (id, nik, name, clinic_id) VALUES ('p-foreign', '1275010101010002', 'Ina', 'pkm-kebun-lada');
                UPDATE patients SET clinic_id = 'pkm-tanah-tinggi' WHERE id = '\(Self.siti)';
                UPDATE villages SET name = 'Kartini Baru' WHERE code = '1275010001';
                """,
            ])
        try #require(shell.status == 0, "sqlite3: \(shell.stderr)")
        for _ in 0..<2 {
            for opd in opds {
                let sync = try run("kotasync", ["sync", "--db", paths[opd]!])
                #expect(sync.status == 0, "sync \(opd): \(sync.stdout) \(sync.stderr)")
            }
        }
        let master = server.database.path
        #expect(
            try Self.rows(master, "SELECT clinic_id FROM patients WHERE id = 'p-own'") == [[.text("pkm-binjai-kota")]])
        #expect(try Self.rows(master, "SELECT count(*) FROM patients WHERE id = 'p-foreign'") == [[.integer(0)]])
        #expect(
            try Self.rows(master, "SELECT clinic_id FROM patients WHERE id = '\(Self.siti)'") == [
                [.text("pkm-binjai-kota")]
            ])
        #expect(try Self.rows(master, "SELECT name FROM villages WHERE code = '1275010001'") == [[.text("Kartini")]])

        // The refused rows are undone on the clinic's replica, and it says why.
        #expect(try Self.rows(kota, "SELECT count(*) FROM patients WHERE id = 'p-foreign'") == [[.integer(0)]])
        #expect(
            try Self.rows(kota, "SELECT clinic_id FROM patients WHERE id = '\(Self.siti)'") == [
                [.text("pkm-binjai-kota")]
            ])
        #expect(try Self.rows(kota, "SELECT name FROM villages WHERE code = '1275010001'") == [[.text("Kartini")]])
        let status = try run("kotasync", ["status", "--db", kota])
        #expect(status.stdout.contains("Rows the server refused: 3"), "\(status.stdout)")
        #expect(status.stdout.contains("read_only_table") && status.stdout.contains("out_of_scope"))

        // Every replica holds exactly the master's rows of its scope.
        let subtrees = [
            "pkm-binjai-kota": ["pkm-binjai-kota"], "pkm-kebun-lada": ["pkm-kebun-lada"],
            "dinkes": ["dinkes", "pkm-binjai-kota", "pkm-kebun-lada", "pkm-tanah-tinggi"],
        ]
        for opd in opds {
            for table in Self.scoped {
                #expect(
                    try Self.rows(paths[opd]!, "SELECT * FROM \(table) ORDER BY 1, 2")
                        == Self.masterRows(master, table, clinics: subtrees[opd]!),
                    "\(opd) \(table)")
            }
            #expect(try snapshot(paths[opd]!, tables: ["villages"]) == snapshot(master, tables: ["villages"]))
        }
        #expect(
            try Self.rows(paths["pkm-kebun-lada"]!, "SELECT count(*) FROM patients WHERE id = 'p-own'") == [
                [.integer(0)]
            ])
        #expect(try Self.rows(paths["dinkes"]!, "SELECT count(*) FROM patients WHERE id = 'p-own'") == [[.integer(1)]])
    }
}
