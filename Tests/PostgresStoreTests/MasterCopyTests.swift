import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite
import KotaSyncTesting
import PostgresNIO
import Testing

@testable import KotaSyncServer

/// `kotasync-server master copy`: an SQLite master that served real pushes (conflicts, a held
/// change, history, device reports, tokens, staff and sessions, the audit log) moved into an
/// empty PostgreSQL master, table for table and value for value; the copy's refusals leave the
/// target as it was.
@Suite(.postgres)
struct MasterCopyTests {
    /// Values SQLite keeps exactly that a careless copy would change.
    static let edgeValues: [[SQLValue]] = [
        // i INTEGER, r REAL, t TEXT, n NUMERIC, u (untyped), b BLOB
        [
            .integer(.max), .real(Double(bitPattern: 0x0000_0000_0000_0001)), .text("007"), .real(2.5), .text("1e3"),
            .blob([]),
        ],
        [.integer(.min), .real(-.infinity), .text(""), .integer(-42), .integer(7), .blob([0, 255, 0])],
        [.null, .real(0.1 + 0.2), .text("Ani Lubis 🌾"), .real(1e20), .real(-0.5), .text("not a blob")],
        [.integer(0), .null, .null, .null, .blob([]), .null],
    ]

    /// An SQLite master in `folder` after real merges; returns its path, a device token made
    /// before the copy, and the store.
    static func servedMaster(in folder: URL, extraRows: Int) async throws -> (
        path: String, token: String, store: SQLiteMasterStore
    ) {
        let path = folder.appendingPathComponent("master.sqlite").path
        let store = try SQLiteMasterStore(path: path, config: try storeConfig())
        let tokenA = try await store.createToken(opd: "pkm-a", expiresAt: nil).token
        let tokenB = try await store.createToken(opd: "pkm-b", expiresAt: nil).token
        let revoked = try await store.createToken(opd: "pkm-a", expiresAt: nil)
        _ = try await store.revokeToken(id: revoked.id)
        _ = try await store.createStaffToken(name: "Budi", role: .admin, expiresAt: Date().addingTimeInterval(86_400))
        _ = try await store.addUser(name: "Ani", role: .reviewer, password: "kata-sandi-panjang")
        #expect(try await store.login(name: "Ani", password: "kata-sandi-panjang", minutes: 60) != nil)
        let a = try #require(try await store.authenticate(token: tokenA))
        let b = try #require(try await store.authenticate(token: tokenB))

        var replicaA = Pusher(device: a)
        var replicaB = Pusher(device: b, clock: 1_764_000_500_000)
        // Edge values, and enough rows that the copy's batches fill more than once.
        var vals = Self.edgeValues.enumerated().map { n, values in ("v\(n)", values) }
        vals += (0..<extraRows).map { n in
            ("x\(n)", [.integer(Int64(n)), .real(Double(n) / 7), .text("\(n)"), .integer(Int64(n)), .null, .null])
        }
        try await replicaA.push(store, table: "vals", vals.map { ($0.0, 0, $0.1) })
        try await replicaA.push(
            store, table: "patients", [("p1", 0, [.text("3275010101900001"), .text("Ani"), .integer(1990)])])
        // The same key from another OPD: an insert/insert conflict.
        try await replicaB.push(
            store, table: "patients", [("p1", 0, [.text("3275010101900001"), .text("Ani L."), .integer(1990)])])
        // Another key with the same NIK: quarantined (a held change and its record).
        let held = try await replicaB.push(
            store, table: "patients", [("p2", 0, [.text("3275010101900001"), .text("Dua"), .null])])
        #expect(!held.conflicts.isEmpty || !(held.rejected ?? []).isEmpty)
        // An update: history of the replaced values.
        try await replicaA.push(
            store, table: "vals", [("v0", 1, Self.edgeValues[0].enumerated().map { $0 == 2 ? .text("008") : $1 })])
        try await store.record(
            DeviceReport(
                replicaId: replicaA.replica, opd: "pkm-a", clientVersion: "1.0", pending: 3, lastError: nil, cursor: 4),
            pulled: true)
        store.recordAudit(
            AuditEntry(actor: "cli:test", actorKind: "cli", action: "token.create", status: 0, detail: ["opd": "pkm-a"])
        )
        store.recordAudit(AuditEntry(actor: "t1", actorKind: "device", opd: "pkm-a", action: "push", status: 200))
        try await store.flushAudit()
        return (path, tokenA, store)
    }

    /// A replica pushing rows of one table (key `id` then the table's columns).
    struct Pusher {
        var device: Device
        let replica = UUID()
        var sequence: UInt64 = 0
        var clock: UInt64 = 1_764_000_000_000

