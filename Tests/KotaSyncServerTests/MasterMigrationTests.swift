import Foundation
import GRDB
import KotaSyncCore
import KotaSyncTesting
import Logging
import PostgresNIO
import Testing

@testable import KotaSyncServer

/// Issue 16: a master brought to the config's schema version on start, on each backend — once,
/// recorded, in one transaction, keeping every row — and refused with words that say why when it
/// cannot be.
@Suite(.serialized)
struct MasterMigrationTests {
    static let opds = """
        opds:
          - id: pkm-a
            name: Puskesmas A
        """
    static let v1 = """
        name: Migrations
        \(opds)
        tables:
          - name: patients
            ddl: "CREATE TABLE patients (id TEXT PRIMARY KEY, name TEXT)"
          - name: visits
            ddl: "CREATE TABLE visits (id TEXT PRIMARY KEY, patient_id TEXT, complaint TEXT)"
        """
    /// Version 2: patients gain `bpjs_number` (NOT NULL, default 'belum'), visits an index, and
    /// a new `referrals` table.
    static let v2 = """
        name: Migrations
        schema_version: 2
        \(opds)
        tables:
          - name: patients
            ddl: "CREATE TABLE patients (id TEXT PRIMARY KEY, name TEXT, bpjs_number TEXT NOT NULL DEFAULT 'belum')"
          - name: visits
            ddl: "CREATE TABLE visits (id TEXT PRIMARY KEY, patient_id TEXT, complaint TEXT); CREATE INDEX visits_by_patient ON visits(patient_id)"
          - name: referrals
            ddl: "CREATE TABLE referrals (id TEXT PRIMARY KEY, visit_id TEXT, hospital TEXT)"
        migrations:
          - version: 2
            steps:
              - add_column: {table: patients, column: bpjs_number}
              - add_index: {table: visits, index: visits_by_patient}
              - add_table: {table: referrals}
        """

    static let logger = Logger(label: "test")
    static let device = Device(tokenID: "t-pkm-a", opd: "pkm-a")

    static func config(_ yaml: String) throws -> ServerConfig {
        try ServerConfig.parse(yaml: yaml, baseURL: FileManager.default.temporaryDirectory)
    }

    static func masterLocation(_ location: TestMasterLocation) -> MasterLocation {
        location.postgres.map { .postgres($0) } ?? .file(path: location.path!)
    }

    /// Runs `body` with the master at `location` opened for `yaml`, closed afterwards.
    static func withStore<T: Sendable>(
        _ location: TestMasterLocation, _ yaml: String, _ body: (any MasterStore) async throws -> T
    ) async throws -> T {
        let (store, close) = try await MasterStores.open(
            location: masterLocation(location), password: location.password, config: try config(yaml),
            logger: logger)
        do {
            let result = try await body(store)
            await close()
            return result
        } catch {
            await close()
            throw error
        }
    }

    /// A push of one row of `table` (columns by name) from replica `replica`.
    static func push(
        _ store: any MasterStore, replica: UUID, sequence: UInt64, table: String, id: String,
        _ values: [String: SQLValue]
    ) async throws -> PushReply {
        let names = values.keys.sorted()
        let changeset = Changeset(
            kind: .push, id: UUID(), replicaID: replica, firstSequence: sequence, lastSequence: sequence,
            tables: [Changeset.Table(name: table, primaryKey: ["id"], columns: names)],
            rows: [
                Changeset.Row(
                    table: 0, operation: .upsert, version: 0, stamp: HLC(milliseconds: 1_000 + sequence, counter: 0),
                    primaryKey: [.text(id)],
                    columns: names.enumerated().map { .init(column: $0, value: values[$1]!) })
            ])
        return try ProtocolJSON.decoder().decode(
            PushReply.self, from: try await store.push(changeset, from: device).reply)
    }

    /// The master's record of the steps it took: (version, step, description, applied_at).
    static func record(_ location: TestMasterLocation) async throws -> [[String]] {
        let sql = "SELECT version, step, description, applied_at FROM %@ ORDER BY version, step"
        if let path = location.path {
            let queue = try DatabaseQueue(path: path)
            defer { try? queue.close() }
            return try await queue.read { db in
                try Row.fetchAll(db, sql: sql.replacingOccurrences(of: "%@", with: "_ks_migrations")).map { row in
                    [String(row[0] as Int64), String(row[1] as Int64), row[2], row[3]]
                }
            }
        }
        return try await PostgresCluster.withClient(location.postgres!, password: location.password) { client in
            var out: [[String]] = []
            for try await (version, step, description, at) in try await client.query(
                PostgresQuery(unsafeSQL: sql.replacingOccurrences(of: "%@", with: "kotasync.migrations"))
            ).decode((Int64, Int64, String, String).self) {
                out.append([String(version), String(step), description, at])
            }
            return out
        }
    }

