import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite
import Testing

/// What a column keeps of a value (`Protocol/changeset.md` §2.2): the committed vectors against a
/// real SQLite table and the server's conversion, and values pushed through the real server read
/// back on the master, in a pull page and on another replica.
@Suite(.serialized)
struct ExactValuesTests {
    struct AffinityCase: Decodable {
        var declaredType: String
        var affinity: String
        var written: SQLValue
        var kept: SQLValue
        var note: String?
    }

    struct AffinityVectors: Decodable {
        var cases: [AffinityCase]
    }

    static let vectors: [AffinityCase] = {
        let url = packageRoot.appendingPathComponent("Protocol/vectors/affinity.json")
        let data = try! Data(contentsOf: url)
        return try! ProtocolJSON.decoder().decode(AffinityVectors.self, from: data).cases
    }()

    /// The declared types of the vectors, one column each (`c0`, `c1`, …) of table `exact`.
    static let declaredTypes: [String] = {
        var seen: [String] = []
        for c in vectors where !seen.contains(c.declaredType) { seen.append(c.declaredType) }
        return seen
    }()

    static var exactTable: String {
        let columns = declaredTypes.enumerated().map { i, type in "c\(i) \(type)" }.joined(separator: ", ")
        return """

              - name: exact
                ddl: |
                  CREATE TABLE exact (id TEXT PRIMARY KEY, \(columns))
              - name: measures
                ddl: |
                  CREATE TABLE measures (k NUMERIC PRIMARY KEY, v REAL, note TEXT)
            """
    }

    static let stamp = HLC(milliseconds: 1_764_000_000_000, counter: 0)

    @Test func theVectorsAreWhatSQLiteKeepsAndWhatTheServerConvertsTo() throws {
        #expect(Self.vectors.count >= 30)
        let dir = try makeTemporaryDirectory()
        let queue = try DatabaseQueue(path: dir.appendingPathComponent("affinity.sqlite").path)
        try queue.write { db in
            for (n, c) in Self.vectors.enumerated() {
                let affinity = Affinity(declaredType: c.declaredType)
                #expect(affinity.rawValue == c.affinity, "\(c.declaredType)")
                #expect(affinity.accepts(c.written.storageClass), "\(c.declaredType) \(c.written)")
                #expect(identical(affinity.stored(c.written), c.kept), "\(c.declaredType) \(c.written)")
                try db.execute(sql: "CREATE TABLE t\(n) (v \(c.declaredType))")
                try db.execute(sql: "INSERT INTO t\(n) VALUES (?)", arguments: [c.written.databaseValue])
                let stored = try SQLValue(DatabaseValue.fetchOne(db, sql: "SELECT v FROM t\(n)")!)
                #expect(identical(stored, c.kept), "SQLite keeps \(stored) of \(c.written) in \(c.declaredType)")
            }
        }
    }

    /// Every vector's written value, pushed by a client that builds changesets from the spec (no
    /// SQLite of its own to convert them), is the kept value on the master, in the pull page, on
    /// a replica made by `kotasync init`, and nothing is pending there.
    @Test func pushedValuesAreWhatTheirColumnsKeepOnTheMasterInAPullAndOnAnotherReplica() async throws {
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(
            config: try sampleConfig(in: dir, extraTables: Self.exactTable), directory: dir)
        defer { server.stop() }
        let table = Changeset.Table(
            name: "exact", primaryKey: ["id"], columns: Self.declaredTypes.indices.map { "c\($0)" })
        let rows = Self.vectors.enumerated().map { n, c in
            Changeset.Row(
                table: 0, operation: .upsert, version: 0, stamp: HLC(rawValue: Self.stamp.rawValue + UInt64(n)),
                primaryKey: [.text("case-\(n)")],
                columns: [.init(column: Self.declaredTypes.firstIndex(of: c.declaredType)!, value: c.written)])
        }
        let push = Changeset(
            kind: .push, id: UUID(), replicaID: UUID(), firstSequence: 1, lastSequence: UInt64(rows.count),
            tables: [table], rows: rows)
        let token = try server.token(opd: "pkm-binjai-kota")
        let reply = try await http(
            "POST", server.url.appendingPathComponent("v1/push"), token: token, body: ChangesetCodec.encode(push))
        #expect(reply.status == 200, "\(String(decoding: reply.body, as: UTF8.self))")
        let pushed = try ProtocolJSON.decoder().decode(PushReply.self, from: reply.body)
        #expect(pushed.applied == rows.count)
        #expect(pushed.conflicts.isEmpty)

        func expectKept(_ values: [String: SQLValue], _ place: String) {
            for (n, c) in Self.vectors.enumerated() {
                let value = values["case-\(n)"]
                #expect(
                    value.map { identical($0, c.kept) } == true,
                    "\(place): \(c.declaredType) \(c.written) is \(value.map(\.description) ?? "missing"), not \(c.kept)"
                )
            }
        }
        func read(_ path: String) throws -> [String: SQLValue] {
            let queue = try DatabaseQueue(path: path)
            defer { try? queue.close() }
            return try queue.read { db in
                var out: [String: SQLValue] = [:]
                for (n, c) in Self.vectors.enumerated() {
                    let column = "c\(Self.declaredTypes.firstIndex(of: c.declaredType)!)"
                    let value = try DatabaseValue.fetchOne(
                        db, sql: "SELECT \(column) FROM exact WHERE id = ?", arguments: ["case-\(n)"])
                    if let value { out["case-\(n)"] = SQLValue(value) }
                }
                return out
            }
        }
        expectKept(try read(server.database.path), "master")

