import Foundation
import GRDB
import KotaSyncClient
import KotaSyncCore
import KotaSyncSQLite
import KotaSyncServer
import Logging
import PostgresNIO
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Several real `kotasync-server` processes on one PostgreSQL master, with devices spread over
/// them: a device may push through one server and pull through another, a server may die in the
/// middle of a merge, and the master stays one master — nothing acknowledged lost, every replica
/// converging with it, the audit log one chain, and no pull ever skipping a version.
@Suite(.postgres, .serialized)
struct MultiServerTests {
    static let siti = ConflictScenario.siti
    /// The merge's advisory lock (`PostgresMaster.LockKey.merge`) as `pg_locks` shows a bigint
    /// key: its low 32 bits in `objid` (the high ones, 0, in `classid`).
    static let mergeLockObjid: Int64 = 0x6B73_0003
    static let logger = Logger(label: "kotasync.test")

    /// Runs `body` with `count` servers on one new PostgreSQL master for the Binjai sample
    /// (every device sees every row), stopped afterwards.
    func withServers<T: Sendable>(
        _ count: Int,
        _ body: (_ servers: [ServerProcess], _ dir: URL, _ location: PostgresLocation, _ password: String?)
            async throws -> T
    ) async throws -> T {
        let cluster = try await PostgresCluster.shared()
        return try await cluster.withDatabase { location in
            let dir = try makeTemporaryDirectory()
            let config = try sampleConfig(in: dir)
            var servers: [ServerProcess] = []
            defer { for server in servers { server.stop() } }
            for i in 0..<count {
                let folder = dir.appendingPathComponent("server\(i)")
                try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                let password = cluster.password
                servers.append(
                    try await offPool {
                        try ServerProcess(
                            config: config, directory: folder, master: location.description, password: password)
                    })
            }
            return try await body(servers, dir, location, cluster.password)
        }
    }

    /// A new device token for `opd`, made with the real command line (off the cooperative pool).
    static func token(_ server: ServerProcess, _ opd: String) async throws -> String {
        try await offPool { try server.token(opd: opd) }
    }

    /// A synchronizer for `replica` that talks to `server`, whichever server it was made through.
    func through(_ server: ServerProcess, _ replica: Replica) throws -> Synchronizer {
        Synchronizer(replica: replica, client: SyncClient(baseURL: server.url, token: try replica.token()))
    }

    func write(_ replica: Replica, _ sql: String) async throws {
        let queue = try DatabaseQueue(path: replica.path)
        try await queue.write { db in try db.execute(sql: sql) }
        try queue.close()
    }