    @Test(arguments: MasterBackend.enabled)
    func aMasterTakesTheConfigsStepsOnceKeepingEveryRow(backend: MasterBackend) async throws {
        let dir = try makeTestDirectory()
        try await withMasterLocation(backend, directory: dir) { location in
            let replica = UUID()
            try await Self.withStore(location, Self.v1) { store in
                let reply = try await Self.push(
                    store, replica: replica, sequence: 1, table: "patients", id: "p1", ["name": .text("Siti")])
                #expect(reply.applied == 1)
            }
            #expect(try await Self.record(location).isEmpty)

            // Version 2: the old row keeps its values and takes the new column's default; the
            // new column and the new table take pushes.
            try await Self.withStore(location, Self.v2) { store in
                #expect(
                    try await store.browseRow(table: "patients", key: [.text("p1")])
                        == [.text("p1"), .text("Siti"), .text("belum")])
                let reply = try await Self.push(
                    store, replica: replica, sequence: 2, table: "patients", id: "p2",
                    ["name": .text("Budi"), "bpjs_number": .text("0001234567890")])
                #expect(reply.applied == 1)
                let referral = try await Self.push(
                    store, replica: replica, sequence: 3, table: "referrals", id: "r1",
                    ["visit_id": .text("v1"), "hospital": .text("RSUD Djoelham")])
                #expect(referral.applied == 1)
                #expect(
                    try await store.browseRow(table: "patients", key: [.text("p2")])
                        == [.text("p2"), .text("Budi"), .text("0001234567890")])
                // A replica still at version 1 registers a patient without the new column: the
                // row takes its default instead of breaking NOT NULL.
                let old = try await Self.push(
                    store, replica: UUID(), sequence: 1, table: "patients", id: "p3", ["name": .text("Rina")])
                #expect(old.applied == 1 && old.rejected == nil)
                #expect(
                    try await store.browseRow(table: "patients", key: [.text("p3")])
                        == [.text("p3"), .text("Rina"), .text("belum")])
            }
            let record = try await Self.record(location)
            #expect(
                record.map { Array($0.prefix(3)) } == [
                    ["2", "1", "add_column: {table: patients, column: bpjs_number}"],
                    ["2", "2", "add_index: {table: visits, index: visits_by_patient}"],
                    ["2", "3", "add_table: {table: referrals}"],
                ])

            // Opened again at version 2: no step runs twice.
            let referral = try await Self.withStore(location, Self.v2) { store in
                try await store.browseRow(table: "referrals", key: [.text("r1")])
            }
            #expect(referral != nil)
            #expect(try await Self.record(location) == record)

            // The version 1 config cannot open a master that is at version 2.
            await #expect {
                try await Self.withStore(location, Self.v1) { _ in }
            } throws: { error in
                (error as? ConfigError)?.code == .invalidMigration
                    && (error as? ConfigError)?.message.contains("newer than this config's schema_version 1") == true
            }
        }
    }

    /// A master whose table lacks a column the config declares, with no step for it, is refused
    /// with the step it would need; a step the server cannot translate yet is refused by name.
    @Test(arguments: MasterBackend.enabled)
    func aMasterTheStepsDoNotExplainIsRefusedWithTheStepItNeeds(backend: MasterBackend) async throws {
        let dir = try makeTestDirectory()
        try await withMasterLocation(backend, directory: dir) { location in
            try await Self.withStore(location, Self.v1) { _ in }
            let undeclared = Self.v1.replacingOccurrences(
                of: "(id TEXT PRIMARY KEY, name TEXT)", with: "(id TEXT PRIMARY KEY, name TEXT, bpjs_number TEXT)")
            await #expect {
                try await Self.withStore(location, undeclared) { _ in }
            } throws: { error in
                guard let error = error as? ConfigError else { return false }
                return error.message.contains("has no column bpjs_number")
                    && error.message.contains("add_column: {table: patients, column: bpjs_number}")
            }
            let rename =
                Self.v1.replacingOccurrences(of: "name: Migrations\n", with: "name: Migrations\nschema_version: 2\n")
                .replacingOccurrences(of: "complaint TEXT)", with: "chief_complaint TEXT)")
                    + """

                    migrations:
                      - version: 2
                        steps:
                          - rename_column: {table: visits, from: complaint, to: chief_complaint}
                    """
            await #expect {
                try await Self.withStore(location, rename) { _ in }
            } throws: { error in
                guard let error = error as? ConfigError else { return false }
                return error.code == .invalidMigration && error.message.contains("rename_column")
                    && error.message.contains("does not translate")
            }
            // Nothing was taken: the master is still at version 1 and opens with its config.
            #expect(try await Self.record(location).isEmpty)
            try await Self.withStore(location, Self.v1) { _ in }
        }
    }

    func makeTestDirectory(_ name: String = #function) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "kotasync-migrate-\(name.filter(\.isLetter).prefix(30))-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }
}
