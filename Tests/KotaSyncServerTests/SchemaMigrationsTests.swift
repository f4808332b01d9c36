import Foundation
import KotaSyncCore
import Testing

@testable import KotaSyncServer

/// Issue 16: the config's `schema_version`, `min_client_schema` and `migrations`, judged when the
/// server loads it, and every version's tables derived from the newest by undoing the steps.
struct SchemaMigrationsTests {
    /// Binjai-like tables at version 3, after: v2 adds `patients.bpjs_number`, renames
    /// `visits.complaint` to `chief_complaint` and adds `referrals`; v3 drops `patients.phone`
    /// and adds an index on `visits(visit_date)`.
    static let v3 = """
        name: Test
        schema_version: 3
        min_client_schema: 2
        opds:
          - id: pkm-a
            name: Puskesmas A
        tables:
          - name: patients
            ddl: "CREATE TABLE patients (id TEXT PRIMARY KEY, nik TEXT UNIQUE, name TEXT NOT NULL DEFAULT '', bpjs_number TEXT)"
          - name: visits
            ddl: "CREATE TABLE visits (id TEXT PRIMARY KEY, patient_id TEXT REFERENCES patients(id), visit_date TEXT, chief_complaint TEXT); CREATE INDEX visits_by_date ON visits(visit_date)"
          - name: referrals
            ddl: "CREATE TABLE referrals (id TEXT PRIMARY KEY, visit_id TEXT REFERENCES visits(id), hospital TEXT)"
        migrations:
          - version: 2
            steps:
              - add_column: {table: patients, column: bpjs_number}
              - rename_column: {table: visits, from: complaint, to: chief_complaint}
              - add_table: {table: referrals}
          - version: 3
            steps:
              - drop_column: {table: patients, column: phone, definition: "phone TEXT"}
              - add_index: {table: visits, index: visits_by_date}
        """

    static func parse(_ yaml: String) throws(ConfigError) -> ServerConfig {
        try ServerConfig.parse(yaml: yaml, baseURL: URL(fileURLWithPath: "/tmp"))
    }

    static func columns(_ schema: VersionedSchema?, _ table: String) -> [String]? {
        schema?.table(named: table).map { ($0.primaryKey + $0.columns).map(\.name) }
    }

    @Test func everyVersionsTablesAreDerivedFromTheNewest() throws {
        let config = try Self.parse(Self.v3)
        #expect(config.schemaVersion == 3 && config.minClientSchema == 2)
        #expect(config.migrations.map(\.version) == [2, 3])
        #expect(config.schemas.map(\.version) == [1, 2, 3])

        let v1 = config.schema(at: 1)
        #expect(v1?.tables.map(\.name).sorted() == ["patients", "visits"])
        #expect(Self.columns(v1, "patients") == ["id", "nik", "name", "phone"])
        #expect(Self.columns(v1, "visits") == ["id", "patient_id", "visit_date", "complaint"])
        #expect(v1?.indexes["visits_by_date"] == nil)

        let v2 = config.schema(at: 2)
        #expect(v2?.tables.map(\.name).sorted() == ["patients", "referrals", "visits"])
        #expect(Self.columns(v2, "patients") == ["id", "nik", "name", "bpjs_number", "phone"])
        #expect(Self.columns(v2, "visits") == ["id", "patient_id", "visit_date", "chief_complaint"])

        let v3 = config.schema(at: 3)
        #expect(Self.columns(v3, "patients") == ["id", "nik", "name", "bpjs_number"])
        #expect(v3?.indexes["visits_by_date"] != nil)
        #expect(config.schema(at: 4) == nil && config.schema(at: 0) == nil)
        // The newest version is `tables:` itself.
        #expect(v3?.tables.map(\.name) == config.tables.map(\.name))
        #expect(v3?.table(named: "visits")?.columns == config.table(named: "visits")?.columns)
    }

