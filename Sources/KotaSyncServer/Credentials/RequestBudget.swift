import Foundation

/// Requests per token per minute: a fixed one-minute window per key. The request rate limit.
///
/// A plain value with the time passed in, so the rule is tested without clocks or sleeps.
package struct RequestBudget: Sendable {
    /// Requests allowed per key per minute.
    package let perMinute: Int
    private var windows: [String: (minute: Int64, count: Int)] = [:]

    package init(perMinute: Int) { self.perMinute = perMinute }

    /// Counts a request of `key` at `now`: nil if it may go ahead, else the seconds until the
    /// next minute starts (the `Retry-After`).
    package mutating func admit(_ key: String, now: Date) -> Int? {
        let seconds = now.timeIntervalSince1970
        let minute = Int64((seconds / 60).rounded(.down))
        var entry = windows[key] ?? (minute, 0)
        if entry.minute != minute { entry = (minute, 0) }
        guard entry.count < perMinute else {
            return max(1, Int((Double(minute + 1) * 60 - seconds).rounded(.up)))
        }
        entry.count += 1
        windows[key] = entry
        if windows.count > 10_000 { windows = windows.filter { $0.value.minute == minute } }
        return nil
    }
}
