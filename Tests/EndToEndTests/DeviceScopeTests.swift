import Foundation
import GRDB
import Hummingbird
import KotaSyncCore
import KotaSyncServer
import Logging
import ServiceLifecycle
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Issue 14's leaks through the side paths, tried as a second clinic would, against the real
/// server over real HTTP with the sample's sync rules as shipped: K is a device of
/// pkm-kebun-lada, B one of pkm-binjai-kota. Every byte a device receives is searched for the
/// other clinic's values and identifiers.
///
/// Every test runs on each backend (``MasterBackend``): rule 5 is the access service's, and
/// must hold whichever store answers it.
@Suite(.serialized)
struct DeviceScopeTests {
    static let kebunLada = "pkm-kebun-lada"
    static let binjaiKota = "pkm-binjai-kota"

    /// The in-process server with the sample's rules as shipped (`scoped: true`), on a master
    /// on `backend`.
    static func withScopedServer(
        _ backend: MasterBackend, _ name: String = #function,
        _ body: (URL, any MasterStore, URL) async throws -> Void
    ) async throws {
        let dir = try makeTemporaryDirectory(name)
        let config = try ServerConfig.load(from: try sampleConfig(in: dir, scoped: true))
        try await withMaster(backend, config: config, directory: dir) { master in
            try await withInProcessServer(config: config, store: master.store, logLevel: .warning) { port in
                try await body(URL(string: "http://127.0.0.1:\(port)")!, master.store, dir)
            }
        }
    }

