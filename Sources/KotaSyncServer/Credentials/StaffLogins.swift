import Foundation
import KotaSyncCore
import Synchronization

/// Staff sign-in, shared by `POST /v1/login` and the dashboard's login form: checks an account's
/// password, limits failures per user name and per client address, opens a session, and writes
/// the attempt to the audit log.
///
/// Make one per server and give the same instance to every login route, so that failures count
/// together whichever door they come through. The counts live in memory; a restart forgets them.
public final class StaffLogins: Sendable {
    /// How a login attempt ended.
    public enum Outcome: Sendable, Equatable {
        /// A session token with the account's role; it authenticates like a staff token.
        case session(IssuedToken)
        /// The name or the password is wrong (the two are not told apart).
        case wrongCredentials
        /// Too many failures for the name or from the address: try again after this many seconds.
        case limited(retryAfterSeconds: Int)
    }

    let store: any MasterStore
    let sessionMinutes: Int
    private let failedNames: Mutex<FailureWindow>
    private let failedAddresses: Mutex<FailureWindow>

    /// Logins over `store`, with the failure limit and session length of `limits`.
    public init(store: any MasterStore, limits: ServerConfig.Limits) {
        self.store = store
        sessionMinutes = limits.sessionMinutes
        let window = TimeInterval(limits.loginWindowSeconds)
        failedNames = Mutex(FailureWindow(limit: limits.loginFailures, window: window))
        failedAddresses = Mutex(FailureWindow(limit: limits.loginFailures, window: window))
    }

    /// Tries to log `name` in from `address` (the client's, see `trusted_proxies`), and records
    /// the attempt in the audit log: the account's name, or `?` when no account has that name
    /// (people type their password into the name field), never the password.
    public func login(name: String, password: String, address: String?, now: Date = Date()) async throws -> Outcome {
        let key = String(name.prefix(100))
        let known = try await store.users().contains { $0.name == name }
        func audit(_ status: Int, _ code: SyncError.Code?, _ detail: [String: String] = [:]) {
            store.recordAudit(
                AuditEntry(
                    actor: known ? key : "?", actorKind: "user", address: address, action: "login", status: status,
                    code: code?.rawValue, detail: detail))
        }
        let byName = failedNames.withLock { $0.retryAfter(key, now: now) }
        let byAddress = address.flatMap { a in failedAddresses.withLock { $0.retryAfter(a, now: now) } }
        if let wait = [byName, byAddress].compactMap({ $0 }).max() {
            audit(429, .rateLimited)
            return .limited(retryAfterSeconds: wait)
        }
        guard let session = try await store.login(name: name, password: password, minutes: sessionMinutes) else {
            failedNames.withLock { $0.fail(key, now: now) }
            if let address { failedAddresses.withLock { $0.fail(address, now: now) } }
            audit(401, .unauthorized)
            return .wrongCredentials
        }
        failedNames.withLock { $0.clear(key) }
        audit(200, nil, ["session": session.id, "role": session.role.rawValue])
        return .session(session)
    }

    /// Ends the session of `token` (for the dashboard's logout; `POST /v1/logout` authenticates
    /// first). False, and nothing changes, when the token is not a live session token.
    @discardableResult
    public func logout(token: String, address: String? = nil) async throws -> Bool {
        guard let credential = try await store.authenticate(token: token), credential.session else { return false }
        _ = try await store.revokeToken(id: credential.tokenID)
        store.recordAudit(
            AuditEntry(
                actor: credential.tokenID, actorKind: "session", address: address, action: "logout", status: 204))
        return true
    }
}
