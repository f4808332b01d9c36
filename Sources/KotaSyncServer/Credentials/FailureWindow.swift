import Foundation

/// Counts failures per key (a user name, a client address) over a sliding window, and says when
/// a key has failed too often: the failed-login limit.
///
/// A plain value with the time passed in, so the rule is tested without clocks or sleeps.
package struct FailureWindow: Sendable {
    /// The failures allowed within ``window``; the next attempt is refused.
    package let limit: Int
    package let window: TimeInterval
    private var failures: [String: [Date]] = [:]

    package init(limit: Int, window: TimeInterval) {
        self.limit = limit
        self.window = window
    }

    /// Nil if `key` may try now; otherwise the whole seconds until its oldest counted failure
    /// leaves the window.
    package func retryAfter(_ key: String, now: Date) -> Int? {
        let recent = (failures[key] ?? []).filter { now.timeIntervalSince($0) < window }
        guard recent.count >= limit, let oldest = recent.first else { return nil }
        return max(1, Int((window - now.timeIntervalSince(oldest)).rounded(.up)))
    }

    /// Counts a failure of `key` at `now`.
    package mutating func fail(_ key: String, now: Date) {
        var recent = (failures[key] ?? []).filter { now.timeIntervalSince($0) < window }
        recent.append(now)
        failures[key] = Array(recent.suffix(limit))
        // Forget keys whose failures all left the window, so a scan of names cannot grow this forever.
        if failures.count > 10_000 {
            failures = failures.filter { _, dates in dates.contains { now.timeIntervalSince($0) < window } }
        }
    }

    /// Takes back the failure of `key` counted at `date` (an attempt counted before it was
    /// checked, which succeeded).
    package mutating func withdraw(_ key: String, at date: Date) {
        guard var dates = failures[key], let index = dates.lastIndex(of: date) else { return }
        dates.remove(at: index)
        failures[key] = dates.isEmpty ? nil : dates
    }

    /// Forgets `key`'s failures (after a successful login).
    package mutating func clear(_ key: String) { failures[key] = nil }
}
