/// Carries out a ``RetryPolicy``: counts failures, waits, and gives up when the policy says so.
///
/// With a deadline the count of failures in a row no longer ends the tries (the waits still grow
/// up to the policy's cap): a transient failure is tried again as long as the wait ends before
/// the deadline.
struct Retrier: Sendable {
    var policy: RetryPolicy
    var deadline: ContinuousClock.Instant? = nil
    var sleep: @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }
    var jitter: @Sendable () -> Double = { Double.random(in: 0..<1) }

    /// The most failures in a row before the error is reported.
    var attempts: Int { deadline == nil ? policy.maxAttempts : .max }

    /// Runs `operation` until it succeeds, fails permanently, or fails too often in a row.
    /// Errors other than ``ReplicaError`` (the local database) are thrown at once.
    func run<T>(_ operation: () async throws -> T) async throws -> T {
        var failures = 0
        while true {
            do {
                return try await operation()
            } catch let error as ReplicaError {
                failures += 1
                try await pause(after: error, failures: failures)
            }
        }
    }

    /// Waits before the next try, or throws `error` when the policy (or the deadline) says to stop.
    func pause(after error: ReplicaError, failures: Int) async throws {
        var policy = self.policy
        policy.maxAttempts = attempts
        switch policy.decision(after: error, failures: failures, jitter: jitter()) {
        case .stop: throw error
        case .retry(let delay):
            if let deadline, ContinuousClock.now + delay >= deadline { throw error }
            try await sleep(delay)
        }
    }
}
