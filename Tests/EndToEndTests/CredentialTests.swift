import Foundation
import GRDB
import KotaSyncClient
import KotaSyncCore
import KotaSyncServer
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Tokens, staff accounts and logins on a real server (an `Application` on port 0) over
/// loopback HTTP: revocation, expiry, roles on the admin routes, sessions, and the limits.
struct CredentialTests {
    /// The sample configuration with the limit `line` (`key: value`) in place of the sample's.
    static func limit(_ line: String) -> (String) -> String {
        let key = line.split(separator: ":")[0]
        return { text in
            text.split(separator: "\n", omittingEmptySubsequences: false).map {
                $0.hasPrefix("  \(key):") ? "  \(line)" : String($0)
            }.joined(separator: "\n")
        }
    }

    static func pull(_ url: URL, token: String?) async throws -> (status: Int, headers: [String: String], body: Data) {
        try await http("GET", url.appendingPathComponent("v1/pull"), token: token)
    }

    static func login(_ url: URL, _ name: String, _ password: String) async throws -> (
        status: Int, headers: [String: String], body: Data
    ) {
        try await http(
            "POST", url.appendingPathComponent("v1/login"),
            body: [UInt8](
                try ProtocolJSON.encoder().encode(LoginRequest(name: name, password: password))),
            contentType: "application/json")
    }

    @Test func aRevokedTokenIsRefusedOnItsNextRequest() async throws {
        try await InProcessServerTests.withServer { url, store, _ in
            let issued = try await store.createToken(opd: "dinkes", expiresAt: nil)
            #expect(try await Self.pull(url, token: issued.token).status == 200)
            let revoked = try await store.revokeToken(id: issued.id)
            #expect(revoked.revokedAt != nil)
            let refused = try await Self.pull(url, token: issued.token)
            #expect(refused.status == 401)
            #expect(errorCode(refused.body) == "unauthorized")
        }
    }

    @Test func expiredAndMalformedTokensAreUnauthorized() async throws {
        try await InProcessServerTests.withServer { url, store, _ in
            let good = try await store.createToken(opd: "dinkes", expiresAt: nil).token
            let expired = try await store.createToken(opd: "dinkes", expiresAt: Date().addingTimeInterval(-1)).token
            for token in [expired, "", "kst_", "kst_00000000_", String(good.dropLast()), good + "x", "not a token"] {
                let response = try await Self.pull(url, token: token)
                #expect(response.status == 401, "token \(token.debugDescription)")
                #expect(errorCode(response.body) == "unauthorized")
            }
            var request = URLRequest(url: url.appendingPathComponent("v1/pull"))
            request.setValue("Basic \(good)", forHTTPHeaderField: "Authorization")
            let (_, response) = try await URLSession.shared.data(for: request)
            #expect((response as! HTTPURLResponse).statusCode == 401)
        }
    }