        // The protocol: a pull page carries the kept values.
        let reader = try server.token(opd: "dinkes")
        let page = try await http(
            "GET", URL(string: "\(server.url.absoluteString)/v1/pull?after=0&limit=5000")!,
            token: reader)
        #expect(page.status == 200)
        let pulled = try ChangesetCodec.decode([UInt8](page.body))
        let exactIndex = try #require(pulled.tables.firstIndex { $0.name == "exact" })
        var inPage: [String: SQLValue] = [:]
        for row in pulled.rows where row.table == exactIndex {
            guard case .text(let id) = row.primaryKey[0], let n = Int(id.dropFirst("case-".count)) else { continue }
            let column = Self.declaredTypes.firstIndex(of: Self.vectors[n].declaredType)!
            inPage[id] = row.columns.first { $0.column == column }?.value
        }
        expectKept(inPage, "pull page")

        // Another OPD's replica, made by the real client.
        let replica = dir.appendingPathComponent("dinkes.sqlite").path
        let initialized = try run(
            "kotasync", ["init", "--db", replica, "--server", server.url.absoluteString, "--token", reader])
        #expect(initialized.status == 0, "\(initialized.stderr)")
        expectKept(try read(replica), "replica")
        let status = try run("kotasync", ["status", "--db", replica, "--json"])
        let view = try ProtocolJSON.decoder().decode(StatusView.self, from: Data(status.stdout.utf8))
        #expect(view.pendingChanges == 0)
    }

    /// A NUMERIC key pushed as the real `3.0` is the row `3` in the master's table; the master's
    /// bookkeeping and pull pages name it so too, so that when another replica edits the row (its
    /// SQLite names it `3`) the edit is an update of that row, not a second row or a conflict.
    @Test func aNumericKeyPushedAsAWholeRealIsOneRowEverywhere() async throws {
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(
            config: try sampleConfig(in: dir, extraTables: Self.exactTable), directory: dir)
        defer { server.stop() }
        let push = Changeset(
            kind: .push, id: UUID(), replicaID: UUID(), firstSequence: 1, lastSequence: 1,
            tables: [Changeset.Table(name: "measures", primaryKey: ["k"], columns: ["v", "note"])],
            rows: [
                Changeset.Row(
                    table: 0, operation: .upsert, version: 0, stamp: Self.stamp, primaryKey: [.real(3.0)],
                    columns: [.init(column: 0, value: .real(-0.0)), .init(column: 1, value: .text("first"))])
            ])
        let reply = try await http(
            "POST", server.url.appendingPathComponent("v1/push"), token: try server.token(opd: "pkm-binjai-kota"),
            body: ChangesetCodec.encode(push))
        #expect(reply.status == 200, "\(String(decoding: reply.body, as: UTF8.self))")

        let token = try server.token(opd: "pkm-kebun-lada")
        let page = try await http(
            "GET", URL(string: "\(server.url.absoluteString)/v1/pull?after=0&limit=5000")!,
            token: token)
        let pulled = try ChangesetCodec.decode([UInt8](page.body))
        let measures = try #require(pulled.tables.firstIndex { $0.name == "measures" })
        let row = try #require(pulled.rows.first { $0.table == measures })
        #expect(identical(row.primaryKey, [.integer(3)]), "the pull page names the row \(row.primaryKey)")
        #expect(row.columns.contains { $0.column == 0 && identical($0.value, .real(0.0)) })

        let replica = dir.appendingPathComponent("kebun-lada.sqlite").path
        #expect(
            try run("kotasync", ["init", "--db", replica, "--server", server.url.absoluteString, "--token", token])
                .status == 0)
        let edit = try run("/usr/bin/sqlite3", [replica, "UPDATE measures SET note = 'second' WHERE k = 3;"])
        #expect(edit.status == 0, "\(edit.stderr)")
        let sync = try run("kotasync", ["sync", "--db", replica])
        #expect(sync.status == 0, "\(sync.stderr)")

        let master = try DatabaseQueue(path: server.database.path)
        defer { try? master.close() }
        try await master.read { db in
            let rows = try Row.fetchAll(db, sql: "SELECT k, note FROM measures")
            #expect(rows.count == 1)
            #expect(rows.first.map { SQLValue($0[0] as DatabaseValue) } == .integer(3))
            #expect(rows.first?["note"] == "second")
            #expect(try Int.fetchOne(db, sql: "SELECT count(*) FROM _ks_rows WHERE tbl = 'measures'") == 1)
            #expect(try Int.fetchOne(db, sql: "SELECT count(*) FROM _ks_conflicts") == 0)
        }
    }

    /// The sample's `visits.signature` (BLOB): an empty signature (`x''`, the patient declined) and
    /// no signature (NULL) are different values on the master and on another OPD's replica, also
    /// when a row changes from one to the other.
    @Test func anEmptyBlobAndNullStayDistinctThroughTheRealServer() async throws {
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(config: try sampleConfig(in: dir, scoped: true), directory: dir)
        defer { server.stop() }
        let siti = "0b6f2a8e-4c1d-4e0a-9d3b-2f6c1a7e5b01"
        let seededVisit = "7d1e9c40-1f2b-4a55-8c66-0e3f5b2a9c01"
        let clinic = dir.appendingPathComponent("binjai-kota.sqlite").path
        let office = dir.appendingPathComponent("dinkes.sqlite").path
        for (path, opd) in [(clinic, "pkm-binjai-kota"), (office, "dinkes")] {
            let result = try run(
                "kotasync",
                ["init", "--db", path, "--server", server.url.absoluteString, "--token", try server.token(opd: opd)])
            #expect(result.status == 0, "\(result.stderr)")
        }
        func signatures(_ path: String) throws -> [String: SQLValue] {
            let queue = try DatabaseQueue(path: path)
            defer { try? queue.close() }
            return try queue.read { db in
                var out: [String: SQLValue] = [:]
                for row in try Row.fetchAll(db, sql: "SELECT id, signature FROM visits") {
                    out[row["id"]] = SQLValue(row["signature"] as DatabaseValue)
                }
                return out
            }
        }
        func syncBoth() throws {
            for path in [clinic, office] {
                let result = try run("kotasync", ["sync", "--db", path])
                #expect(result.status == 0, "\(result.stderr)")
            }
        }

        let shell = try run(
            "/usr/bin/sqlite3",
            [
                clinic,
                """
                INSERT INTO visits (id, patient_id, clinic_id, visit_date, signature) VALUES
                  ('v-declined', '\(siti)', 'pkm-binjai-kota', '2026-12-01', x''),
                  ('v-not-asked', '\(siti)', 'pkm-binjai-kota', '2026-12-01', NULL),
                  ('v-signed', '\(siti)', 'pkm-binjai-kota', '2026-12-01', x'89504e47');
                UPDATE visits SET signature = x'' WHERE id = '\(seededVisit)';
                """,
            ])
        #expect(shell.status == 0, "\(shell.stderr)")
        try syncBoth()
        let expected: [String: SQLValue] = [
            "v-declined": .blob([]), "v-not-asked": .null, "v-signed": .blob([0x89, 0x50, 0x4E, 0x47]),
            seededVisit: .blob([]),
        ]
        for path in [server.database.path, clinic, office] {
            let found = try signatures(path)
            for (id, value) in expected {
                #expect(
                    found[id].map { identical($0, value) } == true,
                    "\(path): \(id) is \(found[id]?.description ?? "missing")")
            }
        }

        // From empty to NULL and from NULL to empty: each is a change, and arrives as such.
        let swap = try run(
            "/usr/bin/sqlite3",
            [
                clinic,
                """
                UPDATE visits SET signature = NULL WHERE id = 'v-declined';
                UPDATE visits SET signature = x'' WHERE id = 'v-not-asked';
                """,
            ])
        #expect(swap.status == 0, "\(swap.stderr)")
        try syncBoth()
        for path in [server.database.path, clinic, office] {
            let found = try signatures(path)
            #expect(found["v-declined"].map { identical($0, .null) } == true, "\(path)")
            #expect(found["v-not-asked"].map { identical($0, .blob([])) } == true, "\(path)")
        }
    }
}

/// Whether two values are the same value: storage class and bits (`==` already compares reals by
/// bit pattern; this names the intent).
private func identical(_ a: SQLValue, _ b: SQLValue) -> Bool {
    a.storageClass == b.storageClass && a == b
}

private func identical(_ a: [SQLValue], _ b: [SQLValue]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { identical($0, $1) }
}
