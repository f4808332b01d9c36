/// When `kotasync sync --watch` syncs next: the decisions of watch mode, without clocks or I/O.
///
/// The watcher asks ``nextSync`` when to sync and reports what happened; times are seconds on
/// any monotonic clock. Rules:
/// - After a success, the next sync is one ``interval`` later, or ``settle`` seconds after a
///   local change is seen, whichever comes first (a burst of writes becomes one push).
/// - After a failure, the next sync waits a backoff that doubles from ``minimumBackoff`` up to
///   ``maximumBackoff``, with jitter; local changes do not shorten it (a server that is down is
///   not helped by more attempts), so a replica offline for hours tries a few times an hour.
public struct WatchSchedule: Sendable, Equatable {
    /// Seconds between syncs when nothing changes locally.
    public var interval: Double
    /// Seconds to wait after a local change is seen before syncing.
    public var settle: Double
    /// The first wait after a failure.
    public var minimumBackoff: Double
    /// The longest wait after failures.
    public var maximumBackoff: Double

    /// Failed attempts in a row.
    public private(set) var failures = 0
    private var due: Double

    /// A schedule whose first sync is due at `now`.
    public init(
        interval: Double, settle: Double = 1, minimumBackoff: Double = 2, maximumBackoff: Double = 300, now: Double
    ) {
        self.interval = interval
        self.settle = settle
        self.minimumBackoff = minimumBackoff
        self.maximumBackoff = max(minimumBackoff, maximumBackoff)
        self.due = now
    }

    /// When the next sync is due.
    public var nextSync: Double { due }

    /// Whether a sync is due at `now`.
    public func isDue(at now: Double) -> Bool { now >= due }

    /// A local change was seen at `now`: sync soon, unless waiting out a failure.
    public mutating func localChange(at now: Double) {
        guard failures == 0 else { return }
        due = min(due, now + settle)
    }

    /// A sync finished well at `now`.
    public mutating func succeeded(at now: Double) {
        failures = 0
        due = now + interval
    }

    /// A sync failed at `now`; `jitter` in 0...1 spreads the retries of many devices. Returns the
    /// wait before the next attempt.
    @discardableResult
    public mutating func failed(at now: Double, jitter: Double) -> Double {
        failures += 1
        let wait = Self.backoff(
            failures: failures, minimum: minimumBackoff, maximum: maximumBackoff, jitter: jitter)
        due = now + wait
        return wait
    }

    /// The wait after `failures` failures in a row: `minimum`·2^(failures−1), at most `maximum`,
    /// of which the upper half is scaled by `jitter` (so it lies in [half, whole]).
    public static func backoff(failures: Int, minimum: Double, maximum: Double, jitter: Double) -> Double {
        let exponent = Double(min(max(failures - 1, 0), 62))
        let whole = min(maximum, minimum * pow2(exponent))
        return whole / 2 + whole / 2 * min(max(jitter, 0), 1)
    }

    private static func pow2(_ exponent: Double) -> Double {
        var result = 1.0
        for _ in 0..<Int(exponent) {
            result *= 2
            if result > 1e12 { break }
        }
        return result
    }
}
