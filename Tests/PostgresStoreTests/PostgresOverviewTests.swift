import Foundation
import KotaSyncCore
import KotaSyncTesting
import Testing

@testable import KotaSyncServer

/// The overview role and the devices' reports on PostgreSQL: the same overview, data browser
/// pages, rows and histories as the SQLite master gives for the same state, and reports written
/// before the overview is read, across servers without going back in time.
@Suite("PostgreSQL overview and device reports", .postgres)
struct PostgresOverviewTests {
    typealias Pull = PostgresPullTests

    /// A SQLite master filled by real pushes (and a device's reports), and a PostgreSQL master
    /// given the same state; `body` gets both and the replicas by OPD.
    static func withBoth(
        stores count: Int = 1,
        _ body: (SQLiteMasterStore, [PostgresMasterStore], [String: UUID]) async throws -> Void
    ) async throws {
        let config = try storeConfig(Pull.yaml())
        let sqlite = try temporarySQLiteMaster(config)
        let replicas = try await Pull.fill(sqlite)
        try await sqlite.record(
            DeviceReport(
                replicaId: replicas["pkm-a"]!, opd: "pkm-a", clientVersion: "1.4.0", pending: 2, lastError: "offline",
                cursor: 3), pulled: true)
        try await withStores(count, config: config) { postgres in
            try await SeededMaster.copy(from: sqlite, to: postgres[0])
            try await body(sqlite, postgres, replicas)
        }
    }

    @Test func theOverviewIsTheSQLiteMasters() async throws {
        try await Self.withBoth { sqlite, postgres, _ in
            for zone in ["Asia/Jakarta", "UTC", "Pacific/Kiritimati"] {
                let timeZone = try #require(TimeZone(identifier: zone))
                let now = Date()
                let expected = try await sqlite.overview(days: 14, timeZone: timeZone, now: now)
                let got = try await postgres[0].overview(days: 14, timeZone: timeZone, now: now)
                #expect(got == expected, "\(zone)")
                #expect(got.devices.count == 3 && got.masterVersion > 0 && got.rows["patients"] == 8)
                #expect(got.changesPerDay.values.reduce(0) { $0 + $1.values.reduce(0, +) } > 0)
                #expect(!got.records.isEmpty && !got.conflictsPerDay.isEmpty)
            }
        }
    }

