import Foundation
import KotaSyncCore
import KotaSyncServer
import KotaSyncTesting
import PostgresNIO
import Testing

/// A PostgreSQL master's first start loads the config's seed file exactly and gives every row a
/// bookkeeping entry with its scope; a later start with changed sync rules moves the rows whose
/// visibility changed to new versions, and records who no longer sees them — as on SQLite.
@Suite(.postgres)
struct PostgresStartupTests {
    /// The Binjai sample with its seed, its sync rules as shipped (`scoped`) or without them.
    static func binjai(scoped: Bool, in folder: URL) throws -> ServerConfig {
        let sample = packageRoot.appendingPathComponent("samples/binjai")
        try? FileManager.default.copyItem(
            at: sample.appendingPathComponent("seed.sql"), to: folder.appendingPathComponent("seed.sql"))
        var text = try String(contentsOf: sample.appendingPathComponent("kotasync.yaml"), encoding: .utf8)
        if !scoped {
            text = text.split(separator: "\n", omittingEmptySubsequences: false).reduce(
                into: (lines: [Substring](), skipping: false)
            ) {
                state, line in
                if line == "    sync:" {
                    state.skipping = true
                } else if state.skipping, line.hasPrefix("      ") {
                } else {
                    state.skipping = false
                    state.lines.append(line)
                }
            }.lines.joined(separator: "\n")
        }
        return try ServerConfig.parse(yaml: text, baseURL: folder.appendingPathComponent("kotasync.yaml"))
    }

    @Test func theSeedIsLoadedExactlyAndEveryRowGetsItsScopeThenARuleChangeMovesTheRowsItConcerns() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
            "kotasync-pg-seed-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let open = try Self.binjai(scoped: false, in: folder)
        let scoped = try Self.binjai(scoped: true, in: folder)
        let cluster = try await PostgresCluster.shared()
        try await cluster.withDatabase { location in
            // What the SQLite master makes of the same seed, to compare with.
            let sqlite = try SQLiteMasterStore(path: folder.appendingPathComponent("m.sqlite").path, config: scoped)
            let expected = try await sqlite.pull(after: 0, limit: 5000)

            var store = try await PostgresMasterStore.open(location, password: cluster.password, config: open)
            let heads = try await Self.heads(store)
            #expect(heads.count == expected.rows, "every seeded row has one bookkeeping entry")
            #expect(Set(heads.map(\.version)).count == heads.count, "each its own version")
            #expect(heads.allSatisfy { $0.scope == nil && $0.goneFor == nil }, "no rules: no scope")
            let patients = try await Self.rows(store, "patients")
            #expect(patients.count == 3)
            #expect(patients.contains { $0.contains(.text("1275014503880001")) }, "a NIK stays text")
            #expect(patients.contains { $0.contains(.null) }, "a NULL phone stays NULL")
            let before = heads.map(\.version).max() ?? 0
            await store.close()

            // The shipped rules: patients and visits are scoped by clinic.
            store = try await PostgresMasterStore.open(location, password: cluster.password, config: scoped)
            let after = try await Self.heads(store)
            let moved = after.filter { $0.version > before }
            #expect(!moved.isEmpty, "rows whose visibility changed take new versions")
            #expect(moved.allSatisfy { $0.table == "patients" || $0.table == "visits" || $0.table == "diagnoses" })
            let patientHeads = after.filter { $0.table == "patients" }
            #expect(patientHeads.allSatisfy { $0.scope != nil }, "every patient has its clinic as scope")
            #expect(
                patientHeads.contains { $0.goneFor?.contains(",bappeda,") == true },
                "an OPD that saw patients before the rules is told they are gone")
            await store.close()

            // The same rules again: nothing moves.
            store = try await PostgresMasterStore.open(location, password: cluster.password, config: scoped)
            #expect(try await Self.heads(store) == after)
            await store.close()
        }
    }

    struct HeadRow: Equatable {
        var table: String
        var version: Int64
        var scope: String?
        var goneFor: String?
    }

    static func heads(_ store: PostgresMasterStore) async throws -> [HeadRow] {
        var out: [HeadRow] = []
        let rows = try await store.master.client.query(
            "SELECT tbl, version, (scope).t, gone_for FROM kotasync.rows ORDER BY version")
        for try await (table, version, scope, gone) in rows.decode((String, Int64, String?, String?).self) {
            out.append(HeadRow(table: table, version: version, scope: scope, goneFor: gone))
        }
        return out
    }

    static func rows(_ store: PostgresMasterStore, _ table: String) async throws -> [[SQLValue]] {
        let schema = try #require(store.config.table(named: table))
        let definition = try PostgresTableDefinition(schema)
        var out: [[SQLValue]] = []
        for try await row in try await store.master.client.query(PostgresQuery(unsafeSQL: definition.selectRows)) {
            let (key, values) = try definition.decodeRow(row)
            out.append(key + values)
        }
        return out
    }

    /// A master whose role is named `kotasync` sees the bookkeeping schema on its default search
    /// path ("$user", public), where `kotasync.value` prints as `value`: a second start must still
    /// find the tables it made matching the config (the database's search path stands in for the
    /// role here, since roles are shared by every test of the cluster).
    @Test func aSearchPathThatShowsTheBookkeepingSchemaDoesNotRefuseTheSecondStart() async throws {
        let cluster = try await PostgresCluster.shared()
        try await cluster.withDatabase { location in
            try await PostgresCluster.withClient(location, password: cluster.password) { client in
                try await client.query(
                    PostgresQuery(unsafeSQL: "ALTER DATABASE \(location.database) SET search_path = kotasync, public"))
            }
            let config = try storeConfig()
            for _ in 0..<2 {
                let store = try await PostgresMasterStore.open(location, password: cluster.password, config: config)
                await store.close()
            }
        }
    }
}