        @discardableResult
        mutating func push(_ store: SQLiteMasterStore, table: String, _ rows: [(String, UInt64, [SQLValue])])
            async throws
            -> PushReply
        {
            let schema = try #require(store.config.tables.first { $0.name == table })
            let first = sequence + 1
            let changeRows = rows.map { id, base, values -> Changeset.Row in
                clock += 1
                sequence += 1
                return Changeset.Row(
                    table: 0, operation: .upsert, version: base, stamp: HLC(milliseconds: clock, counter: 0),
                    primaryKey: [.text(id)],
                    columns: values.enumerated().map { Changeset.ColumnValue(column: $0, value: $1) })
            }
            let changeset = Changeset(
                kind: .push, id: UUID(), replicaID: replica, firstSequence: first, lastSequence: sequence,
                tables: [Changeset.Table(name: table, primaryKey: ["id"], columns: schema.columns.map(\.name))],
                rows: changeRows)
            let outcome = try await store.push(changeset, from: device)
            return try ProtocolJSON.decoder().decode(PushReply.self, from: outcome.reply)
        }
    }

    // MARK: - Reading both sides

    /// A value as exact text: storage class and bits.
    static func exact(_ value: SQLValue) -> String {
        switch value {
        case .null: "null"
        case .integer(let i): "i:\(i)"
        case .real(let r): "r:\(r.bitPattern)"
        case .text(let t): "t:\(Array(t.utf8))"
        case .blob(let b): "b:\(b)"
        }
    }

    /// Every row of every copied table, by PostgreSQL table name, as sorted exact texts.
    static func sqliteContents(_ path: String, config: ServerConfig) throws -> [String: [String]] {
        let queue = try DatabaseQueue(path: path)
        return try queue.read { db in
            var out: [String: [String]] = [:]
            for plan in try PostgresMasterCopy.tablePlans(config) {
                let names = plan.columns.map { SQL.quote($0.name) }.joined(separator: ", ")
                let statement = try db.makeStatement(sql: "SELECT \(names) FROM \(SQL.quote(plan.source))")
                var rows: [String] = []
                try statement.forEachRow([]) { row in
                    rows.append(row.values.map(exact).joined(separator: "|"))
                    return true
                }
                out[plan.name] = rows.sorted()
            }
            return out
        }
    }

    static func postgresContents(_ location: PostgresLocation, password: String?, config: ServerConfig) async throws
        -> [String: [String]]
    {
        let master = try PostgresMaster.connect(to: location, password: password)
        do {
            var out: [String: [String]] = [:]
            for plan in try PostgresMasterCopy.tablePlans(config) {
                var expressions: [String] = []
                for (name, kind) in plan.columns {
                    let quoted = PostgresTableDefinition.quote(name)
                    switch kind {
                    case .typed(let type): expressions += type.select(quoted)
                    case .smallint: expressions.append("\(quoted)::bigint")
                    case .boolean: expressions.append("\(quoted)::int::bigint")
                    case .bytea: expressions.append(quoted)
                    }
                }
                let rows = try await master.client.query(
                    PostgresQuery(unsafeSQL: "SELECT \(expressions.joined(separator: ", ")) FROM \(plan.target)"),
                    logger: SQLiteMasterStore.quietLogger)
                var texts: [String] = []
                for try await row in rows {
                    let cells = row.makeRandomAccess()
                    var values: [SQLValue] = []
                    var next = 0
                    for (_, kind) in plan.columns {
                        switch kind {
                        case .typed(let type):
                            values.append(try type.decode(cells, at: next))
                            next += type.selectCount
                        case .smallint, .boolean:
                            values.append(try cells[next].decode(Int64?.self).map(SQLValue.integer) ?? .null)
                            next += 1
                        case .bytea:
                            values.append(
                                try cells[next].decode(ByteBuffer?.self).map { .blob(Array(buffer: $0)) } ?? .null)
                            next += 1
                        }
                    }
                    texts.append(values.map(exact).joined(separator: "|"))
                }
                out[plan.name] = texts.sorted()
            }
            await master.close()
            return out
        } catch {
            await master.close()
            throw error
        }
    }

    /// A scratch folder, removed after `body`.
    static func withFolder<T>(_ body: (URL) async throws -> T) async throws -> T {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
            "kotasync-copy-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        return try await body(folder)
    }

    /// `--config … --master-password-file …` for the real binary.
    static func cliOptions(_ folder: URL, yaml: String, password: String?) throws -> (
        config: String, password: [String]
    ) {
        let config = folder.appendingPathComponent("kotasync-\(UUID().uuidString.prefix(4)).yaml")
        try yaml.write(to: config, atomically: true, encoding: .utf8)
        guard let password else { return (config.path, []) }
        let file = folder.appendingPathComponent("password")
        try password.write(to: file, atomically: true, encoding: .utf8)
        return (config.path, ["--master-password-file", file.path])
    }

    // MARK: - Tests