    @Test func onlyAnAdminOpensTheAdminRoutes() async throws {
        try await InProcessServerTests.withServer { url, store, _ in
            let device = try await store.createToken(opd: "dinkes", expiresAt: nil).token
            let reviewer = try await store.createStaffToken(name: "Rina", role: .reviewer, expiresAt: nil).token
            let tokens = url.appendingPathComponent("v1/admin/tokens")
            for token in [device, reviewer] {
                for response in [
                    try await http("GET", tokens, token: token),
                    try await http(
                        "POST", tokens, token: token, body: Array(#"{"opd":"dinkes"}"#.utf8),
                        contentType: "application/json"),
                    try await http("POST", tokens.appendingPathComponent("x/revoke"), token: token),
                    try await http("GET", url.appendingPathComponent("v1/admin/users"), token: token),
                ] {
                    #expect(response.status == 403)
                    #expect(errorCode(response.body) == "forbidden")
                }
            }
        }
    }

    @Test func anAdminListsCreatesAndRevokesTokensWithoutSeeingSecrets() async throws {
        try await InProcessServerTests.withServer { url, store, _ in
            let admin = try await store.createStaffToken(name: "Ani Lubis", role: .admin, expiresAt: nil).token
            let tokens = url.appendingPathComponent("v1/admin/tokens")
            let created = try await http(
                "POST", tokens, token: admin, body: Array(#"{"opd":"pkm-binjai-kota","expires_days":30}"#.utf8),
                contentType: "application/json")
            #expect(created.status == 201)
            let issued = try ProtocolJSON.decoder().decode(IssuedTokenDocument.self, from: created.body)
            #expect(issued.kind == "device" && issued.opd == "pkm-binjai-kota" && issued.expiresAt != nil)
            #expect(try await Self.pull(url, token: issued.token).status == 200)

            let listed = try await http("GET", tokens, token: admin)
            #expect(listed.status == 200)
            let text = String(decoding: listed.body, as: UTF8.self)
            #expect(!text.contains(issued.token) && !text.contains(secretPart(issued.token)))
            #expect(!text.contains(secretPart(admin)))
            let list = try ProtocolJSON.decoder().decode(TokenList.self, from: listed.body)
            let entry = try #require(list.tokens.first { $0.id == issued.id })
            #expect(entry.lastUsedAt != nil, "the pull above was recorded")
            #expect(list.tokens.contains { $0.kind == "staff" && $0.name == "Ani Lubis" && $0.role == "admin" })

            let revoked = try await http("POST", tokens.appendingPathComponent("\(issued.id)/revoke"), token: admin)
            #expect(revoked.status == 200)
            #expect(try await Self.pull(url, token: issued.token).status == 401)
            let unknown = try await http("POST", tokens.appendingPathComponent("ffffffff/revoke"), token: admin)
            #expect(unknown.status == 404)
        }
    }

    @Test func aLoginOpensTheReviewAPIWithTheAccountsRoleUntilLogout() async throws {
        try await InProcessServerTests.withServer { url, store, dir in
            _ = try await store.addUser(name: "Rina Siregar", role: .reviewer, password: "kopi susu pagi hari")
            let response = try await Self.login(url, "Rina Siregar", "kopi susu pagi hari")
            #expect(response.status == 200)
            let session = try ProtocolJSON.decoder().decode(IssuedTokenDocument.self, from: response.body)
            #expect(session.kind == "session" && session.role == "reviewer" && session.expiresAt != nil)

            let queue = try await http("GET", url.appendingPathComponent("v1/review/conflicts"), token: session.token)
            #expect(queue.status == 200)
            #expect(try await Self.pull(url, token: session.token).status == 403, "a session never syncs")
            let admin = try await http("GET", url.appendingPathComponent("v1/admin/tokens"), token: session.token)
            #expect(admin.status == 403, "a reviewer manages no tokens")

            let logout = try await http("POST", url.appendingPathComponent("v1/logout"), token: session.token)
            #expect(logout.status == 204)
            let after = try await http("GET", url.appendingPathComponent("v1/review/conflicts"), token: session.token)
            #expect(after.status == 401)

            // The password is stored only as its scrypt hash with its parameters and salt.
            try await store.flushAudit()
            let master = dir.appendingPathComponent("master.sqlite").path
            let row = try await DatabaseQueue(path: master).read { db in
                try Row.fetchOne(db, sql: "SELECT * FROM _ks_users WHERE name = 'Rina Siregar'")
            }
            let stored = try #require(row)
            #expect(stored["password_kdf"] == "scrypt")
            #expect((stored["password_params"] as String).contains("N="))
            #expect((stored["password_hash"] as Data).count == 32)
            for file in [master, master + "-wal"] where FileManager.default.fileExists(atPath: file) {
                let bytes = try Data(contentsOf: URL(fileURLWithPath: file))
                #expect(bytes.range(of: Data("kopi susu pagi hari".utf8)) == nil, "no clear password in \(file)")
                #expect(bytes.range(of: Data(session.token.utf8)) == nil, "no session token in \(file)")
            }
        }
    }

    @Test func aWrongPasswordIsRefusedAndRepeatedFailuresAreRateLimited() async throws {
        try await InProcessServerTests.withServer(configure: Self.limit("login_failures: 3")) { url, store, _ in
            _ = try await store.addUser(name: "Ani", role: .admin, password: "teh manis dingin")
            for _ in 0..<3 {
                let wrong = try await Self.login(url, "Ani", "teh manis panas")
                #expect(wrong.status == 401)
                #expect(errorCode(wrong.body) == "unauthorized")
            }
            // Now even the right password waits: the name has failed too often.
            let limited = try await Self.login(url, "Ani", "teh manis dingin")
            #expect(limited.status == 429)
            #expect(errorCode(limited.body) == "rate_limited")
            let wait = try #require(limited.headers["retry-after"].flatMap(Int.init))
            #expect(wait > 0 && wait <= 900)
            // The address failed too often as well: another name from it waits too.
            _ = try await store.addUser(name: "Budi", role: .viewer, password: "es cendol enak")
            #expect(try await Self.login(url, "Budi", "es cendol enak").status == 429)
            // An unknown name is refused like a wrong password.
            #expect(try await Self.login(url, "Nobody", "whatever it is").status == 429)
        }
    }

    @Test func anUnknownNameIsRefusedLikeAWrongPassword() async throws {
        try await InProcessServerTests.withServer { url, store, _ in
            _ = try await store.addUser(name: "Ani", role: .admin, password: "teh manis dingin")
            let unknown = try await Self.login(url, "Nobody", "teh manis dingin")
            let wrong = try await Self.login(url, "Ani", "teh manis panas")
            #expect(unknown.status == 401 && wrong.status == 401)
            #expect(
                try ProtocolJSON.decoder().decode(ErrorBody.self, from: unknown.body)
                    == ProtocolJSON.decoder().decode(ErrorBody.self, from: wrong.body))
        }
    }

    @Test func removingAUserOrChangingThePasswordEndsItsSessions() async throws {
        try await InProcessServerTests.withServer { url, store, _ in
            _ = try await store.addUser(name: "Ani", role: .viewer, password: "teh manis dingin")
            let first = try ProtocolJSON.decoder().decode(
                IssuedTokenDocument.self, from: try await Self.login(url, "Ani", "teh manis dingin").body)
            try await store.setPassword(name: "Ani", password: "kopi tubruk panas")
            let queue = url.appendingPathComponent("v1/review/conflicts")
            #expect(try await http("GET", queue, token: first.token).status == 401)
            #expect(try await Self.login(url, "Ani", "teh manis dingin").status == 401)
            let second = try ProtocolJSON.decoder().decode(
                IssuedTokenDocument.self, from: try await Self.login(url, "Ani", "kopi tubruk panas").body)
            #expect(try await http("GET", queue, token: second.token).status == 200)
            try await store.removeUser(name: "Ani")
            #expect(try await http("GET", queue, token: second.token).status == 401)
        }
    }

    @Test func aTokenOverItsRequestsPerMinuteIsRateLimitedWhileOthersAreServed() async throws {
        try await InProcessServerTests.withServer(configure: Self.limit("requests_per_minute: 3")) { url, store, _ in
            let busy = try await store.createToken(opd: "dinkes", expiresAt: nil).token
            let other = try await store.createToken(opd: "dinkes", expiresAt: nil).token
            var statuses: [Int] = []
            var limited: (status: Int, headers: [String: String], body: Data)?
            for _ in 0..<7 {
                let response = try await Self.pull(url, token: busy)
                statuses.append(response.status)
                if response.status == 429 { limited = response }
            }
            // Three requests fit in a minute; seven span at most two minutes, so one is refused.
            #expect(statuses.filter { $0 == 200 }.count >= 3)
            let refused = try #require(limited, "statuses \(statuses)")
            #expect(errorCode(refused.body) == "rate_limited")
            #expect((refused.headers["retry-after"].flatMap(Int.init) ?? 0) >= 1)
            #expect(try await Self.pull(url, token: other).status == 200, "another token is still served")
        }
    }
}

/// The request time limit, with a client that stops sending its body halfway.
struct RequestTimeoutTests {
    @Test func aRequestOverTheTimeLimitIsAnswered503RequestTimeoutAndOthersAreServed() async throws {
        try await InProcessServerTests.withServer(configure: CredentialTests.limit("request_timeout_seconds: 1")) {
            url, store, dir in
            let token = try await store.createToken(opd: "dinkes", expiresAt: nil).token
            // Announces 1000 bytes, sends 10, then waits for the answer (at most 60 s).
            let script = """
                import socket, sys
                s = socket.create_connection(("127.0.0.1", \(url.port!)))
                s.settimeout(60)
                s.sendall(b"POST /v1/push HTTP/1.1\\r\\nHost: x\\r\\nAuthorization: Bearer " + sys.argv[1].encode()
                          + b"\\r\\nContent-Type: application/vnd.kotasync.changeset\\r\\nContent-Length: 1000\\r\\n\\r\\n0123456789")
                data = b""
                while b"\\r\\n\\r\\n" not in data or not data.rstrip().endswith(b"}"):
                    chunk = s.recv(4096)
                    if not chunk: break
                    data += chunk
                print(data.decode(errors="replace"))
                """
            let file = dir.appendingPathComponent("slow.py")
            try script.write(to: file, atomically: true, encoding: .utf8)
            let result = try run("/usr/bin/env", ["python3", file.path, token])
            #expect(result.stdout.hasPrefix("HTTP/1.1 503"), "\(result.stdout) \(result.stderr)")
            #expect(result.stdout.contains("\"request_timeout\""))
            // Every request of this server has 1 s, so the check of the server going on is the
            // cheapest one, and a busy machine may need a second try.
            var health = 0
            for _ in 0..<5 where health != 200 {
                health = try await http("GET", url.appendingPathComponent("v1/health")).status
            }
            #expect(health == 200, "the server goes on serving")
        }
    }
}

/// `kotasync-server token` and `user` on the real binary, beside a running server.
struct CredentialCommandLineTests {
    @Test func tokensAreListedWithoutSecretsAndRevokedForTheRunningServer() async throws {
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(config: try sampleConfig(in: dir), directory: dir)
        defer { server.stop() }
        let token = try server.token(opd: "pkm-binjai-kota")
        let id = String(token.split(separator: "_")[1])
        #expect(try await CredentialTests.pull(server.url, token: token).status == 200)

        let listed = try server.admin(["token", "list", "--json"])
        #expect(listed.status == 0, "\(listed.stderr)")
        #expect(!listed.stdout.contains(secretPart(token)), "no secret in the list")
        let list = try ProtocolJSON.decoder().decode(TokenList.self, from: Data(listed.stdout.utf8))
        let entry = try #require(list.tokens.first { $0.id == id })
        #expect(entry.kind == "device" && entry.opd == "pkm-binjai-kota" && entry.revokedAt == nil)
        let table = try server.admin(["token", "list"])
        #expect(table.stdout.contains(id) && table.stdout.contains("pkm-binjai-kota"))

        let revoked = try server.admin(["token", "revoke", id])
        #expect(revoked.status == 0, "\(revoked.stderr)")
        #expect(try await CredentialTests.pull(server.url, token: token).status == 401)
        #expect(try server.admin(["token", "revoke", "00000000"]).status == 4, "an unknown id")
    }

