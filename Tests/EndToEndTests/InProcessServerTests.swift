import Foundation
import GRDB
import Hummingbird
import KotaSyncClient
import KotaSyncCore
import KotaSyncServer
import Logging
import ServiceLifecycle
import Testing

/// The server as a real `Application` on port 0 in this process, with the client library
/// talking to it over loopback HTTP.
struct InProcessServerTests {
    /// Runs `body` against a server on a free port, then shuts the server down gracefully.
    /// `configure` may edit the sample configuration's text first; the server keeps chunked
    /// uploads in `uploads` when given, where the store keeps them otherwise.
    static func withServer(
        _ name: String = #function, configure: (String) -> String = { $0 },
        routes: (SQLiteMasterStore) throws -> (Router<ServerRequestContext>) -> Void = { _ in { _ in } },
        uploads: (any PartialUploads)? = nil,
        _ body: (URL, SQLiteMasterStore, URL) async throws -> Void
    ) async throws {
        let dir = try makeTemporaryDirectory(name)
        let configURL = try sampleConfig(in: dir)
        try configure(try String(contentsOf: configURL, encoding: .utf8)).write(
            to: configURL, atomically: true, encoding: .utf8)
        let config = try ServerConfig.load(from: configURL)
        let store = try SQLiteMasterStore(path: dir.appendingPathComponent("master.sqlite").path, config: config)
        try await withInProcessServer(
            config: config, store: store, logLevel: .warning, uploads: uploads, routes: try routes(store)
        ) { port in
            try await body(URL(string: "http://127.0.0.1:\(port)")!, store, dir)
        }
    }

    @Test func aReplicaBuiltFromSmallPagesEqualsTheMasterAndFollowsDeletes() async throws {
        try await Self.withServer { url, store, dir in
            let token = try await store.createToken(opd: "dinkes", expiresAt: nil).token
            let path = dir.appendingPathComponent("replica.sqlite").path
            let (replica, _, pulled) = try await Synchronizer.initialize(
                path: path, serverURL: url, token: token, pageSize: 4)
            #expect(pulled.pages > 5, "25 seed rows in pages of 4")
            #expect(pulled.rows == 25)
            let tables = ["villages", "patients", "visits", "diagnoses"]
            #expect(
                try snapshot(path, tables: tables)
                    == snapshot(dir.appendingPathComponent("master.sqlite").path, tables: tables))

            // Another OPD deletes a village and edits a patient; this replica follows.
            let other = dir.appendingPathComponent("other.sqlite").path
            let otherToken = try await store.createToken(opd: "bappeda", expiresAt: nil).token
            let (otherReplica, _, _) = try await Synchronizer.initialize(path: other, serverURL: url, token: otherToken)
            try await DatabaseQueue(path: other).write { db in
                try db.execute(sql: "DELETE FROM villages WHERE code = '1275050003'")
                try db.execute(sql: "UPDATE patients SET phone = '0899' WHERE name = 'Rina Br Ginting'")
            }
            let pushed = try await Synchronizer(replica: otherReplica).push()
            #expect(pushed.applied == 2)
            let summary = try await Synchronizer(replica: replica).pull(pageSize: 1)
            #expect(summary.rows == 2)
            #expect(try snapshot(path, tables: tables) == snapshot(other, tables: tables))
        }
    }

    /// More concurrent requests than the master has reader connections, and than the machine
    /// has cores, each holding its reader for a while: a server that waits for a reader
    /// connection on Swift's cooperative threads hangs here. The limit only catches that hang:
    /// the test needs about 20 s alone, and over 100 s inside the whole suite on a shared 2-core
    /// machine.
    @Test(.timeLimit(.minutes(3)))
    func manyConcurrentRequestsAllComplete() async throws {
        try await Self.withServer { url, store, dir in
            let token = try await store.createToken(opd: "dinkes", expiresAt: nil).token
            let (replica, _, _) = try await Synchronizer.initialize(
                path: dir.appendingPathComponent("r.sqlite").path, serverURL: url, token: token)
            try await DatabaseQueue(path: replica.path).write { db in
                for i in 0..<4000 {
                    try db.execute(
                        sql: "INSERT INTO villages VALUES (?, ?, 'Uji')",
                        arguments: ["t\(i)", String(repeating: "nama ", count: 20)])
                }
            }
            _ = try await Synchronizer(replica: replica).push()
            // 64 devices, each with its own connection (a transport with the default timeouts):
            // one client's pool would queue them behind its few connections, and a request
            // queued longer than the connect timeout fails in the client, never reaching the
            // server this test is about.
            let transports = (0..<64).map { _ in HTTPTransport(timeouts: .standard) }
            let rows: Int
            do {
                rows = try await withThrowingTaskGroup(of: Int.self) { group in
                    for transport in transports {
                        let client = SyncClient(baseURL: url, token: token, transport: transport)
                        group.addTask { try await client.pull(after: 0, limit: 4025).page.rows.count }
                    }
                    return try await group.reduce(0, +)
                }
            } catch {
                for transport in transports { try await transport.shutdown() }
                throw error
            }
            for transport in transports { try await transport.shutdown() }
            #expect(rows == 64 * 4025)
        }
    }

    @Test func anExpiredTokenIsRefused() async throws {
        try await Self.withServer { url, store, dir in
            let expired = try await store.createToken(opd: "dinkes", expiresAt: Date().addingTimeInterval(-60)).token
            await #expect {
                _ = try await Synchronizer.initialize(
                    path: dir.appendingPathComponent("r.sqlite").path, serverURL: url, token: expired)
            } throws: { ($0 as? ReplicaError)?.code == .unauthorized }
        }
    }

    @Test func aPushRefusedForBadDataLeavesTheChangesPendingForCorrection() async throws {
        try await Self.withServer { url, store, dir in
            let token = try await store.createToken(opd: "pkm-binjai-kota", expiresAt: nil).token
            let path = dir.appendingPathComponent("r.sqlite").path
            let (replica, _, _) = try await Synchronizer.initialize(path: path, serverURL: url, token: token)
            // SQLite lets a REAL column hold text; the master refuses it.
            try await DatabaseQueue(path: path).write { db in
                try db.execute(
                    sql: """
                        INSERT INTO visits (id, patient_id, clinic_id, visit_date, weight_kg)
                        VALUES ('v-x', '0b6f2a8e-4c1d-4e0a-9d3b-2f6c1a7e5b01', 'pkm-binjai-kota', '2026-11-29', 'enam puluh')
                        """)
            }
            let sync = Synchronizer(replica: replica, client: SyncClient(baseURL: url, token: token))
            await #expect {
                _ = try await sync.push()
            } throws: { ($0 as? ReplicaError)?.server?.code == .typeMismatch }
            #expect(try replica.status().inFlight == nil, "the refused changeset leaves the outbox")
            #expect(try replica.status().pendingChanges == 1, "its change stays in the log")

            try await DatabaseQueue(path: path).write { db in
                try db.execute(sql: "UPDATE visits SET weight_kg = 60.0 WHERE id = 'v-x'")
            }
            let pushed = try await sync.push()
            #expect(pushed.applied == 1)
            #expect(try replica.status().pendingChanges == 0)
        }
    }
}
