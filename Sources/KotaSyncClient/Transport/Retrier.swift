/// Carries out a ``RetryPolicy``: counts failures, waits, and gives up when the policy says so.
struct Retrier: Sendable {
    var policy: RetryPolicy
    var sleep: @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }
    var jitter: @Sendable () -> Double = { Double.random(in: 0..<1) }

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

    /// Waits before the next try, or throws `error` when the policy says to stop.
    func pause(after error: ReplicaError, failures: Int) async throws {
        switch policy.decision(after: error, failures: failures, jitter: jitter()) {
        case .stop: throw error
        case .retry(let delay): try await sleep(delay)
        }
    }
}