    @Test func usersAreAddedWithAPasswordFromStandardInputChangedAndRemoved() async throws {
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(config: try sampleConfig(in: dir), directory: dir)
        defer { server.stop() }
        let short = try server.admin(["user", "add", "Ani", "--role", "admin"], input: "pendek\n")
        #expect(short.status == 4, "a password under 10 characters is refused: \(short.stderr)")
        #expect(try server.admin(["user", "add", "Ani", "--role", "admin"], input: "").status != 0)
        let added = try server.admin(["user", "add", "Ani", "--role", "admin"], input: "nasi goreng kampung\n")
        #expect(added.status == 0, "\(added.stderr)")
        #expect(try server.admin(["user", "add", "Ani", "--role", "viewer"], input: "nasi goreng lagi\n").status == 4)
        let users = try server.admin(["user", "list", "--json"])
        #expect(
            try ProtocolJSON.decoder().decode(UserList.self, from: Data(users.stdout.utf8)).users.map(\.role) == [
                "admin"
            ])
        #expect(try await CredentialTests.login(server.url, "Ani", "nasi goreng kampung").status == 200)

        #expect(try server.admin(["user", "passwd", "Ani"], input: "mie aceh pedas sekali\n").status == 0)
        #expect(try await CredentialTests.login(server.url, "Ani", "nasi goreng kampung").status == 401)
        #expect(try await CredentialTests.login(server.url, "Ani", "mie aceh pedas sekali").status == 200)

        #expect(try server.admin(["user", "remove", "Ani"]).status == 0)
        #expect(try server.admin(["user", "remove", "Ani"]).status == 4)
        #expect(try await CredentialTests.login(server.url, "Ani", "mie aceh pedas sekali").status == 401)
    }
}
