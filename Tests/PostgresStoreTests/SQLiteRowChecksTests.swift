import Foundation
import KotaSyncCore
import KotaSyncServer
import Testing

/// The PostgreSQL master judges the DDL's CHECK constraints with SQLite itself: a row is refused
/// exactly when the SQLite master would refuse it, and nothing else of the table (foreign keys,
/// UNIQUE indexes, rows written before) is judged there.
struct SQLiteRowChecksTests {
    static let yaml = """
        name: Test
        opds:
          - id: pkm-a
            name: Puskesmas A
        tables:
          - name: patients
            ddl: "CREATE TABLE patients (id TEXT PRIMARY KEY, nik TEXT UNIQUE, sex TEXT CHECK (sex IN ('L', 'P')), age INTEGER CHECK (age >= 0))"
          - name: visits
            ddl: "CREATE TABLE visits (id TEXT PRIMARY KEY, patient_id TEXT NOT NULL REFERENCES patients(id), weight REAL)"
        """

    @Test func aRowIsRefusedExactlyWhenItBreaksACheckConstraintOfItsTable() throws {
        let config = try ServerConfig.parse(yaml: Self.yaml, baseURL: FileManager.default.temporaryDirectory)
        let checks = try SQLiteRowChecks(tables: config.tables)
        let patients = try #require(config.table(named: "patients"))
        let visits = try #require(config.table(named: "visits"))
        #expect(!checks.isEmpty)

        try checks.check(patients, key: [.text("p1")], values: [.text("1275"), .text("P"), .integer(30)])
        // The same NIK again: the copy is empty and judges no UNIQUE index (the merge does).
        try checks.check(patients, key: [.text("p2")], values: [.text("1275"), .null, .null])
        let sex = #expect(throws: (any Error).self) {
            try checks.check(patients, key: [.text("p3")], values: [.null, .text("X"), .integer(1)])
        }
        #expect("\(sex.map { $0 } as Any)".contains("CHECK constraint failed"))
        #expect(throws: (any Error).self) {
            try checks.check(patients, key: [.text("p4")], values: [.null, .text("L"), .integer(-1)])
        }
        // A visit of a patient the master does not hold yet: foreign keys are the merge's.
        try checks.check(visits, key: [.text("v1")], values: [.text("nobody"), .real(3.5)])
    }
}