    /// A request with extra headers; the body's text, for searching.
    static func send(
        _ method: String, _ url: URL, token: String?, headers: [String: String] = [:], body: [UInt8]? = nil
    ) async throws -> (status: Int, headers: [String: String], body: Data, text: String) {
        var request = URLRequest(url: url)
        request.httpMethod = method
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        if let body {
            request.httpBody = Data(body)
            request.setValue(changesetMediaType, forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        let http = response as! HTTPURLResponse
        var out: [String: String] = [:]
        for (k, v) in http.allHeaderFields { out["\(k)".lowercased()] = "\(v)" }
        return (http.statusCode, out, data, String(decoding: data, as: UTF8.self))
    }

    /// A patient as a clinic's device registers it, and what of it must never reach another clinic.
    struct Patient {
        var id: String
        var nik: String
        var name: String
        var phone: String
        var birthDate: String
        var village: String
        var clinic: String
        var replica: UUID
        var stamp: HLC

        /// A push of this patient's registration as sequence `sequence` of its replica.
        func push(sequence: UInt64) -> [UInt8] {
            let columns = ["nik", "name", "birth_date", "village_code", "phone", "clinic_id"]
            let values: [SQLValue] = [
                .text(nik), .text(name), .text(birthDate), .text(village), .text(phone), .text(clinic),
            ]
            return ChangesetCodec.encode(
                Changeset(
                    kind: .push, id: UUID(), replicaID: replica, firstSequence: sequence, lastSequence: sequence,
                    tables: [Changeset.Table(name: "patients", primaryKey: ["id"], columns: columns)],
                    rows: [
                        Changeset.Row(
                            table: 0, operation: .upsert, version: 0, stamp: stamp, primaryKey: [.text(id)],
                            columns: values.enumerated().map { Changeset.ColumnValue(column: $0, value: $1) })
                    ]))
        }

        /// Everything that identifies the row or its writer: none of it may reach another OPD.
        var secrets: [String] {
            [
                id, name, phone, birthDate, clinic, replica.uuidString, replica.uuidString.lowercased(),
                String(stamp.rawValue),
            ]
        }
    }

    static func patient(_ tag: String, clinic: String, nik: String, name: String, phone: String) -> Patient {
        Patient(
            id: "\(tag)-\(UUID().uuidString.lowercased())", nik: nik, name: name, phone: phone,
            birthDate: tag == "k" ? "1988-02-11" : "1990-04-17", village: "1275020003", clinic: clinic,
            replica: UUID(),
            stamp: HLC(milliseconds: UInt64(Date().timeIntervalSince1970 * 1000), counter: tag == "k" ? 3 : 9))
    }

    static func expectNone(of secrets: [String], in text: String, _ what: String) {
        for secret in secrets {
            #expect(!text.contains(secret), "\(what) carries \(secret): \(text)")
        }
    }

    /// Leak 1: K registers a patient by NIK, then B registers the same person. B's row is
    /// quarantined against K's. K's conflict list and push replies carry nothing of B's row; B is
    /// told its row waits for the Command Center's review, in words that name nothing of K's.
    @Test(arguments: MasterBackend.enabled)
    func aConflictRecordNeverCarriesAnotherClinicsRow(backend: MasterBackend) async throws {
        try await Self.withScopedServer(backend) { url, store, _ in
            let k = try await store.createToken(opd: Self.kebunLada, expiresAt: nil).token
            let b = try await store.createToken(opd: Self.binjaiKota, expiresAt: nil).token
            let nik = "1275014107900003"
            let kRow = Self.patient("k", clinic: Self.kebunLada, nik: nik, name: "Rina Kebun", phone: "0813-0000-1111")
            let bRow = Self.patient(
                "b", clinic: Self.binjaiKota, nik: nik, name: "Rina Binjai", phone: "0812-9999-2222")
            let push = url.appendingPathComponent("v1/push")

            let kFirst = try await Self.send("POST", push, token: k, body: kRow.push(sequence: 1))
            try #require(kFirst.status == 200, "\(kFirst.text)")
            let bReply = try await Self.send("POST", push, token: b, body: bRow.push(sequence: 1))
            try #require(bReply.status == 200, "\(bReply.text)")

            // B: its row waits, and why, with nothing of K's row.
            Self.expectNone(of: kRow.secrets, in: bReply.text, "B's push reply")
            let reply = try ProtocolJSON.decoder().decode(PushReply.self, from: bReply.body)
            let record = try #require(reply.conflicts.first)
            #expect(reply.conflicts.count == 1)
            #expect(record.kind == .unique && record.status == "open")
            #expect(record.primaryKey == [.text(bRow.id)])
            #expect(record.loser?.replicaId == bRow.replica)
            #expect(record.winner == nil && record.related == nil && record.base == nil)
            #expect(
                record.reason
                    == "Another record in the city already uses this nik; the Command Center reviews both before either is shared."
            )
            #expect(record.held?.values["name"] == .text(bRow.name), "its own row, as it sent it")

            // K: nothing of B's, in its conflict list or in the reply to its next push.
            let kList = try await Self.send(
                "GET", URL(string: url.absoluteString + "/v1/conflicts?replica=\(kRow.replica.uuidString)")!, token: k)
            #expect(kList.status == 200)
            Self.expectNone(of: bRow.secrets, in: kList.text, "K's conflict list")
            #expect(try ProtocolJSON.decoder().decode(ConflictList.self, from: kList.body).conflicts.isEmpty)
            var kNext = Self.patient("k", clinic: Self.kebunLada, nik: "1275014107900004", name: "Dedi", phone: "0")
            kNext.replica = kRow.replica
            let kSecond = try await Self.send("POST", push, token: k, body: kNext.push(sequence: 2))
            #expect(kSecond.status == 200)
            Self.expectNone(of: bRow.secrets, in: kSecond.text, "K's next push reply")
            let kPull = try await Self.send("GET", url.appendingPathComponent("v1/pull"), token: k)
            let page = try ChangesetCodec.decode([UInt8](kPull.body))
            Self.expectNone(of: bRow.secrets, in: "\(page.rows)", "K's pull")

            // B's own list says the same as its push reply did.
            let bList = try await Self.send(
                "GET", URL(string: url.absoluteString + "/v1/conflicts?replica=\(bRow.replica.uuidString)")!, token: b)
            Self.expectNone(of: kRow.secrets, in: bList.text, "B's conflict list")
            #expect(try ProtocolJSON.decoder().decode(ConflictList.self, from: bList.body).conflicts == [record])

            // The Command Center sees both sides.
            let staff = try await store.createStaffToken(name: "Ani Lubis", role: .viewer, expiresAt: nil).token
            let full = try await store.reviewConflict(id: record.id)
            #expect(full.winner?.opd == Self.kebunLada && full.related?.primaryKey == [.text(kRow.id)])
            let review = try await Self.send(
                "GET", url.appendingPathComponent("v1/review/conflicts/\(record.id)"), token: staff)
            #expect(review.status == 200 && review.text.contains(kRow.id))
        }
    }

    /// A device asking for another OPD's replica's conflicts gets what it gets for a replica that
    /// does not exist: an empty list.
    @Test(arguments: MasterBackend.enabled)
    func anotherClinicsReplicaHasNoConflictsForThisDevice(backend: MasterBackend) async throws {
        try await Self.withScopedServer(backend) { url, store, _ in
            let k = try await store.createToken(opd: Self.kebunLada, expiresAt: nil).token
            let b = try await store.createToken(opd: Self.binjaiKota, expiresAt: nil).token
            let bRow = Self.patient("b", clinic: Self.binjaiKota, nik: "1275014107900005", name: "Ina", phone: "1")
            let pushed = try await Self.send(
                "POST", url.appendingPathComponent("v1/push"), token: b, body: bRow.push(sequence: 1))
            try #require(pushed.status == 200)
            var replies: [(Int, String)] = []
            for replica in [bRow.replica, UUID()] {
                let list = try await Self.send(
                    "GET", URL(string: url.absoluteString + "/v1/conflicts?replica=\(replica.uuidString)")!, token: k)
                replies.append((list.status, list.text))
            }
            #expect(replies[0] == replies[1])
            #expect(replies[0].0 == 200)
        }
    }

    /// A change to a key the device cannot see gets the reply a change to a key nobody holds gets:
    /// K sends partial updates (only columns it may write, the clinic left out or set to its own)
    /// of B's patient and of a key the master never had, each in its own push, and the replies are
    /// the same but for the key.
    @Test(arguments: MasterBackend.enabled)
    func anUpdateOfAnotherClinicsRowIsAnsweredAsOneOfAKeyNobodyHolds(backend: MasterBackend) async throws {
        try await Self.withScopedServer(backend) { url, store, _ in
            let k = try await store.createToken(opd: Self.kebunLada, expiresAt: nil).token
            let b = try await store.createToken(opd: Self.binjaiKota, expiresAt: nil).token
            let bRow = Self.patient(
                "b", clinic: Self.binjaiKota, nik: "1275014107900006", name: "Ina Binjai", phone: "0812-5555-0006")
            let push = url.appendingPathComponent("v1/push")
            try #require(try await Self.send("POST", push, token: b, body: bRow.push(sequence: 1)).status == 200)

            let replica = UUID()
            var sequence: UInt64 = 0
            /// K's update of `key` with `columns`, the reply with the key and the changeset's
            /// own ids masked.
            func update(_ key: String, _ columns: [(String, SQLValue)]) async throws -> (Int, String) {
                sequence += 1
                let id = UUID()
                let body = ChangesetCodec.encode(
                    Changeset(
                        kind: .push, id: id, replicaID: replica, firstSequence: sequence, lastSequence: sequence,
                        tables: [Changeset.Table(name: "patients", primaryKey: ["id"], columns: columns.map(\.0))],
                        rows: [
                            Changeset.Row(
                                table: 0, operation: .update, version: 0,
                                stamp: HLC(milliseconds: UInt64(Date().timeIntervalSince1970 * 1000), counter: 1),
                                primaryKey: [.text(key)],
                                columns: columns.enumerated().map { Changeset.ColumnValue(column: $0, value: $1.1) })
                        ]))
                let reply = try await Self.send("POST", push, token: k, body: body)
                Self.expectNone(of: bRow.secrets.filter { $0 != bRow.id }, in: reply.text, "K's reply")
                var text = reply.text.replacingOccurrences(of: key, with: "KEY")
                text = text.replacingOccurrences(of: id.uuidString.lowercased(), with: "ID")
                text = text.replacingOccurrences(of: id.uuidString, with: "ID")
                // The city-wide master sequence moves with every push; it names no row (access.md §4).
                text = text.replacing(#/"master_sequence":\d+/#, with: "\"master_sequence\":N")
                return (reply.status, text)
            }
            let shapes: [[(String, SQLValue)]] = [
                [("name", .text("Dewi"))],
                [("phone", .text("0813")), ("village_code", .text("1275020003"))],
            ]
            for columns in shapes {
                let other = try await update(bRow.id, columns)
                let nobody = try await update("k-\(UUID().uuidString.lowercased())", columns)
                #expect(other == nobody, "columns \(columns.map(\.0))")
                #expect(other.0 == 200 && other.1.contains(#""code":"out_of_scope""#))
            }
            // The one exception (access.md §5.1): a change that would put the key into K's own
            // clinic creates a row when nobody holds the key, and is refused `out_of_scope`
            // (discard) when another clinic's row holds it. One bit, the key's; nothing of the row.
            let claim: [(String, SQLValue)] = [("name", .text("Dewi")), ("clinic_id", .text(Self.kebunLada))]
            let taken = try await update(bRow.id, claim)
            #expect(
                taken.0 == 200 && taken.1.contains(#""code":"out_of_scope""#)
                    && taken.1.contains(#""action":"discard""#))
            let free = try await update("k-\(UUID().uuidString.lowercased())", claim)
            #expect(free.0 == 200 && free.1.contains(#""applied":1"#))
            // B's row is untouched.
            let row = try #require(try await store.browseRow(table: "patients", key: [.text(bRow.id)]))
            #expect(row.contains(.text(bRow.name)) && !row.contains(.text("Dewi")))
        }
    }

    /// Leak 4: K's token with B's replica id in `KotaSync-Replica` does not change B's entry on the
    /// Command Center's overview, and K's reply is the one it gets for an unknown replica.
    @Test(arguments: MasterBackend.enabled)
    func aDeviceCannotReportAnotherClinicsReplicaHealth(backend: MasterBackend) async throws {
        try await Self.withScopedServer(backend) { url, store, _ in
            let k = try await store.createToken(opd: Self.kebunLada, expiresAt: nil).token
            let b = try await store.createToken(opd: Self.binjaiKota, expiresAt: nil).token
            let bRow = Self.patient(
                "b", clinic: Self.binjaiKota, nik: "1275014107900006", name: "Ina Binjai", phone: "0812-5555-0006")
            let pushed = try await Self.send(
                "POST", url.appendingPathComponent("v1/push"), token: b, body: bRow.push(sequence: 1))
            try #require(pushed.status == 200)
            let pull = url.appendingPathComponent("v1/pull")
            let own = try await Self.send(
                "GET", pull, token: b,
                headers: [
                    DeviceHeaders.replica: bRow.replica.uuidString, DeviceHeaders.client: "kotasync/0.9.0",
                    DeviceHeaders.pending: "2",
                ])
            #expect(own.status == 200)
            // B's report is written; whatever is said about B's replica later would overwrite it.
            try await store.flushAudit()

            var statuses: [Int] = []
            for replica in [bRow.replica, UUID()] {
                let spoof = try await Self.send(
                    "GET", pull, token: k,
                    headers: [
                        DeviceHeaders.replica: replica.uuidString, DeviceHeaders.client: "spoof/6.6.6",
                        DeviceHeaders.pending: "999", DeviceHeaders.lastError: "spoofed_by_kebun_lada",
                    ])
                statuses.append(spoof.status)
            }
            #expect(statuses == [200, 200])

            let overview = try await store.overview(timeZone: TimeZone(identifier: "Asia/Jakarta")!)
            let entry = try #require(overview.devices.first { $0.replicaId == bRow.replica })
            #expect(entry.opd == Self.binjaiKota)
            #expect(entry.pending == 2)
            #expect(entry.lastError == nil)
            #expect(entry.clientVersion == "kotasync/0.9.0")
            #expect(overview.devices.count == 1, "no entry for a replica the master does not know")
        }
    }

    /// The routes are grouped by the credential they need: a device token opens no staff route, a
    /// staff token no device route, a viewer no reviewer or admin route; each refusal is the
    /// protocol's `forbidden` (or `unauthorized` without a token), audited under the route's action.
    @Test(arguments: MasterBackend.enabled)
    func eachRouteGroupOpensOnlyForItsCredential(backend: MasterBackend) async throws {
        try await Self.withScopedServer(backend) { url, store, _ in
            let device = try await store.createToken(opd: Self.kebunLada, expiresAt: nil).token
            let viewer = try await store.createStaffToken(name: "Vera", role: .viewer, expiresAt: nil).token
            let reviewer = try await store.createStaffToken(name: "Rudi", role: .reviewer, expiresAt: nil).token
            let admin = try await store.createStaffToken(name: "Ani", role: .admin, expiresAt: nil).token
            let replica = UUID().uuidString
            // (method, path, audit action, the tokens that must be refused with `forbidden`)
            let routes: [(String, String, String?, [String])] = [
                ("GET", "/v1/schema", "schema", [viewer, admin]),
                ("POST", "/v1/push", "push", [viewer, reviewer, admin]),
                ("GET", "/v1/pull", "pull", [viewer, admin]),
                ("GET", "/v1/conflicts?replica=\(replica)", "conflicts", [reviewer, admin]),
                ("POST", "/v1/uploads", nil, [viewer, admin]),
                ("GET", "/v1/uploads/u1", nil, [admin]),
                ("DELETE", "/v1/uploads/u1", nil, [admin]),
                ("GET", "/v1/review/conflicts", "review.list", [device]),
                ("GET", "/v1/review/conflicts/1", "review.show", [device]),
                ("POST", "/v1/review/conflicts/1/resolve", "review.resolve", [device, viewer]),
                ("GET", "/v1/admin/tokens", "admin.tokens.list", [device, viewer, reviewer]),
                ("POST", "/v1/admin/tokens", "token.create", [device, reviewer]),
                ("POST", "/v1/admin/tokens/t1/revoke", "token.revoke", [device, viewer]),
                ("GET", "/v1/admin/users", "admin.users.list", [device, reviewer]),
            ]
            for (method, path, _, refused) in routes {
                let target = URL(string: url.absoluteString + path)!
                let anonymous = try await Self.send(method, target, token: nil)
                #expect(anonymous.status == 401, "\(method) \(path) without a token")
                #expect(errorCode(anonymous.body) == "unauthorized")
                for token in refused {
                    let response = try await Self.send(method, target, token: token)
                    #expect(response.status == 403, "\(method) \(path): \(response.text)")
                    #expect(errorCode(response.body) == "forbidden")
                }
            }
            try await store.flushAudit()
            let entries = try await store.auditEntries(since: nil, opd: nil, after: 0, limit: 10_000)
            for (method, path, action, _) in routes {
                let name = action ?? "\(method) \(path.split(separator: "?")[0])"
                #expect(entries.contains { $0.action == name && $0.status == 401 }, "\(name) refused is audited")
                #expect(entries.contains { $0.action == name && $0.status == 403 }, "\(name) forbidden is audited")
            }
            let revoke = try await Self.send("POST", url.appendingPathComponent("v1/logout"), token: device)
            #expect(revoke.status == 403, "only a session logs out")
        }
    }

    /// The same with the real binaries, as a clinic's operator would see it: B registers, in the
    /// sqlite3 shell, a patient with the NIK of Kebun Lada's Budi. `kotasync conflicts` and
    /// `kotasync status` on B say its row waits for review and name nothing of Budi's record;
    /// Kebun Lada's device lists no record at all.
    @Test(arguments: MasterBackend.enabled)
    func theClinicsCommandLineShowsItsWaitingRowAndNothingOfTheOther(backend: MasterBackend) async throws {
        let dir = try makeTemporaryDirectory()
        try await withMasterLocation(backend, directory: dir) { master in
            // Blocks while the programs run, as this test always has: not through `offPool`,
            // whose thread would carry no test for the `#expect`s to report to.
            try Self.commandLineStory(dir: dir, master: master)
        }
    }

    static func commandLineStory(dir: URL, master: TestMasterLocation) throws {
        let server = try ServerProcess(
            config: try sampleConfig(in: dir, scoped: true), directory: dir, master: master.postgres?.description,
            password: master.password)
        defer { server.stop() }
        var paths: [String: String] = [:]
        for opd in [Self.binjaiKota, Self.kebunLada] {
            let path = dir.appendingPathComponent("\(opd).sqlite").path
            let result = try run(
                "kotasync",
                ["init", "--db", path, "--server", server.url.absoluteString, "--token", try server.token(opd: opd)])
            try #require(result.status == 0, "init \(opd): \(result.stderr)")
            paths[opd] = path
        }
        let b = try #require(paths[Self.binjaiKota])
        let shell = try run(
            "/usr/bin/sqlite3",
            [
                b,
                """
                INSERT INTO patients (id, nik, name, birth_date, clinic_id)
                VALUES ('p-dup', '1275021207750002', 'Budi S', '1975-07-12', 'pkm-binjai-kota');
                """,
            ])
        try #require(shell.status == 0, "\(shell.stderr)")
        _ = try run("kotasync", ["sync", "--db", b])
        // Budi's record as Kebun Lada holds it: none of it may reach Binjai Kota.
        let budi = ["0b6f2a8e-4c1d-4e0a-9d3b-2f6c1a7e5b02", "Budi Santoso", "081370002222", Self.kebunLada]

        let listed = try run("kotasync", ["conflicts", "--db", b, "--json"])
        #expect(listed.status == 0, "\(listed.stderr)")
        Self.expectNone(of: budi, in: listed.stdout, "kotasync conflicts --json")
        #expect(listed.stdout.contains("Another record in the city already uses this nik"))
        let text = try run("kotasync", ["conflicts", "--db", b])
        Self.expectNone(of: budi, in: text.stdout, "kotasync conflicts")
        #expect(text.stdout.contains("unique on patients.nik ['p-dup']"), "\(text.stdout)")
        let status = try run("kotasync", ["status", "--db", b])
        Self.expectNone(of: budi, in: status.stdout + status.stderr, "kotasync status")

        let k = try #require(paths[Self.kebunLada])
        _ = try run("kotasync", ["sync", "--db", k])
        let kebun = try run("kotasync", ["conflicts", "--db", k, "--json"])
        #expect(kebun.status == 0)
        Self.expectNone(of: ["p-dup", "Budi S\"", Self.binjaiKota], in: kebun.stdout, "Kebun Lada's conflicts")
    }
}