    /// A step may build on an earlier step of the same migration.
    @Test func aStepMayBuildOnAnEarlierOneOfItsMigration() throws {
        let config = try Self.parse(
            """
            schema_version: 2
            opds: [{id: pkm-a, name: A}]
            tables:
              - name: t
                ddl: "CREATE TABLE t (id TEXT PRIMARY KEY, c TEXT, n INTEGER); CREATE INDEX t_n ON t(n)"
            migrations:
              - version: 2
                steps:
                  - rename_column: {table: t, from: a, to: b}
                  - rename_column: {table: t, from: b, to: c}
                  - add_column: {table: t, column: n}
                  - add_index: {table: t, index: t_n}
            """)
        #expect(Self.columns(config.schema(at: 1), "t") == ["id", "a"])
        #expect(config.migrations[0].changes.count == 4)
    }

    @Test func aConfigWithoutVersionsIsVersionOne() throws {
        let config = try Self.parse(
            """
            opds: [{id: pkm-a, name: A}]
            tables:
              - name: t
                ddl: "CREATE TABLE t (id TEXT PRIMARY KEY, v TEXT)"
            """)
        #expect(config.schemaVersion == 1 && config.minClientSchema == 1 && config.migrations.isEmpty)
        #expect(config.schemas.count == 1)
        #expect(Self.columns(config.schema(at: 1), "t") == ["id", "v"])
    }

    /// Each wrong declaration, and the words that say what is wrong.
    @Test(arguments: [
        // Versions out of order, or missing.
        (
            Self.v3.replacingOccurrences(of: "version: 3\n", with: "version: 4\n"),
            "needs one migration for each version"
        ),
        (Self.v3.replacingOccurrences(of: "schema_version: 3", with: "schema_version: 2"), "needs one migration"),
        (
            Self.v3.replacingOccurrences(of: "min_client_schema: 2", with: "min_client_schema: 4"),
            "min_client_schema is 4"
        ),
        (Self.v3.replacingOccurrences(of: "schema_version: 3", with: "schema_version: 0"), "schema_version is 0"),
        // A rename of a column the newer version lacks.
        (
            Self.v3.replacingOccurrences(of: "to: chief_complaint", with: "to: main_complaint"),
            "has no column main_complaint"
        ),
        // An added column the table does not have.
        (Self.v3.replacingOccurrences(of: "column: bpjs_number}", with: "column: bpjs}"), "has no column bpjs"),
        // A key column.
        (Self.v3.replacingOccurrences(of: "column: bpjs_number}", with: "column: id}"), "cannot change a table's key"),
        // A dropped column's definition that defines another column.
        (
            Self.v3.replacingOccurrences(of: "definition: \"phone TEXT\"", with: "definition: \"telp TEXT\""),
            "does not define a column named phone"
        ),
        // A dropped column still there.
        (Self.v3.replacingOccurrences(of: "column: phone,", with: "column: name,"), "still has name"),
        // An added table not in `tables:`.
        (
            Self.v3.replacingOccurrences(of: "add_table: {table: referrals}", with: "add_table: {table: rujukan}"),
            "has no table rujukan"
        ),
        // An index that is not there.
        (
            Self.v3.replacingOccurrences(of: "index: visits_by_date}", with: "index: by_date}"),
            "has no index by_date on visits"
        ),
        // Two kinds in one step, and a step missing a field.
        (
            Self.v3.replacingOccurrences(
                of: "- add_table: {table: referrals}",
                with: "- {add_table: {table: referrals}, drop_table: {table: x, ddl: y}}"), "must be exactly one of"
        ),
        (
            Self.v3.replacingOccurrences(of: "{table: patients, column: bpjs_number}", with: "{table: patients}"),
            "needs `column`"
        ),
    ])
    func aWrongMigrationIsRefusedWithWordsThatSayWhat(yaml: String, words: String) {
        #expect {
            _ = try Self.parse(yaml)
        } throws: { error in
            guard let error = error as? ConfigError else { return false }
            return error.code == .invalidMigration && error.message.contains(words)
        }
    }
}