    /// Polls the master until `sql` (a count) is above zero: a readiness check on what the servers'
    /// transactions hold, not a sleep for a guessed time.
    func waitUntil(_ client: PostgresClient, _ sql: String, what: String) async throws {
        let deadline = ContinuousClock.now + .seconds(120)
        while ContinuousClock.now < deadline {
            for try await count in try await client.query(PostgresQuery(unsafeSQL: sql)).decode(Int64.self)
            where count > 0 {
                return
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        throw TestFailure("waited two minutes for \(what)")
    }

    /// The merge lock is held by a server whose transaction waits for another lock (a row lock).
    static let mergeHeldAndWaiting = """
        SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.objid = \(mergeLockObjid) AND l.granted AND a.wait_event_type = 'Lock'
        """
    /// A server waits for the merge lock.
    static let mergeAwaited = """
        SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = \(mergeLockObjid) AND NOT granted
        """
    /// A server holds the merge lock.
    static let mergeHeld = """
        SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = \(mergeLockObjid) AND granted
        """

    /// Every row of `table` in the master, key columns then the others, as exact values.
    func masterRows(_ client: PostgresClient, _ table: TableSchema) async throws -> [[SQLValue]] {
        let definition = try PostgresTableDefinition(table)
        var out: [[SQLValue]] = []
        for try await row in try await client.query(PostgresQuery(unsafeSQL: definition.selectRows)) {
            let (key, values) = try definition.decodeRow(row)
            out.append(key + values)
        }
        return out.sorted { "\($0)" < "\($1)" }
    }

    /// Every row of `table` in a replica, in the master's column order and key order.
    func replicaRows(_ path: String, _ table: TableSchema) throws -> [[SQLValue]] {
        let columns = (table.primaryKey + table.columns).map { SQL.quote($0.name) }.joined(separator: ", ")
        let order = table.primaryKey.map { SQL.quote($0.name) }.joined(separator: ", ")
        let queue = try DatabaseQueue(path: path)
        defer { try? queue.close() }
        return try queue.read { db in
            try Row.fetchAll(db, sql: "SELECT \(columns) FROM \(SQL.quote(table.name)) ORDER BY \(order)").map {
                $0.databaseValues.map(SQLValue.init)
            }.sorted { "\($0)" < "\($1)" }
        }
    }

    @Test func threeServersOneMasterAServerKilledMidMergeLosesNothingAndEveryReplicaConverges() async throws {
        try await withServers(3) { servers, dir, location, password in
            let config = try ServerConfig.load(from: servers[0].config)
            let opds = ["pkm-binjai-kota", "pkm-kebun-lada", "dinkes", "bappeda", "pkm-tanah-tinggi", "bpkad"]
            // Six devices, each made through one server and pushing through the next.
            var made: [Replica] = []
            for (i, opd) in opds.enumerated() {
                let (replica, _, _) = try await Synchronizer.initialize(
                    path: dir.appendingPathComponent("replica\(i).sqlite").path, serverURL: servers[i % 3].url,
                    token: try await Self.token(servers[i % 3], opd))
                made.append(replica)
            }
            let replicas = made
            // Each device records its own visits and edits Siti's phone: the same column of the
            // same row through three servers at once.
            for (i, replica) in replicas.enumerated() {
                try await write(
                    replica,
                    """
                    WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < 50)
                    INSERT INTO visits (id, patient_id, clinic_id, visit_date, weight_kg)
                    SELECT 'v-\(i)-' || k, '\(Self.siti)', '\(opds[i])', '2026-12-03', k * 0.25 FROM n;
                    UPDATE patients SET phone = '0811-000\(i)' WHERE id = '\(Self.siti)';
                    """)
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (i, replica) in replicas.enumerated() {
                    let server = servers[(i + 1) % 3]
                    group.addTask { _ = try await through(server, replica).push() }
                }
                try await group.waitForAll()
            }

            try await PostgresCluster.withClient(location, password: password) { client in
                // A big push through server 1, which is killed while it holds the merge lock.
                try await write(
                    replicas[0],
                    """
                    WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < 5000)
                    INSERT INTO visits (id, patient_id, clinic_id, visit_date, weight_kg)
                    SELECT 'big-' || k, '\(Self.siti)', 'pkm-binjai-kota', '2026-12-03', k * 0.5 FROM n;
                    """)
                let doomed = Task { try await through(servers[1], replicas[0]).push() }
                try await waitUntil(client, Self.mergeHeld, what: "server 1 to start merging")
                let killed = servers[1]
                try await offPool { killed.process.killAndWait() }
                let outcome = await doomed.result
                #expect(throws: (any Error).self, "the push was cut by the kill, not acknowledged") {
                    try outcome.get()
                }
            }
            // The device goes on through another server; then everyone pulls, through yet another.
            let resumed = try await through(servers[2], replicas[0]).push()
            #expect(resumed.rows > 0)
            for (i, replica) in replicas.enumerated() {
                _ = try await through(servers[i % 2 == 0 ? 0 : 2], replica).pull()
            }

            try await PostgresCluster.withClient(location, password: password) { client in
                for table in config.tables {
                    let master = try await masterRows(client, table)
                    for replica in replicas {
                        #expect(try replicaRows(replica.path, table) == master, "\(table.name) converged")
                    }
                }
                let ids = try await masterRows(client, try #require(config.table(named: "visits"))).compactMap {
                    if case .text(let id) = $0[0] { id } else { nil }
                }
                #expect(ids.filter { $0.hasPrefix("v-") }.count == 6 * 50, "every visit written is in the master")
                #expect(ids.filter { $0.hasPrefix("big-") }.count == 5000, "the killed server's push too, once")
            }
            // One audit chain, whichever server appended.
            let first = servers[0]
            let verified = try await offPool { try first.admin(["audit", "verify"]) }
            #expect(verified.status == 0, "\(verified.stdout) \(verified.stderr)")
        }
    }

    /// The classic trap of version-paged pulls: a merge that took version N+1 and has not
    /// committed while another commits N+2 — a pull in between moves past N+1 for ever. Here a
    /// real server is held in the middle of its merge (its row write waits for a row lock the test
    /// holds), another server is given a push, and a device pulls through a third.
    @Test func aPullNeverSkipsAVersionWhileAnotherServersMergeIsOpen() async throws {
        try await withServers(3) { servers, dir, location, password in
            var replicas: [Replica] = []
            for (i, opd) in ["pkm-binjai-kota", "pkm-kebun-lada", "dinkes"].enumerated() {
                let (replica, _, _) = try await Synchronizer.initialize(
                    path: dir.appendingPathComponent("replica\(i).sqlite").path, serverURL: servers[i].url,
                    token: try await Self.token(servers[i], opd))
                replicas.append(replica)
            }
            let (held, other, reader) = (replicas[0], replicas[1], replicas[2])
            let village = ConflictScenario.village
            try await write(held, "UPDATE villages SET name = 'Kebun Lada Baru' WHERE code = '\(village)'")
            try await write(
                other,
                """
                INSERT INTO patients (id, nik, name, clinic_id)
                VALUES ('0b6f2a8e-4c1d-4e0a-9d3b-2f6c1a7e5b99', '1275010101010099', 'Pasien Baru', 'pkm-kebun-lada')
                """)
            let before = try await through(servers[2], reader).pull().cursor

            try await PostgresCluster.withClient(location, password: password) { client in
                let (first, second) = try await client.withConnection { connection in
                    // The test holds village's row: server 0's merge of the rename will wait for it.
                    try await connection.query("BEGIN", logger: Self.logger)
                    try await connection.query(
                        PostgresQuery(unsafeSQL: "SELECT 1 FROM public.villages WHERE code = '\(village)' FOR UPDATE"),
                        logger: Self.logger)
                    let first = Task { try await through(servers[0], held).push() }
                    try await waitUntil(client, Self.mergeHeldAndWaiting, what: "server 0's merge to wait on the row")
                    let second = Task { try await through(servers[1], other).push() }
                    try await waitUntil(client, Self.mergeAwaited, what: "server 1's merge to wait for server 0's")
                    // Neither merge has committed: a pull through server 2 finds nothing new and
                    // keeps its cursor where the master's committed versions end.
                    let during = try await through(servers[2], reader).pull()
                    #expect(during.rows == 0)
                    #expect(during.cursor == before)
                    try await connection.query("COMMIT", logger: Self.logger)
                    return (try await first.value, try await second.value)
                }
                #expect(first.applied == 1 && second.applied == 1)
            }
            let after = try await through(servers[2], reader).pull()
            #expect(after.rows == 2, "both changes arrive, the first merge's lower version too")
            #expect(after.cursor == before + 2)
            let names = try replicaRows(
                reader.path, try #require(try ServerConfig.load(from: servers[0].config).table(named: "villages"))
            ).filter { $0[0] == .text(village) }
            #expect(names.first?[1] == .text("Kebun Lada Baru"))
        }
    }

    /// A server whose connection to the master is cut while a request waits on it — a PostgreSQL
    /// restart, a failover, an operator's `pg_terminate_backend` — answers the device with the
    /// protocol's stable, retryable code and words that say what happened (not PostgresNIO's
    /// generic text), keeps serving, and merges the same push once when it comes again. The
    /// command line says the same when a command's connection is cut.
    @Test func aCutMasterConnectionGivesAStableCodeAndTheServerKeepsServing() async throws {
        try await withServers(1) { servers, dir, location, password in
            let server = servers[0]
            let token = try await Self.token(server, "pkm-binjai-kota")
            let changeset = ChangesetCodec.encode(
                Changeset(
                    kind: .push, id: UUID(), replicaID: UUID(), firstSequence: 1, lastSequence: 1,
                    tables: [Changeset.Table(name: "patients", primaryKey: ["id"], columns: ["name", "clinic_id"])],
                    rows: [
                        Changeset.Row(
                            table: 0, operation: .upsert, version: 0,
                            stamp: HLC(milliseconds: UInt64(Date().timeIntervalSince1970 * 1000), counter: 0),
                            primaryKey: [.text("5d0c9a3e-1f2b-4c6d-8e7f-0a1b2c3d4e5f")],
                            columns: [
                                .init(column: 0, value: .text("Pasien Terputus")),
                                .init(column: 1, value: .text("pkm-binjai-kota")),
                            ])
                    ]))
            var request = URLRequest(url: server.url.appendingPathComponent("v1/push"))
            request.httpMethod = "POST"
            request.httpBody = Data(changeset)
            request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
            request.setValue(changesetMediaType, forHTTPHeaderField: "Content-Type")
            let push = request

            let (status, body) = try await PostgresCluster.withClient(location, password: password) { client in
                try await client.withConnection { connection in
                    // The test holds the merge lock, so the server's merge waits for it.
                    try await connection.query("BEGIN", logger: Self.logger)
                    try await connection.query(
                        PostgresQuery(unsafeSQL: "SELECT pg_advisory_xact_lock(\(Self.mergeLockObjid))"),
                        logger: Self.logger)
                    let reply = Task { try await URLSession.shared.data(for: push) }
                    try await waitUntil(client, Self.mergeAwaited, what: "the server's merge to wait for the lock")
                    try await connection.query(PostgresQuery(unsafeSQL: Self.terminateWaiting), logger: Self.logger)
                    try await connection.query("COMMIT", logger: Self.logger)
                    let (data, response) = try await reply.value
                    return ((response as! HTTPURLResponse).statusCode, data)
                }
            }
            #expect(status == 500)
            let error = try ProtocolJSON.decoder().decode(ErrorBody.self, from: body).syncError
            #expect(error.code == .internalError && error.code.isRetryable)
            #expect(error.message.contains("cannot serve the request now") && error.message.contains("57P01"))
            #expect(!error.message.contains("PSQLError"))

            // The server keeps serving: the same bytes again are merged, once.
            let (data, response) = try await URLSession.shared.data(for: push)
            #expect((response as! HTTPURLResponse).statusCode == 200)
            #expect(try ProtocolJSON.decoder().decode(PushReply.self, from: data).applied == 1)
            let (replay, _) = try await URLSession.shared.data(for: push)
            #expect(replay == data, "a replay gets the stored reply")

            // A command whose connection is cut while it waits for a table.
            let result = try await PostgresCluster.withClient(location, password: password) { client in
                try await client.withConnection { connection in
                    try await connection.query("BEGIN", logger: Self.logger)
                    try await connection.query(
                        "LOCK TABLE kotasync.tokens IN ACCESS EXCLUSIVE MODE", logger: Self.logger)
                    let list = Task { try await offPool { try server.admin(["token", "list"]) } }
                    try await waitUntil(client, Self.tokensAwaited, what: "the command to wait for the tokens table")
                    try await connection.query(PostgresQuery(unsafeSQL: Self.terminateWaiting), logger: Self.logger)
                    try await connection.query("COMMIT", logger: Self.logger)
                    return try await list.value
                }
            }
            #expect(result.status == 1)
            #expect(result.stderr.contains("internal_error") && result.stderr.contains("57P01"), "\(result.stderr)")
            #expect(!result.stderr.contains("PSQLError"), "\(result.stderr)")
        }
    }

    /// A command waits for the tokens table.
    static let tokensAwaited = """
        SELECT count(*) FROM pg_locks WHERE relation = 'kotasync.tokens'::regclass AND NOT granted
        """
    /// Cuts the connection of every session waiting for a lock (the test's own holds them).
    static let terminateWaiting = """
        SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE NOT granted AND pid <> pg_backend_pid()
        """
}
