import Foundation
import KotaSyncCore
import Synchronization

/// Requests per token per minute, shared by every route. Kept in memory: a restart forgets the
/// counts, which costs an attacker a restart they cannot cause.
final class RequestLimits: Sendable {
    private let budget: Mutex<RequestBudget>
    private let perMinute: Int

    init(_ limits: ServerConfig.Limits) {
        perMinute = limits.requestsPerMinute
        budget = Mutex(RequestBudget(perMinute: limits.requestsPerMinute))
    }

    /// Counts a request of `tokenID`; `rate_limited` when the token used up its minute.
    func admit(tokenID: String, now: Date = Date()) throws {
        if let wait = budget.withLock({ $0.admit(tokenID, now: now) }) {
            throw SyncError(
                .rateLimited,
                "This token made more requests this minute than the server allows (\(perMinute)). Try again in \(wait) s.",
                retryAfterSeconds: wait)
        }
    }
}
