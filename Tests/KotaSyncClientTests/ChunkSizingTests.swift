import Testing

@testable import KotaSyncClient
@testable import KotaSyncCore

/// The adaptive chunk size and page size as pure functions, against links simulated in bytes.
struct ChunkSizingTests {
    /// Sends `total` bytes in chunks as `sizing` says over a link that drops whenever it has
    /// carried `dropEvery` bytes since the last drop (a chunk cut off is sent again whole).
    /// Returns the chunks sent (size, and whether it arrived) and the bytes sent again.
    static func simulate(_ sizing: inout ChunkSizing, total: Int, dropEvery: Int) -> (
        chunks: [(size: Int, arrived: Bool)], resent: Int
    ) {
        var delivered = 0
        var sinceDrop = 0
        var chunks: [(Int, Bool)] = []
        var resent = 0
        while delivered < total {
            let size = min(sizing.bytes, total - delivered)
            if sinceDrop + size > dropEvery {
                chunks.append((size, false))
                resent += dropEvery - sinceDrop
                sinceDrop = 0
                sizing.failed()
            } else {
                chunks.append((size, true))
                sinceDrop += size
                delivered += size
                sizing.succeeded(carried: size)
            }
        }
        return (chunks, resent)
    }

    @Test func startsSmallAndDoublesWhileChunksArriveUpToItsMaximum() {
        var sizing = ChunkSizing(start: 16 * 1024, minimum: 4 * 1024, maximum: 1024 * 1024)
        var sizes = [sizing.bytes]
        for _ in 0..<8 {
            sizing.succeeded(carried: sizing.bytes)
            sizes.append(sizing.bytes)
        }
        #expect(sizes.map { $0 / 1024 } == [16, 32, 64, 128, 256, 512, 1024, 1024, 1024])
    }

    /// The example: on a link that drops every 240 kB, no chunk after the first drop is
    /// bigger than that (a quarter of it, in fact), and each drop costs at most the chunk in
    /// flight.
    @Test func onALinkThatDropsEvery240kBNoChunkAfterTheFirstDropIsBiggerThanAQuarterOfIt() {
        var sizing = ChunkSizing()
        let (chunks, resent) = Self.simulate(&sizing, total: 3_000_000, dropEvery: 240_000)
        let firstDrop = chunks.firstIndex { !$0.arrived }!
        let after = chunks[(firstDrop + 1)...]
        #expect(after.allSatisfy { $0.size <= 60_000 }, "\(after.map(\.size))")
        let drops = chunks.filter { !$0.arrived }
        #expect(drops.count <= 16, "\(drops.count) drops for 3 MB at 240 kB between drops")
        #expect(resent <= drops.map(\.size).reduce(0, +))
        // A quarter of the drop interval wastes at most an eighth of the link on average.
        #expect(Double(resent) / 3_000_000 < 0.2)
    }

    @Test func aDropBeforeAnythingArrivedHalvesTheChunkDownToTheMinimum() {
        var sizing = ChunkSizing(start: 64 * 1024, minimum: 4 * 1024, maximum: 1024 * 1024)
        var sizes: [Int] = []
        for _ in 0..<6 {
            sizing.failed()
            sizes.append(sizing.bytes / 1024)
        }
        #expect(sizes == [32, 16, 8, 4, 4, 4])
    }

    @Test func aLinkThatStopsDroppingEarnsItsChunkSizeBack() {
        var sizing = ChunkSizing()
        _ = Self.simulate(&sizing, total: 1_000_000, dropEvery: 40_000)
        #expect(sizing.bytes <= 10_000)
        _ = Self.simulate(&sizing, total: 20_000_000, dropEvery: .max)
        #expect(sizing.bytes == sizing.maximum)
    }

    @Test func sizesStayWithinTheLimitsWhateverHappens() {
        var sizing = ChunkSizing(start: 1, minimum: 512, maximum: 8192)
        var g = SplitMix64(seed: 19)
        for _ in 0..<10_000 {
            if g.next() % 3 == 0 { sizing.failed() } else { sizing.succeeded(carried: Int(g.next() % 20_000)) }
            #expect((512...8192).contains(sizing.bytes))
            #expect(sizing.bytes <= sizing.ceiling)
        }
    }

    @Test func pagesAreSizedFromTheByteBudgetAndTheMeasuredRowSize() {
        var paging = PullPaging(requested: nil)
        #expect(paging.limit(budget: 16 * 1024) == 256, "64 bytes a row assumed before the first page")
        paging.arrived(rows: 100, bytes: 3_200)
        #expect(paging.limit(budget: 16 * 1024) == 512)
        #expect(paging.limit(budget: 100) == PullPaging.smallest)
        #expect(paging.limit(budget: 1024 * 1024) == nil, "past the largest page the server decides")
        paging.arrived(rows: 0, bytes: 40)
        #expect(paging.limit(budget: 16 * 1024) == 512, "an empty page says nothing about row sizes")

        var asked = PullPaging(requested: 5)
        #expect(asked.limit(budget: 1024 * 1024) == 5, "never more than the caller asked")
        asked.arrived(rows: 5, bytes: 50_000)
        #expect(asked.limit(budget: 100) == PullPaging.smallest)
    }

    /// A first page cut off before it arrived whole still teaches the row size: 190 kB of a
    /// 256-row page means rows of at least 740 bytes, so the next page, with half the budget,
    /// asks for 5 rows instead of 64.
    @Test func aCutPageBoundsTheRowSizeSoTheNextPageCanArrive() {
        var paging = PullPaging(requested: nil)
        #expect(paging.limit(budget: 16 * 1024) == 256)
        paging.cut(received: 190_000, limit: 256)
        #expect(paging.limit(budget: 4096) == 5)
        paging.cut(received: 0, limit: 5)
        #expect(paging.limit(budget: 4096) == 5, "nothing arrived: nothing learned")
        paging.arrived(rows: 5, bytes: 25_000)
        #expect(paging.limit(budget: 16 * 1024) == PullPaging.smallest, "rows of 5 kB: the smallest page")
    }

    /// With a deadline, a failure in a row past the policy's count is still tried again; without
    /// one, the policy's count ends it.
    @Test func aDeadlineKeepsTryingPastTheAttemptsUntilItPasses() async throws {
        let policy = RetryPolicy(maxAttempts: 2, baseDelay: .milliseconds(1), maxDelay: .milliseconds(2))
        let down = ReplicaError(.serverUnreachable, "down")
        final class Count: @unchecked Sendable { var n = 0 }
        let count = Count()
        let value = try await Retrier(policy: policy, deadline: .now + .seconds(60)).run {
            count.n += 1
            if count.n < 10 { throw down }
            return count.n
        }
        #expect(value == 10)

        count.n = 0
        await #expect(throws: ReplicaError.self) {
            _ = try await Retrier(policy: policy).run {
                count.n += 1
                throw down
            }
        }
        #expect(count.n == 2)

        count.n = 0
        await #expect(throws: ReplicaError.self) {
            _ = try await Retrier(policy: policy, deadline: .now + .seconds(10)).run {
                count.n += 1
                throw down
            }
        }
        #expect(count.n > 2, "tried until the deadline, not just twice")
    }
}
