import KotaSyncClient
import Testing

struct WatchScheduleTests {
    @Test func firstSyncIsDueAtOnceAndThenAfterTheInterval() {
        var schedule = WatchSchedule(interval: 30, now: 100)
        #expect(schedule.isDue(at: 100))
        schedule.succeeded(at: 101)
        #expect(!schedule.isDue(at: 130))
        #expect(schedule.isDue(at: 131))
    }

    @Test func aLocalChangeBringsTheNextSyncForwardToTheSettleDelay() {
        var schedule = WatchSchedule(interval: 30, settle: 1, now: 0)
        schedule.succeeded(at: 0)
        schedule.localChange(at: 5)
        #expect(schedule.nextSync == 6)
        // A second write in the burst does not push it back.
        schedule.localChange(at: 5.5)
        #expect(schedule.nextSync == 6)
    }

    @Test func failuresBackOffExponentiallyUpToTheCapAndLocalChangesDoNotShortenTheWait() {
        var schedule = WatchSchedule(interval: 30, minimumBackoff: 2, maximumBackoff: 300, now: 0)
        var waits: [Double] = []
        for i in 0..<12 { waits.append(schedule.failed(at: Double(i), jitter: 1)) }
        #expect(waits.prefix(8) == [2, 4, 8, 16, 32, 64, 128, 256])
        #expect(waits.suffix(4) == [300, 300, 300, 300])
        let due = schedule.nextSync
        schedule.localChange(at: 12)
        #expect(schedule.nextSync == due)
        #expect(schedule.failures == 12)
    }

    @Test func aSuccessAfterFailuresResetsTheBackoff() {
        var schedule = WatchSchedule(interval: 30, minimumBackoff: 2, now: 0)
        schedule.failed(at: 0, jitter: 1)
        schedule.failed(at: 2, jitter: 1)
        schedule.succeeded(at: 10)
        #expect(schedule.failures == 0)
        #expect(schedule.failed(at: 11, jitter: 1) == 2)
    }

    @Test(arguments: [0.0, 0.25, 0.5, 1.0])
    func jitterKeepsTheWaitBetweenHalfAndAllOfTheBackoff(jitter: Double) {
        let wait = WatchSchedule.backoff(failures: 4, minimum: 2, maximum: 300, jitter: jitter)
        #expect(wait >= 8 && wait <= 16)
        #expect(wait == 8 + 8 * jitter)
    }
}
