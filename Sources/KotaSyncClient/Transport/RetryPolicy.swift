import KotaSyncCore

/// When to try a failed transfer again, and how long to wait first.
///
/// A pure value: it decides from the error, the number of failed tries in a row and a jitter
/// draw, and never sleeps or reads a clock itself, so every rule is testable as a function.
/// ``Synchronizer`` counts the failures (a try that made progress, such as an acknowledged
/// chunk, starts the count again) and does the waiting.
///
/// Transient failures are retried: the server could not be reached or the connection broke, a
/// `5xx`, a `429`, and bytes damaged on the way in either direction (`changeset_truncated`,
/// `changeset_corrupt`, `chunk_corrupt`, a reply that does not decode). Everything else is
/// permanent for that request and is reported at once: a refused token, data the server
/// rejects, a changeset too large.
public struct RetryPolicy: Sendable, Equatable {
    /// The most tries in a row without progress, the first included; then the error is reported.
    public var maxAttempts: Int
    /// The wait after the first failure (before jitter).
    public var baseDelay: Duration
    /// The longest wait between two tries (before jitter).
    public var maxDelay: Duration
    /// The longest `Retry-After` honoured; a server that asks for more is reported instead.
    public var maxRetryAfter: Duration

    /// A policy; see the properties for what each value means.
    public init(maxAttempts: Int, baseDelay: Duration, maxDelay: Duration, maxRetryAfter: Duration = .seconds(300)) {
        self.maxAttempts = maxAttempts
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self.maxRetryAfter = maxRetryAfter
    }

    /// Six tries, waiting 8 to 16 seconds in all between them: long enough to ride out a
    /// dropped link, short enough for a command someone waits on. A long-running sync (watch
    /// mode) keeps its own schedule on top.
    public static let standard = RetryPolicy(maxAttempts: 6, baseDelay: .milliseconds(500), maxDelay: .seconds(16))

    /// One try: every failure is reported at once.
    public static let never = RetryPolicy(maxAttempts: 1, baseDelay: .zero, maxDelay: .zero)

    /// What to do after a failure.
    public enum Decision: Sendable, Equatable {
        /// Wait this long, then try again.
        case retry(after: Duration)
        /// Report the error.
        case stop
    }

    /// Whether `error` may go away if the same thing is tried again.
    public static func isTransient(_ error: ReplicaError) -> Bool {
        switch error.code {
        case .serverUnreachable, .invalidResponse: true
        case .rejected: error.server?.code.isRetryable ?? false
        default: false
        }
    }

    /// The decision after the `failures`-th failure in a row (1 after the first), with `jitter`
    /// drawn uniformly from [0, 1).
    public func decision(after error: ReplicaError, failures: Int, jitter: Double) -> Decision {
        guard Self.isTransient(error), failures < maxAttempts else { return .stop }
        let backoff = delay(failures: failures, jitter: jitter)
        guard let seconds = error.retryAfter else { return .retry(after: backoff) }
        let asked = Duration.milliseconds(Int64((max(seconds, 0) * 1000).rounded(.up)))
        guard asked <= maxRetryAfter else { return .stop }
        return .retry(after: max(asked, backoff))
    }

    /// Exponential backoff with "equal jitter": the step doubles with each failure up to
    /// ``maxDelay``, and the wait is a random point in its upper half, so clients that failed
    /// together spread out but none hammers the server at once.
    public func delay(failures: Int, jitter: Double) -> Duration {
        let doublings = min(max(failures - 1, 0), 30)
        let step = min(maxDelay, baseDelay * (1 << doublings))
        return step * (0.5 + 0.5 * min(max(jitter, 0), 1))
    }
}
