import Foundation

/// Refused requests per client address per minute: the first ``perMinute`` of an address's
/// minute are audited one by one, the rest are counted and audited together, as one summary per
/// address and minute once that minute has ended. What keeps a flood of requests with garbage
/// tokens from writing an audit entry each.
///
/// A plain value with the time passed in, so the rule is tested without clocks or sleeps.
package struct RefusalTally: Sendable {
    /// The refusals of one address in one minute beyond those audited one by one.
    package struct Summary: Sendable, Equatable {
        package var address: String
        /// The start of the minute.
        package var minute: Date
        /// Refusals in that minute in all, the audited ones included.
        package var refused: Int
        /// Those not audited one by one, which the summary stands for.
        package var unaudited: Int
    }

    /// Refusals per address per minute audited one by one.
    package let perMinute: Int
    private var windows: [String: (minute: Int64, count: Int)] = [:]

    package init(perMinute: Int) { self.perMinute = max(perMinute, 0) }

    /// Counts a refusal of `address` at `now`. Nil when it is within the address's minute's
    /// allowance (audit it); otherwise the seconds until that minute ends (the `Retry-After`).
    /// `ended` is the summary of the address's previous minute if that one went over.
    package mutating func refuse(_ address: String, now: Date) -> (retryAfter: Int?, ended: Summary?) {
        let minute = Self.minute(of: now)
        var ended: Summary?
        var window = windows[address] ?? (minute, 0)
        if window.minute != minute {
            ended = summary(address, window)
            window = (minute, 0)
        }
        window.count += 1
        windows[address] = window
        if windows.count > 10_000 {
            // Forget addresses whose minute is over and needs no summary.
            windows = windows.filter { $0.value.minute == minute || $0.value.count > perMinute }
        }
        guard window.count > perMinute else { return (nil, ended) }
        let seconds = now.timeIntervalSince1970
        return (max(1, Int((Double(minute + 1) * 60 - seconds).rounded(.up))), ended)
    }

    /// The summaries of every minute that ended before `now` with refusals beyond the allowance,
    /// each once; those addresses are forgotten.
    package mutating func ended(now: Date) -> [Summary] {
        let minute = Self.minute(of: now)
        var out: [Summary] = []
        for (address, window) in windows where window.minute < minute {
            if let summary = summary(address, window) { out.append(summary) }
            windows[address] = nil
        }
        return out.sorted { ($0.minute, $0.address) < ($1.minute, $1.address) }
    }

    /// Whether some minute still has refusals that wait for their summary.
    package var hasUnaudited: Bool { windows.values.contains { $0.count > perMinute } }

    private func summary(_ address: String, _ window: (minute: Int64, count: Int)) -> Summary? {
        guard window.count > perMinute else { return nil }
        return Summary(
            address: address, minute: Date(timeIntervalSince1970: Double(window.minute) * 60), refused: window.count,
            unaudited: window.count - perMinute)
    }

    private static func minute(of date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 / 60).rounded(.down))
    }
}
