import Foundation
import KotaSyncCore
import Testing

@testable import KotaSyncClient

/// The order of rows in a push: grouped by table, parents before children, each table's rows in
/// the order of their last change.
struct PushOrderTests {
    @Test func aTableComesAfterTheTablesItRefersTo() {
        let ranks = ChangeLog.pushRanks(
            tables: ["diagnoses", "visits", "notes", "patients"],
            parents: ["diagnoses": ["visits"], "visits": ["patients"], "notes": []])
        #expect(ranks == ["notes": 0, "patients": 1, "visits": 2, "diagnoses": 3])
    }

    @Test func schemaOrderDecidesBetweenUnrelatedTablesAndOnACycle() {
        #expect(ChangeLog.pushRanks(tables: ["b", "a"], parents: [:]) == ["b": 0, "a": 1])
        // A table referring to itself, or to a table that is not replicated, waits for nothing.
        #expect(
            ChangeLog.pushRanks(tables: ["staff", "units"], parents: ["staff": ["staff", "offices"]])
                == ["staff": 0, "units": 1])
        // a → b → a: neither can wait for the other, so the first of them in schema order goes
        // first; c, listed before both and waiting only for a, comes right after a.
        #expect(
            ChangeLog.pushRanks(tables: ["c", "b", "a"], parents: ["a": ["b"], "b": ["a"], "c": ["a"]])
                == ["b": 0, "a": 1, "c": 2])
        #expect(
            ChangeLog.pushRanks(tables: ["c", "a", "b"], parents: ["a": ["b"], "b": ["a"], "c": ["a"]])
                == ["a": 0, "c": 1, "b": 2])
    }

    @Test func rowsAreGroupedByTableAndKeepTheirOrderWithinATable() {
        let rows: [(table: String, lastSequence: Int64)] = [
            ("visits", 1), ("patients", 2), ("visits", 3), ("patients", 4), ("other", 5),
        ]
        let ordered = ChangeLog.pushOrder(rows, ranks: ["patients": 0, "visits": 1]) { $0 }
        #expect(ordered.map(\.table) == ["patients", "patients", "visits", "visits", "other"])
        #expect(ordered.map(\.lastSequence) == [2, 4, 1, 3, 5])
    }

    /// The schema lists the child first; a visit created before its patient was last edited still
    /// goes after the patient, so the server never holds it waiting for a parent in the same push.
    @Test func aPushSendsParentsFirstWhateverTheSchemaOrderAndTheOrderOfEdits() throws {
        let schema = SchemaDocument(
            server: "test", opd: "pkm-test",
            tables: [
                try table(
                    "visits", "CREATE TABLE visits (id TEXT PRIMARY KEY, patient_id TEXT REFERENCES patients(id))"),
                try table("patients", "CREATE TABLE patients (id TEXT PRIMARY KEY, name TEXT)"),
            ])
        let path = try makeTemporaryDirectory().appendingPathComponent("replica.sqlite").path
        try Replica.create(at: path, schema: schema, serverURL: URL(string: "http://127.0.0.1:9")!, token: "t")
        let replica = try Replica(path: path)
        try sqlite3Shell(
            path,
            """
            INSERT INTO patients VALUES ('p1', 'Siti');
            INSERT INTO visits VALUES ('v1', 'p1');
            INSERT INTO patients VALUES ('p2', 'Budi');
            INSERT INTO visits VALUES ('v2', 'p2');
            UPDATE patients SET name = 'Siti Aminah' WHERE id = 'p1';
            """)
        let push = try #require(try nextPush(replica))
        #expect(push.tables.map(\.name) == ["patients", "visits"])
        #expect(push.rows.map { push.tables[$0.table].name } == ["patients", "patients", "visits", "visits"])
        #expect(push.rows.map(\.primaryKey) == [[.text("p2")], [.text("p1")], [.text("v1")], [.text("v2")]])
        // Each stamp comes from its own row's changes, ticked in the order they were made: the
        // visits sent after both patients keep the earlier stamps they were written at.
        let stamp = Dictionary(uniqueKeysWithValues: push.rows.map { ($0.primaryKey, $0.stamp) })
        #expect(
            [stamp[[.text("v1")]]!, stamp[[.text("p2")]]!, stamp[[.text("v2")]]!, stamp[[.text("p1")]]!]
                == push.rows.map(\.stamp).sorted())
    }
}
