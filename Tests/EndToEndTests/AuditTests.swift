import Foundation
import GRDB
import KotaSyncClient
import KotaSyncCore
import KotaSyncServer
import Testing

/// The audit log: every push, pull, resolution, token and user change, login and refusal is
/// recorded without secrets or patient values, and `audit verify` finds an edited or deleted entry.
struct AuditTests {
    /// Every audit row as text, all columns, for searching.
    static func auditText(_ path: String) throws -> String {
        try DatabaseQueue(path: path).read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM _ks_audit ORDER BY id").map { row in
                row.databaseValues.map { String.fromDatabaseValue($0) ?? "\($0)" }.joined(separator: "|")
            }.joined(separator: "\n")
        }
    }

    @Test func pushesPullsResolutionsTokenChangesAndRefusalsAreRecordedWithoutSecretsOrValues() async throws {
        try await InProcessServerTests.withServer { url, store, dir in
            let scenario = try await ConflictScenario.make(url: url, store: store, dir: dir)
            let admin = try await store.createStaffToken(name: "Ani Lubis", role: .admin, expiresAt: nil).token
            let reviewer = try await store.createStaffToken(name: "Rina", role: .reviewer, expiresAt: nil).token
            let resolved = try await resolve(url, id: 1, ResolveRequest(take: .remote, note: "called"), token: reviewer)
            #expect(resolved.status == 200)
            let created = try await http(
                "POST", url.appendingPathComponent("v1/admin/tokens"), token: admin,
                body: Array(#"{"opd":"bappeda"}"#.utf8), contentType: "application/json")
            let issued = try ProtocolJSON.decoder().decode(IssuedTokenDocument.self, from: created.body)
            _ = try await http("POST", url.appendingPathComponent("v1/admin/tokens/\(issued.id)/revoke"), token: admin)
            let denied = try await http(
                "GET", url.appendingPathComponent("v1/review/conflicts"), token: scenario.tokens[0])
            #expect(denied.status == 403)
            #expect(try await http("GET", url.appendingPathComponent("v1/pull"), token: issued.token).status == 401)
            try await store.flushAudit()

            let entries = try await store.auditEntries(since: nil, opd: nil, after: 0, limit: 10_000)
            let pushes = entries.filter { $0.action == "push" && $0.status == 200 }
            #expect(pushes.count == 3)
            let push = try #require(pushes.first { $0.opd == "pkm-binjai-kota" })
            #expect(push.replica == scenario.replicas[0].id.uuidString)
            #expect(push.actorKind == "device" && push.address == "127.0.0.1")
            #expect(push.detail?.contains("\"tables\":\"patients=1,villages=1\"") == true, "\(push.detail ?? "")")
            #expect(entries.contains { $0.action == "pull" && $0.status == 200 && $0.detail?.contains("rows") == true })
            #expect(entries.contains { $0.action == "schema" && $0.status == 200 })
            let resolution = try #require(entries.first { $0.action == "review.resolve" })
            #expect(resolution.status == 200 && resolution.actorKind == "staff")
            #expect(resolution.detail?.contains("\"take\":\"remote\"") == true)
            #expect(entries.contains { $0.action == "token.create" && $0.status == 201 })
            #expect(entries.contains { $0.action == "token.revoke" && $0.status == 200 })
            #expect(entries.contains { $0.action == "review.list" && $0.status == 403 && $0.opd == "pkm-binjai-kota" })
            #expect(entries.contains { $0.action == "pull" && $0.status == 401 && $0.actor == "-" })
            #expect(entries.map(\.id) == Array(1...Int64(entries.count)))
            #expect(try await store.verifyAudit().problem == nil)

            let text = try Self.auditText(dir.appendingPathComponent("master.sqlite").path)
            for secret in scenario.tokens + [admin, reviewer, issued.token] {
                #expect(!text.contains(secretPart(secret)), "no token secret in the audit log")
            }
            for value in ["0811-1111", "0822-2222", "Siti A", "Desa A", "called"] {
                #expect(!text.contains(value), "no field value (\(value)) in the audit log")
            }
        }
    }

    /// The real binary: a server's log and audit log hold no token or password, `audit verify`
    /// passes, and then reports an entry edited or deleted in the database file with sqlite3.
    @Test func auditVerifyFindsAnEditedOrDeletedEntry() async throws {
        let dir = try makeTemporaryDirectory()
        let log = dir.appendingPathComponent("server.log")
        let server = try ServerProcess(
            config: try sampleConfig(in: dir), directory: dir, logLevel: "debug", errors: log)
        let password = "sate padang pedas sekali"
        let added = try server.admin(["user", "add", "Ani Lubis", "--role", "reviewer"], input: password + "\n")
        #expect(added.status == 0, "\(added.stderr)")
        let token = try server.token(opd: "pkm-binjai-kota")
        let path = dir.appendingPathComponent("replica.sqlite").path
        let initialized = try run(
            "kotasync", ["init", "--db", path, "--server", server.url.absoluteString, "--token", token])
        #expect(initialized.status == 0, "\(initialized.stderr)")
        let login = try await CredentialTests.login(server.url, "Ani Lubis", password)
        let session = try ProtocolJSON.decoder().decode(IssuedTokenDocument.self, from: login.body).token
        #expect(try await CredentialTests.login(server.url, "Ani Lubis", "wrong " + password).status == 401)
        // A password typed into the name field must not reach the log either.
        #expect(try await CredentialTests.login(server.url, password, password).status == 401)
        #expect(
            try await http("GET", server.url.appendingPathComponent("v1/review/conflicts"), token: session).status
                == 200)
        let revoked = try server.admin(["token", "revoke", String(token.split(separator: "_")[1])])
        #expect(revoked.status == 0, "\(revoked.stderr)")
        server.stop()

        let serverLog = try String(contentsOf: log, encoding: .utf8)
        let master = server.database.path
        let audit = try Self.auditText(master)
        for secret in [token, session, password, secretPart(token), secretPart(session)] {
            #expect(!serverLog.contains(secret), "no token or password in the server's log")
            #expect(!audit.contains(secret), "no token or password in the audit log")
        }
        for action in ["user.add", "token.create", "schema", "pull", "login", "review.list", "token.revoke"] {
            #expect(audit.contains("|\(action)|"), "an entry for \(action)")
        }
        #expect(audit.contains("|login|401|unauthorized|"), "the failed login")

        let verified = try server.admin(["audit", "verify"])
        #expect(verified.status == 0, "\(verified.stderr)")
        #expect(verified.stdout.contains("intact"))
        let listed = try server.admin(["audit", "list", "--json", "--opd", "pkm-binjai-kota"])
        #expect(listed.status == 0)
        #expect(listed.stdout.split(separator: "\n").count >= 2 && listed.stdout.contains("\"action\":\"pull\""))

        // Each tampering on a fresh copy of the master file.
        let tamperings = [
            ("UPDATE _ks_audit SET status = 200 WHERE action = 'login' AND status = 401", "edited"),
            ("DELETE FROM _ks_audit WHERE id = 3", "deleted"),
            ("DELETE FROM _ks_audit WHERE id = (SELECT max(id) FROM _ks_audit)", "deleted"),
            (
                "INSERT INTO _ks_audit SELECT id + 1000, at, actor, actor_kind, opd, replica, address, action, status, code, detail, prev_hash, hash FROM _ks_audit WHERE id = 2",
                "edited",
            ),
        ]
        for (i, (sql, word)) in tamperings.enumerated() {
            let copy = dir.appendingPathComponent("tampered\(i).sqlite").path
            #expect(try run("/usr/bin/sqlite3", [master, "VACUUM INTO '\(copy)'"]).status == 0)
            let edited = try run("/usr/bin/sqlite3", [copy, sql])
            #expect(edited.status == 0, "\(edited.stderr)")
            let result = try run(
                "kotasync-server", ["audit", "verify", "--config", server.config.path, "--db", copy])
            #expect(result.status == 3, "\(sql): \(result.stdout) \(result.stderr)")
            #expect(result.stderr.contains("audit log broken at entry"), "\(result.stderr)")
            #expect(result.stderr.contains(word), "\(sql): \(result.stderr)")
        }
    }
}
