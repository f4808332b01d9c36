import Foundation
import KotaSyncCore
import Testing

@testable import KotaSyncServer

/// The configuration is judged when the server loads it, with messages that say what to do.
struct ServerConfigTests {
    static func yaml(tables: String) -> String {
        """
        name: Test
        opds:
          - id: dinkes
            name: Dinas Kesehatan
          - id: pkm-a
            name: Puskesmas A
            parent: dinkes
        tables:
        \(tables)
        """
    }

    static func parse(_ tables: String) throws(ConfigError) -> ServerConfig {
        try ServerConfig.parse(yaml: yaml(tables: tables), baseURL: URL(fileURLWithPath: "/tmp"))
    }

    @Test func theSampleConfigLoads() throws {
        let config = try ServerConfig.load(
            from: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("samples/binjai/kotasync.yaml"))
        #expect(config.tables.map(\.name) == ["villages", "patients", "visits", "diagnoses", "drug_stock"])
        let diagnoses = try #require(config.table(named: "diagnoses"))
        let icd10 = try #require(diagnoses.columns.firstIndex { $0.name == "icd10" })
        #expect(config.policy(for: diagnoses).columns[icd10] == .authority("dinkes"))
        let stock = try #require(config.table(named: "drug_stock"))
        #expect(config.policy(for: stock).columns == [.additive, .lww])
        #expect(
            config.foreignKeys["visits"] == [
                .init(columns: ["patient_id"], parentTable: "patients", parentColumns: ["id"])
            ])
        #expect(config.table(named: "diagnoses")?.primaryKey.map(\.name) == ["visit_id", "line"])
        #expect(config.opds.first { $0.id == "pkm-kebun-lada" }?.parent == "dinkes")
        #expect(config.seedFile?.lastPathComponent == "seed.sql")
    }

    @Test(arguments: [
        "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT)",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)",
        "CREATE TABLE t (id INT NOT NULL PRIMARY KEY, name TEXT) WITHOUT ROWID",
        "CREATE TABLE t (name TEXT)",
    ])
    func aKeyThatCollidesBetweenOPDsIsRefusedWithAdvice(_ ddl: String) throws {
        #expect {
            try Self.parse("  - name: t\n    ddl: \"\(ddl)\"")
        } throws: { error in
            guard let error = error as? ConfigError, error.code == .unsafePrimaryKey else { return false }
            return error.message.contains("UUID") && error.message.contains("composite key")
        }
    }

    @Test(arguments: [
        "CREATE TABLE t (id TEXT PRIMARY KEY, name TEXT)",
        "CREATE TABLE t (opd TEXT NOT NULL, local_id INTEGER NOT NULL, name TEXT, PRIMARY KEY (opd, local_id))",
    ])
    func uuidAndCompositeKeysAreAccepted(_ ddl: String) throws {
        let config = try Self.parse("  - name: t\n    ddl: \"\(ddl)\"")
        #expect(config.tables.count == 1)
    }

    @Test func ddlThatDoesNotRunIsRefused() {
        #expect {
            try Self.parse("  - name: t\n    ddl: \"CREATE TABEL t (id TEXT PRIMARY KEY)\"")
        } throws: { ($0 as? ConfigError)?.code == .invalidDDL }
        #expect {
            try Self.parse("  - name: t\n    ddl: \"CREATE TABLE other (id TEXT PRIMARY KEY)\"")
        } throws: { ($0 as? ConfigError)?.code == .invalidDDL }
    }

    @Test func anUnknownPolicyOrParentIsRefused() {
        #expect {
            try Self.parse("  - name: t\n    policy: coin-toss\n    ddl: \"CREATE TABLE t (id TEXT PRIMARY KEY)\"")
        } throws: { ($0 as? ConfigError)?.code == .invalid }
        #expect {
            try ServerConfig.parse(
                yaml:
                    "opds:\n  - id: a\n    name: A\n    parent: nowhere\ntables:\n  - name: t\n    ddl: \"CREATE TABLE t (id TEXT PRIMARY KEY)\"",
                baseURL: URL(fileURLWithPath: "/tmp"))
        } throws: { ($0 as? ConfigError)?.code == .invalid }
    }

    @Test(arguments: [
        "    columns:\n      name: additive\n    ddl: \"CREATE TABLE t (id TEXT PRIMARY KEY, name TEXT)\"",
        "    policy: \"authority: nobody\"\n    ddl: \"CREATE TABLE t (id TEXT PRIMARY KEY, name TEXT)\"",
        "    columns:\n      missing: lww\n    ddl: \"CREATE TABLE t (id TEXT PRIMARY KEY, name TEXT)\"",
        "    delete: coin-toss\n    ddl: \"CREATE TABLE t (id TEXT PRIMARY KEY, name TEXT)\"",
        "    ddl: \"CREATE TABLE t (id TEXT PRIMARY KEY, other_id TEXT REFERENCES other(id))\"",
        "    ddl: \"CREATE TABLE t (id TEXT PRIMARY KEY, name TEXT, parent TEXT REFERENCES t(name))\"",
    ])
    func aPolicyOrReferenceThatCannotWorkIsRefused(_ entry: String) {
        #expect {
            try Self.parse("  - name: t\n" + entry)
        } throws: { ($0 as? ConfigError)?.code == .invalid }
    }

    @Test func policiesParse() throws {
        let config = try Self.parse(
            """
              - name: t
                policy: server-wins
                columns:
                  qty: additive
                  name: "authority:  dinkes"
                delete: delete-wins
                ddl: "CREATE TABLE t (id TEXT PRIMARY KEY, name TEXT, qty REAL, note TEXT)"
            """)
        let policy = config.policy(for: config.tables[0])
        #expect(policy.columns == [.authority("dinkes"), .additive, .serverWins])
        #expect(policy.delete == .deleteWins)
    }

    @Test func malformedYAMLIsUnreadable() {
        #expect {
            try ServerConfig.parse(yaml: "tables: [", baseURL: URL(fileURLWithPath: "/tmp"))
        } throws: { ($0 as? ConfigError)?.code == .unreadable }
    }

    @Test(arguments: [-1, 86_401, Int.max])
    func aClockBoundOutsideADayIsRefused(_ seconds: Int) {
        #expect {
            try ServerConfig.parse(
                yaml: "clock:\n  max_ahead_seconds: \(seconds)\n"
                    + Self.yaml(tables: "  - name: t\n    ddl: \"CREATE TABLE t (id TEXT PRIMARY KEY)\""),
                baseURL: URL(fileURLWithPath: "/tmp"))
        } throws: { ($0 as? ConfigError)?.code == .invalid }
    }
}
