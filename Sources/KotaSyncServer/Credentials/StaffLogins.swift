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

    let store: any CredentialStore & AuditStore
    let sessionMinutes: Int
    /// Failures per name and per address, under one lock: an attempt is checked against both
    /// and counted in both in one step.
    private let failures: Mutex<Failures>
    /// Attempts refused by the limit, per address: audited one by one up to
    /// `limits.refused_per_minute` a minute, then as one summary (a login flood from one address).
    private let refusals: RefusedRequests

    struct Failures {
        var names: FailureWindow
        var addresses: FailureWindow
    }

    /// Logins over `store`, with the failure limit and session length of `limits`.
    public init(store: any CredentialStore & AuditStore, limits: ServerConfig.Limits) {
        self.store = store
        sessionMinutes = limits.sessionMinutes
        refusals = RefusedRequests(store: store, perMinute: limits.refusedPerMinute, action: "login")
        let window = TimeInterval(limits.loginWindowSeconds)
        failures = Mutex(
            Failures(
                names: FailureWindow(limit: limits.loginFailures, window: window),
                addresses: FailureWindow(limit: limits.loginFailures, window: window)))
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
        // The attempt is counted as a failure before the password is checked, in the same step
        // as the limit is checked: attempts that arrive together each take a place under the
        // limit, and those beyond it never reach the (slow) password check. A success takes its
        // place back.
        let wait = failures.withLock { failures -> Int? in
            let byName = failures.names.retryAfter(key, now: now)
            let byAddress = address.flatMap { failures.addresses.retryAfter($0, now: now) }
            if let wait = [byName, byAddress].compactMap({ $0 }).max() { return wait }
            failures.names.fail(key, now: now)
            if let address { failures.addresses.fail(address, now: now) }
            return nil
        }
        if let wait {
            if refusals.refuse(address: address, now: now) == nil { audit(429, .rateLimited) }
            return .limited(retryAfterSeconds: wait)
        }
        guard let session = try await store.login(name: name, password: password, minutes: sessionMinutes) else {
            audit(401, .unauthorized)
            return .wrongCredentials
        }
        failures.withLock { failures in
            failures.names.clear(key)
            if let address { failures.addresses.withdraw(address, at: now) }
        }
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