    @Test func theDataBrowserGivesTheSQLiteMastersPages() async throws {
        try await Self.withBoth { sqlite, postgres, _ in
            let queries: [(table: String, search: String?, sort: String?, descending: Bool)] = [
                ("patients", nil, nil, false), ("patients", nil, "name", true), ("patients", "a 1", nil, false),
                ("patients", "pkm-b", "name", false), ("patients", "199", "id", true), ("patients", "61.2", nil, false),
                ("patients", "%", nil, false), ("patients", "_", nil, false), ("notes", "from", "body", false),
                ("notes", nil, "nonsense", false), ("tags", nil, nil, true), ("tags", "x", "b", false),
            ]
            for query in queries {
                for page in 0..<4 {
                    let expected = try await sqlite.browse(
                        table: query.table, search: query.search, sort: query.sort, descending: query.descending,
                        page: page, pageSize: 2)
                    let got = try await postgres[0].browse(
                        table: query.table, search: query.search, sort: query.sort, descending: query.descending,
                        page: page, pageSize: 2)
                    #expect(got == expected, "\(query) page \(page)")
                }
            }
            await #expect {
                _ = try await postgres[0].browse(
                    table: "nope", search: nil, sort: nil, descending: false, page: 0, pageSize: 5)
            } throws: {
                ($0 as? SyncError)?.code == .unknownTable
            }
        }
    }

    @Test func rowsAndHistoriesAreTheSQLiteMasters() async throws {
        try await Self.withBoth { sqlite, postgres, _ in
            let keys: [(String, [SQLValue])] = [
                ("patients", [.text("a0")]), ("patients", [.text("a1")]), ("patients", [.text("a2")]),
                ("patients", [.text("b0")]), ("patients", [.text("zz")]), ("notes", [.text("n0")]),
                ("notes", [.text("n1")]), ("tags", [.integer(1), .text("x")]), ("tags", [.integer(3), .text("x")]),
            ]
            for (table, key) in keys {
                let row = try await postgres[0].browseRow(table: table, key: key)
                let expectedRow = try await sqlite.browseRow(table: table, key: key)
                #expect(row == expectedRow, "\(table) \(key)")
                let expected = try await sqlite.history(table: table, key: key)
                let got = try await postgres[0].history(table: table, key: key)
                #expect(got == expected, "\(table) \(key)")
            }
            #expect(try await postgres[0].history(table: "patients", key: [.text("b0")]).count == 2)
            // A key value of a class its column does not hold names no row (SQLite's comparison would
            // take the text '1' for the integer 1; no caller passes one: keys are typed by column).
            #expect(try await postgres[0].browseRow(table: "tags", key: [.text("1"), .text("x")]) == nil)
            await #expect { _ = try await postgres[0].history(table: "patients", key: []) } throws: {
                ($0 as? SyncError)?.code == .invalidPrimaryKey
            }
            await #expect { _ = try await postgres[0].history(table: "nope", key: [.text("a")]) } throws: {
                ($0 as? SyncError)?.code == .unknownTable
            }
        }
    }

    @Test func aDevicesReportIsInTheNextOverview() async throws {
        try await Self.withBoth { _, postgres, replicas in
            let store = postgres[0]
            let replica = try #require(replicas["pkm-b"])
            try await store.record(
                DeviceReport(
                    replicaId: replica, opd: "pkm-b", clientVersion: "2.0", pending: 7, lastError: nil, cursor: 4),
                pulled: true)
            // A later report that leaves out what it does not know keeps what the earlier one said.
            try await store.record(
                DeviceReport(
                    replicaId: replica, opd: "pkm-b", clientVersion: nil, pending: nil, lastError: "x", cursor: nil),
                pulled: false)
            // A report about another OPD's replica is not kept.
            try await store.record(
                DeviceReport(
                    replicaId: try #require(replicas["pkm-a"]), opd: "pkm-b", clientVersion: "evil", pending: 0,
                    lastError: nil, cursor: 0), pulled: true)
            let overview = try await store.overview(days: 14, timeZone: TimeZone(identifier: "UTC")!, now: Date())
            let device = try #require(overview.devices.first { $0.replicaId == replica })
            #expect(device.clientVersion == "2.0" && device.pending == 7 && device.lastError == "x")
            #expect(device.lag == overview.masterVersion - 4 && device.lastPullAt != nil)
            let other = try #require(overview.devices.first { $0.replicaId == replicas["pkm-a"] })
            #expect(other.clientVersion == "1.4.0")
        }
    }

    @Test func aServersOlderReportDoesNotReplaceAnotherServersNewerOne() async throws {
        try await Self.withBoth(stores: 2) { _, postgres, replicas in
            let replica = try #require(replicas["pkm-b"])
            let earlier = Date().addingTimeInterval(-60)
            postgres[0].noteDeviceReport(
                DeviceReport(
                    replicaId: replica, opd: "pkm-b", clientVersion: "1.0", pending: 9, lastError: "old", cursor: 1),
                pulled: true, at: earlier)
            postgres[1].noteDeviceReport(
                DeviceReport(
                    replicaId: replica, opd: "pkm-b", clientVersion: "2.0", pending: nil, lastError: nil, cursor: 5),
                pulled: false, at: Date())
            // The newer report is written first, the older one after it.
            try await postgres[1].flushAudit()
            try await postgres[0].flushAudit()
            let overview = try await postgres[0].overview(days: 14, timeZone: TimeZone(identifier: "UTC")!, now: Date())
            let device = try #require(overview.devices.first { $0.replicaId == replica })
            #expect(
                device.clientVersion == "2.0" && device.lastError == nil && device.lag == overview.masterVersion - 5)
            // What the newer report left unsaid comes from the older; the last pull is the older's.
            #expect(device.pending == 9 && device.lastPullAt == Timestamp.string(earlier))
        }
    }
}
