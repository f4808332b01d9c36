import KotaSyncClient
import Testing

struct ProgressLineTests {
    @Test func aKnownTotalShowsThePercentageAndTheTimeLeft() {
        let line = ProgressLine(label: "push", totalRows: 50_000)
        #expect(
            line.render(rows: 10_000, bytes: 2_500_000, elapsed: 10)
                == "push: 10,000/50,000 rows (20%), 2.5 MB, 1,000 rows/s, 250.0 kB/s, 40s left")
    }

    @Test func anUnknownTotalShowsRowsAndRateButNoTimeLeft() {
        let line = ProgressLine(label: "pull")
        #expect(line.render(rows: 1_234_567, bytes: 0, elapsed: 100) == "pull: 1,234,567 rows, 12,346 rows/s")
    }

    @Test func noRateInTheFirstHalfSecond() {
        #expect(ProgressLine(label: "pull").render(rows: 10, bytes: 999, elapsed: 0.1) == "pull: 10 rows, 999 B")
    }

    @Test func longTransfersShowMinutesAndHours() {
        let line = ProgressLine(label: "push", totalRows: 1_000_000)
        #expect(line.render(rows: 1_000, bytes: 0, elapsed: 10).hasSuffix("2h46m left"))
        #expect(line.render(rows: 10_000, bytes: 0, elapsed: 10).hasSuffix("16m30s left"))
    }

    @Test func theLinkShowsChunksAndResumesOnlyOnceThereAreAny() {
        var link = LinkStats()
        #expect(
            ProgressLine(label: "push").render(rows: 0, bytes: 48_000, elapsed: 0.1, link: link)
                == "push: 0 rows, 48.0 kB")
        link.chunks = 12
        link.resumes = 3
        link.bytesResent = 40_960
        #expect(
            ProgressLine(label: "push").render(rows: 0, bytes: 48_000, elapsed: 0.1, link: link)
                == "push: 0 rows, 48.0 kB, 12 chunk(s), 3 resume(s), 41.0 kB again")
    }
}
