import Foundation
import KotaSyncCore
import Synchronization

/// The server's in-memory limits shared by every route: requests per token per minute, and
/// failed logins per user name and per client address. Kept in memory: a restart forgets them,
/// which costs an attacker a restart they cannot cause.
final class RequestLimits: Sendable {
    private let budget: Mutex<RequestBudget>
    private let failedNames: Mutex<FailureWindow>
    private let failedAddresses: Mutex<FailureWindow>

    init(_ limits: ServerConfig.Limits) {
        budget = Mutex(RequestBudget(perMinute: limits.requestsPerMinute))
        let window = TimeInterval(limits.loginWindowSeconds)
        failedNames = Mutex(FailureWindow(limit: limits.loginFailures, window: window))
        failedAddresses = Mutex(FailureWindow(limit: limits.loginFailures, window: window))
    }

    /// Counts a request of `tokenID`; `rate_limited` when the token used up its minute.
    func admit(tokenID: String, now: Date = Date()) throws {
        if let wait = budget.withLock({ $0.admit(tokenID, now: now) }) {
            throw SyncError(
                .rateLimited,
                "This token made more requests this minute than the server allows (\(budget.withLock { $0.perMinute })). Try again in \(wait) s.",
                retryAfterSeconds: wait)
        }
    }

    /// `rate_limited` when the name or the address failed to log in too often lately.
    func checkLogin(name: String, address: String?, now: Date = Date()) throws {
        let byName = failedNames.withLock { $0.retryAfter(name, now: now) }
        let byAddress = address.flatMap { a in failedAddresses.withLock { $0.retryAfter(a, now: now) } }
        if let wait = [byName, byAddress].compactMap({ $0 }).max() {
            throw SyncError(
                .rateLimited, "Too many failed logins for this name or from this address. Try again in \(wait) s.",
                retryAfterSeconds: wait)
        }
    }

    func loginFailed(name: String, address: String?, now: Date = Date()) {
        failedNames.withLock { $0.fail(name, now: now) }
        if let address { failedAddresses.withLock { $0.fail(address, now: now) } }
    }

    func loginSucceeded(name: String) {
        failedNames.withLock { $0.clear(name) }
    }
}
