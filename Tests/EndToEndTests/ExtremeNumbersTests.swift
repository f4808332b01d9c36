import Foundation
import GRDB
import KotaSyncCore
import KotaSyncServer
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// No request can take the server down: every number a request carries — query parameters, a
/// path id, a header, a JSON body, a dashboard form, the changeset's sequences and versions — at
/// 0, 2^31, 2^53, 2^63 − 1, 2^63, 2^64 − 1, negative and not a number is either accepted as
/// `Protocol/http-api.md` documents or refused with a 4xx and a stable code, never a 5xx, and the
/// server answers the next request. Run against the real `kotasync-server` binary, so that a trap
/// ends that process and shows as a failed request instead of ending the tests. Also the other
/// edges of issue 14: the login limit under concurrent attempts, the upload quota, a flood of
/// refused requests, a malformed chunked body.
@Suite(.serialized)
struct ExtremeNumbersTests {
    /// The values every numeric field is tried with.
    static let extremes = [
        "0", "2147483648", "9007199254740992", "9223372036854775807", "9223372036854775808",
        "18446744073709551615", "-1", "abc",
    ]
    static let beyondInt64: Set<String> = ["9223372036854775808", "18446744073709551615"]

    /// A device token, a viewer and an admin staff token, and a signed-in viewer's dashboard.
    struct Credentials {
        var device: String
        var viewer: String
        var admin: String
        var browser: Browser
        var csrf: String
    }

