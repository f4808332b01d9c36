import Foundation
import KotaSyncCore
import Testing

@testable import KotaSyncServer

/// Staff logins as the API and the dashboard share them: sessions, the failure limit per name
/// and per address, and what the audit log keeps of each attempt.
struct StaffLoginsTests {
    static func logins(_ store: SQLiteMasterStore, failures: Int) -> StaffLogins {
        var limits = ServerConfig.Limits()
        limits.loginFailures = failures
        return StaffLogins(store: store, limits: limits)
    }

    @Test func aRightPasswordOpensASessionWithTheAccountsRoleThatLogoutEnds() async throws {
        let store = try SQLiteMasterStoreTests.makeStore()
        _ = try await store.addUser(name: "Ani", role: .reviewer, password: "bakso urat besar")
        let logins = Self.logins(store, failures: 5)
        guard
            case .session(let session) = try await logins.login(name: "Ani", password: "bakso urat besar", address: nil)
        else {
            Issue.record("no session")
            return
        }
        let device = try #require(try await store.authenticate(token: session.token))
        #expect(device.session && device.role == .reviewer && device.name == "Ani" && device.kind == "session")
        #expect(try await logins.logout(token: session.token))
        #expect(try await store.authenticate(token: session.token) == nil)
        #expect(try await !logins.logout(token: session.token), "already over")
    }

    @Test func failuresAreLimitedPerNameAndPerAddressAndAuditedWithoutThePassword() async throws {
        let store = try SQLiteMasterStoreTests.makeStore()
        _ = try await store.addUser(name: "Ani", role: .admin, password: "bakso urat besar")
        let logins = Self.logins(store, failures: 2)
        let t0 = Date()
        #expect(
            try await logins.login(name: "Ani", password: "salah", address: "10.0.0.1", now: t0) == .wrongCredentials)
        #expect(
            try await logins.login(name: "Ani", password: "salah", address: "10.0.0.2", now: t0) == .wrongCredentials)
        // The name has failed twice: even the right password waits, from any address.
        guard
            case .limited(let wait) = try await logins.login(
                name: "Ani", password: "bakso urat besar", address: "10.0.0.3", now: t0)
        else {
            Issue.record("not limited")
            return
        }
        #expect(wait > 0)
        // Another name from a fresh address is not affected; the same name after the window is.
        #expect(
            try await logins.login(name: "bakso urat besar", password: "x", address: "10.0.0.4", now: t0)
                == .wrongCredentials)
        guard
            case .session = try await logins.login(
                name: "Ani", password: "bakso urat besar", address: "10.0.0.5", now: t0 + 901)
        else {
            Issue.record("the window passed; the login should open a session")
            return
        }

        try await store.flushAudit()
        let entries = try await store.auditEntries(since: nil, opd: nil, after: 0, limit: 100)
        #expect(entries.map(\.status) == [401, 401, 429, 401, 200])
        #expect(
            entries.map(\.actor) == ["Ani", "Ani", "Ani", "?", "Ani"], "an unknown name (here a password) is not kept")
        #expect(entries.allSatisfy { $0.action == "login" })
        #expect(entries.map(\.address) == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"])
        #expect(!entries.contains { "\($0)".contains("bakso") })
    }
}