    @Test func theRealCommandCopiesEveryTableExactlyAndTheCopyServesTokensLoginsAndTheAuditChain() async throws {
        let cluster = try await PostgresCluster.shared()
        try await Self.withFolder { folder in
            let (path, token, sqlite) = try await Self.servedMaster(in: folder, extraRows: 1100)
            let config = try storeConfig()
            let source = try Self.sqliteContents(path, config: config)
            try await cluster.withDatabase { location in
                let (configPath, password) = try Self.cliOptions(folder, yaml: storeYAML, password: cluster.password)
                let copy =
                    ["master", "copy", "--config", configPath, "--from", path, "--to", location.description] + password
                let copied = try run("kotasync-server", copy)
                #expect(copied.status == 0, "\(copied.stderr)")
                #expect(copied.stdout.contains("kotasync.conflicts") && copied.stdout.contains("public.vals"))
                #expect(copied.stdout.contains("1104"), "the summary counts the rows of vals")
                #expect(
                    !copied.stdout.contains("3275010101900001") && !copied.stdout.contains("Ani"), "counts, no values")

                let target = try await Self.postgresContents(location, password: cluster.password, config: config)
                for (table, rows) in source where table != "kotasync.audit" && table != "kotasync.server" {
                    let same = target[table] == rows
                    #expect(same, "\(table) differs (\(target[table]?.count ?? 0) rows, the source has \(rows.count))")
                }
                #expect(source["public.vals"]?.count == 1104)
                #expect(source["kotasync.conflicts"]?.isEmpty == false, "the master has conflict records")
                #expect(
                    source["kotasync.conflicts"]?.contains { $0.contains("t:\(Array("unique".utf8))") } == true,
                    "and a held (quarantined) change")
                #expect(source["kotasync.history"]?.isEmpty == false)
                #expect(source["kotasync.devices"]?.count == 1)
                // The audit chain: the source's entries, then the copy's own.
                let sourceAudit = try #require(source["kotasync.audit"])
                let targetAudit = try #require(target["kotasync.audit"])
                #expect(targetAudit.count == sourceAudit.count + 1)
                #expect(Set(sourceAudit).isSubset(of: Set(targetAudit)))
                let settings = try #require(source["kotasync.server"]).filter {
                    !$0.hasPrefix("t:\(Array("audit_head".utf8))")
                }
                #expect(Set(settings).isSubset(of: Set(try #require(target["kotasync.server"]))))

                let verified = try run(
                    "kotasync-server",
                    ["audit", "verify", "--config", configPath, "--master", location.description] + password)
                #expect(verified.status == 0, "\(verified.stderr)")
                #expect(verified.stdout.contains("audit log intact: \(sourceAudit.count + 1) entries"))

