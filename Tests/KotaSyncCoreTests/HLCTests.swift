import Testing

@testable import KotaSyncCore

@Suite("Hybrid logical clock")
struct HLCTests {
    @Test func stampPacksMillisecondsAndCounter() {
        let s = HLC(milliseconds: 1_700_000_000_123, counter: 7)
        #expect(s.milliseconds == 1_700_000_000_123)
        #expect(s.counter == 7)
        #expect(s.rawValue == (1_700_000_000_123 << 16) | 7)
        #expect(s.description == "1700000000123.7")
        #expect(HLC(milliseconds: 5, counter: .max) < HLC(milliseconds: 6, counter: 0))
        #expect(HLC(milliseconds: 5, counter: 1) < HLC(milliseconds: 5, counter: 2))
        #expect(HLC.zero < HLC(milliseconds: 0, counter: 1))
    }

    @Test func tickFollowsTheWallClockWhenItMovesForward() {
        var clock = HybridClock()
        #expect(clock.tick(wallMilliseconds: 1000) == HLC(milliseconds: 1000, counter: 0))
        #expect(clock.tick(wallMilliseconds: 1005) == HLC(milliseconds: 1005, counter: 0))
        #expect(clock.last == HLC(milliseconds: 1005, counter: 0))
    }

    @Test func tickWithinTheSameMillisecondCountsUp() {
        var clock = HybridClock()
        _ = clock.tick(wallMilliseconds: 1000)
        #expect(clock.tick(wallMilliseconds: 1000) == HLC(milliseconds: 1000, counter: 1))
        #expect(clock.tick(wallMilliseconds: 1000) == HLC(milliseconds: 1000, counter: 2))
    }

    @Test func tickWhenTheWallClockGoesBackKeepsCounting() {
        var clock = HybridClock()
        _ = clock.tick(wallMilliseconds: 5000)
        #expect(clock.tick(wallMilliseconds: 10) == HLC(milliseconds: 5000, counter: 1))
        #expect(clock.tick(wallMilliseconds: 0) == HLC(milliseconds: 5000, counter: 2))
    }

    @Test func counterOverflowCarriesIntoMilliseconds() {
        var clock = HybridClock(last: HLC(milliseconds: 1000, counter: .max))
        #expect(clock.tick(wallMilliseconds: 1000) == HLC(milliseconds: 1001, counter: 0))
        #expect(clock.tick(wallMilliseconds: 999) == HLC(milliseconds: 1001, counter: 1))
        #expect(HLC(milliseconds: 7, counter: .max).successor == HLC(milliseconds: 8, counter: 0))
    }

    @Test func tickNeverGoesBackwardsWhateverTheWallClockDoes() {
        for seed in 0..<200 as Range<UInt64> {
            var g = SplitMix64(seed: seed)
            var clock = HybridClock()
            var wall: UInt64 = 1_700_000_000_000
            var previous = HLC.zero
            for step in 0..<500 {
                switch Int.random(in: 0..<5, using: &g) {
                case 0: wall += UInt64.random(in: 0...3, using: &g)
                case 1: wall -= UInt64.random(in: 0...50, using: &g)  // NTP step back
                case 2: wall += UInt64.random(in: 0...100_000, using: &g)
                case 3:
                    clock.receive(
                        HLC(
                            milliseconds: wall + UInt64.random(in: 0...1000, using: &g) - 500,
                            counter: .random(in: 0...5, using: &g)))
                default: break
                }
                let before = clock.last
                let s = clock.tick(wallMilliseconds: wall)
                #expect(s > previous, "seed \(seed) step \(step): \(s) after \(previous)")
                #expect(s > before, "seed \(seed) step \(step)")
                #expect(s.milliseconds >= wall, "seed \(seed) step \(step): stamp below the wall clock")
                #expect(clock.last == s)
                previous = s
            }
        }
    }

    @Test func receiveThenTickOrdersAfterTheReceivedStamp() {
        var clock = HybridClock()
        _ = clock.tick(wallMilliseconds: 1000)
        let remote = HLC(milliseconds: 90_000, counter: 4)  // a peer whose clock is ahead
        clock.receive(remote)
        #expect(clock.last == remote)
        let s = clock.tick(wallMilliseconds: 1001)
        #expect(s > remote)
        #expect(s == HLC(milliseconds: 90_000, counter: 5))
        // Once the wall clock passes the received stamp, it takes over again.
        #expect(clock.tick(wallMilliseconds: 90_001) == HLC(milliseconds: 90_001, counter: 0))
    }

    @Test func receivingAnOlderStampChangesNothing() {
        var clock = HybridClock()
        let s = clock.tick(wallMilliseconds: 5000)
        clock.receive(HLC(milliseconds: 10, counter: 9))
        #expect(clock.last == s)
        #expect(clock.tick(wallMilliseconds: 4000) == HLC(milliseconds: 5000, counter: 1))
    }

    @Test func receivingTheMaximalStampStillTicksForward() {
        // A hostile or corrupt stamp must not make the next local stamp wrap around to zero.
        var clock = HybridClock()
        clock.receive(HLC(rawValue: .max))
        let s = clock.tick(wallMilliseconds: 1_700_000_000_000)
        #expect(s >= HLC(rawValue: .max), "tick after receiving \(UInt64.max) returned \(s.rawValue)")
    }

    // MARK: - Clock-skew clamp

    @Test func stampWithinTheBoundIsAdmittedUnchanged() {
        let policy = ClockSkewPolicy(maxAheadMilliseconds: 60_000)
        let server: UInt64 = 1_700_000_000_000
        for ms in [0, server - 1_000_000, server, server + 59_999, server + 60_000] {
            let s = HLC(milliseconds: ms, counter: 3)
            let (admitted, clamped) = policy.admit(s, serverMilliseconds: server)
            #expect(admitted == s)
            #expect(!clamped)
        }
    }

    @Test func stampBeyondTheBoundIsClampedToTheBound() {
        let policy = ClockSkewPolicy(maxAheadMilliseconds: 60_000)
        let server: UInt64 = 1_700_000_000_000
        let (admitted, clamped) = policy.admit(
            HLC(milliseconds: server + 60_001, counter: 9), serverMilliseconds: server)
        #expect(clamped)
        #expect(admitted == HLC(milliseconds: server + 60_000, counter: 9))
        let (far, farClamped) = policy.admit(HLC(milliseconds: (1 << 48) - 1, counter: 0), serverMilliseconds: server)
        #expect(farClamped)
        #expect(far.milliseconds == server + 60_000)
    }

    @Test func defaultClampBoundIsFiveMinutes() {
        #expect(ClockSkewPolicy().maxAheadMilliseconds == 300_000)
    }
}