    static func credentials(_ server: ServerProcess) async throws -> Credentials {
        let password = "sandi-rahasia-vera"
        let added = try server.admin(["user", "add", "vera", "--role", "viewer"], input: password + "\n")
        try #require(added.status == 0, "user add: \(added.stderr)")
        let browser = Browser(server.url)
        let page = try await browser.get("/dashboard/login")
        let login = try await browser.post(
            "/dashboard/login", ["name": "vera", "password": password, "csrf": try #require(Browser.csrf(page.html))])
        try #require(login.status == 303, "dashboard login: \(login.status)")
        let data = try await browser.get("/dashboard/data/patients")
        return Credentials(
            device: try server.token(opd: "pkm-binjai-kota"), viewer: try server.staffToken("vina", role: "viewer"),
            admin: try server.staffToken("adi", role: "admin"), browser: browser,
            csrf: try #require(Browser.csrf(data.html)))
    }

    /// The server still answers, and answers a valid request correctly.
    static func expectServing(_ server: ServerProcess, token: String, after what: String) async throws {
        let health = try await http("GET", server.url.appendingPathComponent("v1/health"))
        #expect(health.status == 200, "health after \(what)")
        let pull = try await http("GET", server.url.appendingPathComponent("v1/pull"), token: token)
        #expect(pull.status == 200, "pull after \(what)")
    }

    /// A refusal is a 4xx with one of the protocol's codes in its body.
    static func expectStable(
        _ response: (status: Int, headers: [String: String], body: Data), _ what: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(response.status < 500, "\(what): \(response.status)", sourceLocation: sourceLocation)
        if response.status >= 400 {
            #expect(
                errorCode(response.body) != nil,
                "\(what): no error code in \(String(decoding: response.body, as: UTF8.self))",
                sourceLocation: sourceLocation)
        }
    }

    /// After the adversarial requests: the server stops cleanly, the master passes SQLite's
    /// integrity check and the audit chain verifies.
    static func expectIntact(_ server: ServerProcess) throws {
        server.stop()
        let check = try DatabaseQueue(path: server.database.path).read { db in
            try String.fetchAll(db, sql: "PRAGMA integrity_check")
        }
        #expect(check == ["ok"])
        let verify = try server.admin(["audit", "verify"])
        #expect(verify.status == 0, "audit verify: \(verify.stdout) \(verify.stderr)")
    }

    // MARK: Query parameters, headers, JSON and forms

    @Test func everyNumericParameterAtTheExtremesIsAcceptedOrRefusedWithAStableCode() async throws {
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(config: try sampleConfig(in: dir), directory: dir)
        defer { server.stop() }
        let who = try await Self.credentials(server)
        let base = server.url
        let replica = UUID().uuidString
        for value in Self.extremes {
            // Cursors and ids: 0 … 2^63 − 1; anything else is `400 bad_request`.
            for (path, token) in [("v1/pull", who.device), ("v1/review/conflicts", who.viewer)] {
                let response = try await http("GET", URL(string: "\(base)/\(path)?after=\(value)")!, token: token)
                Self.expectStable(response, "\(path)?after=\(value)")
                let accepted = !Self.beyondInt64.contains(value) && value != "-1" && value != "abc"
                #expect(response.status == (accepted ? 200 : 400), "\(path)?after=\(value)")
                if !accepted { #expect(errorCode(response.body) == "bad_request") }
            }
            let conflicts = try await http(
                "GET", URL(string: "\(base)/v1/conflicts?replica=\(replica)&after=\(value)")!, token: who.device)
            Self.expectStable(conflicts, "conflicts after=\(value)")
            // Page sizes: at least 1; a larger one, however large, is lowered to the maximum.
            for (path, token) in [
                ("v1/pull?", who.device), ("v1/review/conflicts?", who.viewer),
                ("v1/conflicts?replica=\(replica)&", who.device),
            ] {
                let response = try await http("GET", URL(string: "\(base)/\(path)limit=\(value)")!, token: token)
                Self.expectStable(response, "\(path)limit=\(value)")
                let accepted = !["0", "-1", "abc"].contains(value)
                #expect(response.status == (accepted ? 200 : 400), "\(path)limit=\(value)")
            }
            // A conflict record's id in the path.
            let record = try await http("GET", URL(string: "\(base)/v1/review/conflicts/\(value)")!, token: who.viewer)
            Self.expectStable(record, "review/conflicts/\(value)")
            #expect([400, 404].contains(record.status), "review/conflicts/\(value): \(record.status)")
            // An upload's announced length (a JSON number, or a string where a number belongs).
            let length = value == "abc" ? "\"abc\"" : value
            let announce = try await http(
                "POST", base.appendingPathComponent("v1/uploads"), token: who.device,
                body: Array(
                    "{\"changeset_id\": \"\(UUID().uuidString)\", \"length\": \(length), \"sha256\": \"\(String(repeating: "ab", count: 32))\"}"
                        .utf8), contentType: "application/json")
            Self.expectStable(announce, "upload length \(value)")
            #expect([400, 413].contains(announce.status), "upload length \(value): \(announce.status)")
            // A token's lifetime in days.
            let days = value == "abc" ? "\"abc\"" : value
            let created = try await http(
                "POST", base.appendingPathComponent("v1/admin/tokens"), token: who.admin,
                body: Array("{\"opd\": \"dinkes\", \"expires_days\": \(days)}".utf8), contentType: "application/json")
            Self.expectStable(created, "expires_days \(value)")
            #expect(created.status == 400, "expires_days \(value): \(created.status)")
            #expect(errorCode(created.body) == "bad_request")
            // The dashboard's data browser page and a conflict page's id.
            let page = try await who.browser.post("/dashboard/data/patients", ["page": value, "csrf": who.csrf])
            #expect(page.status == (value == "0" ? 200 : 400), "dashboard page=\(value): \(page.status)")
            let conflictPage = try await who.browser.get("/dashboard/conflicts/\(value)")
            #expect([400, 404].contains(conflictPage.status), "dashboard conflict \(value): \(conflictPage.status)")
            try await Self.expectServing(server, token: who.device, after: "the value \(value)")
        }
        // An upload's offset header, on an upload that exists.
        let upload = try await http(
            "POST", base.appendingPathComponent("v1/uploads"), token: who.device,
            body: Array(
                "{\"changeset_id\": \"\(UUID().uuidString)\", \"length\": 100, \"sha256\": \"\(String(repeating: "cd", count: 32))\"}"
                    .utf8), contentType: "application/json")
        let id = try ProtocolJSON.decoder().decode(UploadStatus.self, from: upload.body).id
        for value in Self.extremes {
            var request = URLRequest(url: base.appendingPathComponent("v1/uploads/\(id)"))
            request.httpMethod = "PATCH"
            request.setValue("Bearer \(who.device)", forHTTPHeaderField: "Authorization")
            request.setValue(value, forHTTPHeaderField: UploadHeaders.offset)
            request.setValue(String(repeating: "00", count: 32), forHTTPHeaderField: UploadHeaders.chunkSHA256)
            request.httpBody = Data([1, 2, 3])
            let (data, response) = try await URLSession.shared.data(for: request)
            let status = (response as! HTTPURLResponse).statusCode
            Self.expectStable((status, [:], data), "Upload-Offset \(value)")
            #expect(status != 200, "Upload-Offset \(value)")
            if ["-1", "abc"].contains(value) || Self.beyondInt64.contains(value) { #expect(status == 400) }
        }
        try await Self.expectServing(server, token: who.device, after: "the upload offsets")
        try Self.expectIntact(server)
    }

    /// Issue 14 item 5: `after` beyond 2^63 − 1 was a trap (the process died).
    @Test func aPullAfterBeyondTheLargestCursorIsABadRequestAndTheServerGoesOn() async throws {
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(config: try sampleConfig(in: dir), directory: dir)
        defer { server.stop() }
        let token = try server.token(opd: "pkm-binjai-kota")
        for value in Self.beyondInt64 {
            let response = try await http(
                "GET", URL(string: "\(server.url)/v1/pull?after=\(value)")!, token: token)
            #expect(response.status == 400)
            #expect(errorCode(response.body) == "bad_request")
            let message = try ProtocolJSON.decoder().decode(ErrorBody.self, from: response.body).error.message
            #expect(message.contains("9223372036854775807"), "the message gives the range: \(message)")
        }
        try await Self.expectServing(server, token: token, after: "after=2^63")
        try Self.expectIntact(server)
    }

    /// Issue 14 item 7: a viewer's data browser page of 2^62 was a trap (the offset overflowed).
    @Test func aDataBrowserPageBeyondItsRangeIsABadRequestAndTheServerGoesOn() async throws {
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(config: try sampleConfig(in: dir), directory: dir)
        defer { server.stop() }
        let who = try await Self.credentials(server)
        let page = try await who.browser.post(
            "/dashboard/data/patients", ["page": "4611686018427387904", "csrf": who.csrf])
        #expect(page.status == 400)
        #expect(page.html.contains("bad_request"))
        #expect(try await who.browser.post("/dashboard/data/patients", ["page": "1", "csrf": who.csrf]).status == 200)
        try await Self.expectServing(server, token: who.device, after: "page=2^62")
        try Self.expectIntact(server)
    }

    // MARK: Changesets

    static let villages = Changeset.Table(name: "villages", primaryKey: ["code"], columns: ["name", "district"])

    static func push(first: UInt64 = 1, last: UInt64 = 1, version: UInt64 = 0, base: UInt64? = nil) -> Changeset {
        Changeset(
            kind: .push, id: UUID(), replicaID: UUID(), firstSequence: first, lastSequence: last, tables: [villages],
            rows: [
                Changeset.Row(
                    table: 0, operation: version == 0 ? .upsert : .update, version: version,
                    stamp: HLC(milliseconds: UInt64(Date().timeIntervalSince1970 * 1000), counter: 0),
                    primaryKey: [.text(version == 0 ? "9\(Int.random(in: 100_000...999_999))" : "1275020003")],
                    columns: [
                        .init(column: 0, value: .text("Desa Uji"), baseVersion: base),
                        .init(column: 1, value: .text("Uji")),
                    ])
            ])
    }

    @Test func everyChangesetNumberAtTheExtremesIsAcceptedOrRefusedWithAStableCode() async throws {
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(config: try sampleConfig(in: dir), directory: dir)
        defer { server.stop() }
        let token = try server.token(opd: "pkm-binjai-kota")
        let values: [UInt64] = [0, 1 << 31, 1 << 53, UInt64(Int64.max), 1 << 63, .max]
        for value in values {
            let cases: [(String, Changeset)] = [
                ("first_sequence", Self.push(first: value, last: max(value, 1))),
                ("last_sequence", Self.push(first: 1, last: value)),
                ("version", Self.push(version: value)),
                ("base_version", Self.push(version: 1, base: value)),
            ]
            for (field, changeset) in cases {
                let response = try await http(
                    "POST", server.url.appendingPathComponent("v1/push"), token: token,
                    body: ChangesetCodec.encode(changeset))
                Self.expectStable(response, "\(field) = \(value)")
                if value > UInt64(Int64.max) {
                    #expect(response.status == 400, "\(field) = \(value)")
                    #expect(errorCode(response.body) == "changeset_malformed", "\(field) = \(value)")
                }
                try await Self.expectServing(server, token: token, after: "\(field) = \(value)")
            }
        }
        try Self.expectIntact(server)
    }

    /// Issue 14 item 6: a changeset whose sequences or versions are 2^63 or more killed the
    /// server, and the client resends its outbox byte for byte, so it killed it again after every
    /// restart. It is refused as malformed, before and after a restart, and the server goes on.
    @Test func aChangesetWithNumbersBeyondInt64IsRefusedBeforeAndAfterARestart() async throws {
        let dir = try makeTemporaryDirectory()
        let config = try sampleConfig(in: dir)
        let visits = Changeset.Table(
            name: "visits", primaryKey: ["id"], columns: ["patient_id", "clinic_id", "visit_date"])
        // A visit of a patient the master does not have: it would be held, with its version.
        let held = Changeset(
            kind: .push, id: UUID(), replicaID: UUID(), firstSequence: 1, lastSequence: 1, tables: [visits],
            rows: [
                Changeset.Row(
                    table: 0, operation: .update, version: 1 << 63,
                    stamp: HLC(milliseconds: 1_764_000_000_000, counter: 0),
                    primaryKey: [.text("v-poison")],
                    columns: [
                        .init(column: 0, value: .text("p-nobody")), .init(column: 1, value: .text("pkm-binjai-kota")),
                        .init(column: 2, value: .text("2026-12-01")),
                    ])
            ])
        let pills = [
            ChangesetCodec.encode(Self.push(first: 1 << 63, last: 1 << 63)),
            ChangesetCodec.encode(Self.push(first: 1, last: .max)), ChangesetCodec.encode(held),
        ]
        var token = ""
        for round in 0..<2 {
            let server = try ServerProcess(config: config, directory: dir)
            defer { server.stop() }
            if round == 0 { token = try server.token(opd: "pkm-binjai-kota") }
            for pill in pills {
                let response = try await http(
                    "POST", server.url.appendingPathComponent("v1/push"), token: token, body: pill)
                #expect(response.status == 400, "round \(round)")
                #expect(errorCode(response.body) == "changeset_malformed", "round \(round)")
            }
            try await Self.expectServing(server, token: token, after: "the poison pills, round \(round)")
            try Self.expectIntact(server)
        }
    }
}