                let store = try await PostgresMasterStore.open(location, password: cluster.password, config: config)
                // Transfer files are keyed by the same tokens on both backends.
                for opd in ["pkm-a", "pkm-b", ""] {
                    #expect(try await store.transferTokens(opd: opd) == (try await sqlite.transferTokens(opd: opd)))
                }
                let revoked = try #require(try await sqlite.tokens().first { $0.revokedAt != nil })
                #expect(
                    try await store.transferToken(id: revoked.id) == (try await sqlite.transferToken(id: revoked.id)))
                #expect(try await store.transferToken(id: "no-such-token") == nil)
                let device = try await store.authenticate(token: token)
                #expect(device?.opd == "pkm-a" && device?.role == .device, "a token made before the copy works")
                #expect(try await store.login(name: "Ani", password: "kata-sandi-panjang", minutes: 60) != nil)
                #expect(try await store.login(name: "Ani", password: "salah-sandi-panjang", minutes: 60) == nil)
                #expect(
                    try await store.tokens().filter { $0.revokedAt != nil }.count == 1, "a revoked token stays revoked")
                // Identities go on after the copied ids.
                for (table, column) in [("conflicts", "id"), ("replicas", "number")] {
                    let rows = try await store.client.query(
                        PostgresQuery(
                            unsafeSQL:
                                "SELECT nextval(pg_get_serial_sequence('kotasync.\(table)', '\(column)')) > (SELECT max(\(column)) FROM kotasync.\(table))"
                        ),
                        logger: SQLiteMasterStore.quietLogger)
                    for try await next in rows.decode(Bool.self) {
                        #expect(next, "kotasync.\(table) hands out a new id")
                    }
                }
                await store.close()

                // A second copy into the now filled master: refused, nothing changed.
                let before = try await Self.postgresContents(location, password: cluster.password, config: config)
                let again = try run("kotasync-server", copy)
                #expect(again.status == 2)
                #expect(again.stderr.contains("copy_target_not_empty"), "\(again.stderr)")
                let after = try await Self.postgresContents(location, password: cluster.password, config: config)
                let unchanged = after == before
                #expect(unchanged, "a refused copy changes nothing")
            }
        }
    }

    @Test func aValuePostgreSQLCannotHoldRefusesTheWholeCopyNamingTheColumnNotTheValue() async throws {
        let cluster = try await PostgresCluster.shared()
        try await Self.withFolder { folder in
            let (path, _, _) = try await Self.servedMaster(in: folder, extraRows: 0)
            let config = try storeConfig()
            // Written past the merge (which refuses it on PostgreSQL): a text with U+0000 in the
            // last table copied among the replicated ones, after the others went in.
            let queue = try DatabaseQueue(path: path)
            try await queue.write { db in
                try db.execute(sql: "UPDATE vals SET t = 'RAHASIA' || char(0) || 'NIK' WHERE id = 'v2'")
            }
            try await cluster.withDatabase { location in
                let (configPath, password) = try Self.cliOptions(folder, yaml: storeYAML, password: cluster.password)
                let copied = try run(
                    "kotasync-server",
                    ["master", "copy", "--config", configPath, "--from", path, "--to", location.description] + password)
                #expect(copied.status == 2)
                #expect(
                    copied.stderr.contains("copy_value_refused") && copied.stderr.contains("vals.t"), "\(copied.stderr)"
                )
                #expect(!copied.stderr.contains("RAHASIA") && !copied.stderr.contains("NIK"), "never the value")
                let target = try await Self.postgresContents(location, password: cluster.password, config: config)
                for (table, rows) in target where table != "kotasync.server" {
                    #expect(rows.isEmpty, "\(table) holds rows after a failed copy")
                }
            }
        }
    }

    @Test func aSourceThatDoesNotMatchTheConfigIsRefusedBeforeAnythingIsWritten() async throws {
        let cluster = try await PostgresCluster.shared()
        try await Self.withFolder { folder in
            let (path, _, _) = try await Self.servedMaster(in: folder, extraRows: 0)
            try await cluster.withDatabase { location in
                let wider = storeYAML.replacingOccurrences(of: "born INTEGER)", with: "born INTEGER, phone TEXT)")
                let (configPath, password) = try Self.cliOptions(folder, yaml: wider, password: cluster.password)
                let copied = try run(
                    "kotasync-server",
                    ["master", "copy", "--config", configPath, "--from", path, "--to", location.description] + password)
                #expect(copied.status == 2)
                #expect(
                    copied.stderr.contains("copy_source_mismatch") && copied.stderr.contains("phone"),
                    "\(copied.stderr)")

                let missing = try run(
                    "kotasync-server",
                    [
                        "master", "copy", "--config", configPath, "--from",
                        folder.appendingPathComponent("none.sqlite").path,
                        "--to", location.description,
                    ] + password)
                #expect(missing.status == 2 && missing.stderr.contains("copy_source_unreadable"), "\(missing.stderr)")
                #expect(!FileManager.default.fileExists(atPath: folder.appendingPathComponent("none.sqlite").path))

                // A master last opened by an older server: refused with the command that upgrades it.
                try await DatabaseQueue(path: path).write { db in
                    try db.execute(sql: "ALTER TABLE _ks_tokens DROP COLUMN user_name")
                }
                let (matching, _) = try Self.cliOptions(folder, yaml: storeYAML, password: cluster.password)
                let older = try run(
                    "kotasync-server",
                    ["master", "copy", "--config", matching, "--from", path, "--to", location.description] + password)
                #expect(older.status == 2)
                #expect(
                    older.stderr.contains("copy_source_mismatch") && older.stderr.contains("user_name")
                        && older.stderr.contains("audit verify --master"), "\(older.stderr)")
                let store = try await PostgresMasterStore.open(
                    location, password: cluster.password, config: try storeConfig())
                let tokens = try await store.tokens()
                let users = try await store.users()
                #expect(tokens.isEmpty && users.isEmpty, "nothing was written")
                await store.close()
            }
        }
    }

    @Test func smallBatchesCopyTheSameRowsAsOneBatch() async throws {
        let cluster = try await PostgresCluster.shared()
        try await Self.withFolder { folder in
            let (path, _, _) = try await Self.servedMaster(in: folder, extraRows: 5)
            let config = try storeConfig()
            let source = try Self.sqliteContents(path, config: config)
            try await cluster.withDatabase { location in
                let master = try PostgresMaster.connect(to: location, password: cluster.password)
                let summary = try await PostgresMasterCopy.copy(from: path, to: master, config: config, batchRows: 2)
                await master.close()
                #expect(summary.rows(of: "public.vals") == 9)
                #expect(summary.rows(of: "kotasync.audit") == source["kotasync.audit"]?.count)
                let target = try await Self.postgresContents(location, password: cluster.password, config: config)
                let same = target == source
                #expect(same, "without an audit entry of its own, the copy is the source")
            }
        }
    }
}
