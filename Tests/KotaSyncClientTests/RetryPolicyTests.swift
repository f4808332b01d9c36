import KotaSyncClient
import KotaSyncCore
import Testing

/// The retry rules as pure functions: which errors are retried, how long each wait is.
struct RetryPolicyTests {
    let policy = RetryPolicy(maxAttempts: 6, baseDelay: .milliseconds(500), maxDelay: .seconds(16))

    static let unreachable = ReplicaError(.serverUnreachable, "down")
    static func server(_ code: SyncError.Code, retryAfter: Double? = nil) -> ReplicaError {
        ReplicaError(.rejected, "refused", server: SyncError(code, "x"), retryAfter: retryAfter)
    }

    @Test func waitsDoubleUpToTheCapAndStayInTheUpperHalfOfEachStep() {
        for failures in 1...12 {
            let step = min(Duration.milliseconds(500) * (1 << (failures - 1)), .seconds(16))
            #expect(policy.delay(failures: failures, jitter: 0) == step / 2)
            #expect(policy.delay(failures: failures, jitter: 0.999_999) <= step)
            #expect(policy.delay(failures: failures, jitter: 0.999_999) > step * 0.99)
        }
        #expect(policy.delay(failures: 1_000, jitter: 1) == .seconds(16), "no overflow far out")
    }

    @Test func jitterSpreadsClientsThatFailedTogether() {
        var g = SplitMix64(seed: 42)
        let waits = Set((0..<50).map { _ in policy.delay(failures: 3, jitter: Double.random(in: 0..<1, using: &g)) })
        #expect(waits.count > 40)
    }

    @Test(arguments: [
        SyncError.Code.internalError, .changesetTruncated, .changesetCorrupt, .chunkCorrupt, .rateLimited,
        .uploadNotFound, .uploadOffsetMismatch, .uploadCorrupt,
    ])
    func transientServerErrorsAreRetried(_ code: SyncError.Code) {
        #expect(policy.decision(after: Self.server(code), failures: 1, jitter: 0) == .retry(after: .milliseconds(250)))
    }

    @Test(arguments: [
        SyncError.Code.forbidden, .badRequest, .bodyTooLarge, .changesetTooLarge, .changesetMalformed, .typeMismatch,
        .unknownTable, .constraintViolation, .sequenceConflict, .unsupportedVersion,
    ])
    func permanentRefusalsAreReportedAtOnce(_ code: SyncError.Code) {
        #expect(policy.decision(after: Self.server(code), failures: 1, jitter: 0.5) == .stop)
    }

    @Test func anUnreachableServerAndADamagedReplyAreRetriedButARefusedTokenIsNot() {
        #expect(policy.decision(after: Self.unreachable, failures: 1, jitter: 0) != .stop)
        #expect(policy.decision(after: ReplicaError(.invalidResponse, "cut"), failures: 1, jitter: 0) != .stop)
        #expect(policy.decision(after: ReplicaError(.unauthorized, "no"), failures: 1, jitter: 0) == .stop)
        #expect(policy.decision(after: ReplicaError(.database, "disk"), failures: 1, jitter: 0) == .stop)
    }

    @Test func afterMaxAttemptsTheErrorIsReported() {
        #expect(policy.decision(after: Self.unreachable, failures: 5, jitter: 0) != .stop)
        #expect(policy.decision(after: Self.unreachable, failures: 6, jitter: 0) == .stop)
        #expect(RetryPolicy.never.decision(after: Self.unreachable, failures: 1, jitter: 0) == .stop)
    }

    @Test func retryAfterIsHonouredWhenLongerThanTheBackoffAndWithinTheLimit() {
        let asked = Self.server(.rateLimited, retryAfter: 7)
        #expect(policy.decision(after: asked, failures: 1, jitter: 0) == .retry(after: .seconds(7)))
        let short = Self.server(.internalError, retryAfter: 0.1)
        #expect(policy.decision(after: short, failures: 4, jitter: 0) == .retry(after: .seconds(2)))
        let tooLong = Self.server(.rateLimited, retryAfter: 3600)
        #expect(policy.decision(after: tooLong, failures: 1, jitter: 0) == .stop)
    }

    @Test func aPullPageThatFailsIsAskedForAgainSmallerAndGrowsBackAfterward() {
        var sizing = ChunkSizing(start: 64 * 1024, minimum: 1024, maximum: 1024 * 1024)
        var paging = PullPaging(requested: nil)
        paging.arrived(rows: 100, bytes: 6_400)
        #expect(paging.limit(budget: sizing.bytes) == 1024)
        sizing.failed()
        #expect(paging.limit(budget: sizing.bytes) == 512)
        for _ in 0..<20 { sizing.failed() }
        #expect(paging.limit(budget: sizing.bytes) == 16, "the smallest budget, 1 KiB, of 64-byte rows")
        for _ in 0..<200 { sizing.succeeded(carried: sizing.bytes) }
        #expect(paging.limit(budget: sizing.bytes) == nil, "back to the server's default page")

        let asked = PullPaging(requested: 100)
        #expect(asked.limit(budget: 1024 * 1024) == 100, "never above what was asked for")
        #expect(PullPaging(requested: 1).limit(budget: 1) == 1)
    }
}
