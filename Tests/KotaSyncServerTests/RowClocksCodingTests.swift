import Foundation
import Testing

@testable import KotaSyncCore
@testable import KotaSyncServer

@Suite("Row clocks coding")
struct RowClocksCodingTests {
    static func roundTrip(_ clocks: RowClocks, columnCount: Int? = nil) throws -> RowClocks {
        try RowClocksCoding.decode(
            RowClocksCoding.encode(clocks), version: clocks.version, columnCount: columnCount ?? clocks.columns.count,
            resolve: W.byNumber)
    }

    @Test func liveRowRoundTrips() throws {
        let clocks = RowClocks(
            version: 12,
            columns: [
                head(0, 0, .master), head(12, .max, W.c), head(3, 1 << 63, W.z), head(.max, 7, W.a, insert: true),
            ],
            existence: [head(.max, 7, W.a, insert: true), head(12, .max, W.c)])
        #expect(try Self.roundTrip(clocks) == clocks)
        #expect(try !Self.roundTrip(clocks).isDeleted)
    }

    @Test func insertAndDeleteFlagsRoundTrip() throws {
        let existence = [
            head(4, 1, W.a), head(5, 2, W.b, insert: true), head(6, 3, W.c, delete: true),
            head(7, 4, W.z, insert: true, delete: true),
        ]
        let decoded = try Self.roundTrip(RowClocks(version: 7, columns: [], existence: existence))
        #expect(decoded.existence == existence)
        #expect(decoded.existence.map(\.isInsert) == [false, true, false, true])
        #expect(decoded.existence.map(\.isDelete) == [false, false, true, true])
    }

    @Test func tombstoneWithSeveralDeletesRoundTrips() throws {
        let clocks = RowClocks(
            version: 40, columns: [head(5, 1, W.c), head(6, 2, W.a)],
            existence: [head(40, 100, W.a, delete: true), head(39, 90, W.b, delete: true)])
        #expect(try Self.roundTrip(clocks) == clocks)
        #expect(try Self.roundTrip(clocks).isDeleted)
    }

    @Test func rowWithoutExistenceHeadsRoundTripsAsDeleted() throws {
        let clocks = RowClocks(version: 3, columns: [head(3, 1, W.a)], existence: [])
        #expect(try Self.roundTrip(clocks) == clocks)
        #expect(clocks.isDeleted)
    }

    @Test func randomClocksRoundTrip() throws {
        var g = SplitMix64(seed: 5)
        for _ in 0..<500 {
            func randomHead() -> Head {
                Head(
                    writer: W.all.randomElement(using: &g)!, version: g.next() >> UInt64.random(in: 0...63, using: &g),
                    stamp: HLC(rawValue: g.next()), isInsert: g.chance(0.5), isDelete: g.chance(0.5))
            }
            let clocks = RowClocks(
                version: g.next(), columns: (0..<Int.random(in: 0...8, using: &g)).map { _ in randomHead() },
                existence: (0..<Int.random(in: 0...4, using: &g)).map { _ in randomHead() })
            #expect(try Self.roundTrip(clocks) == clocks)
        }
    }

    @Test func versionComesFromTheCallerNotTheBytes() throws {
        let clocks = RowClocks(version: 3, columns: [head(3, 1, W.a)], existence: [head(3, 1, W.a)])
        let decoded = try RowClocksCoding.decode(
            RowClocksCoding.encode(clocks), version: 77, columnCount: 1, resolve: W.byNumber)
        #expect(decoded.version == 77)
        #expect(decoded.columns == clocks.columns)
        #expect(decoded.existence == clocks.existence)
    }

    @Test func columnsAddedToTheSchemaLaterReadAsWrittenByTheMasterAtVersionZero() throws {
        let clocks = RowClocks(
            version: 9, columns: [head(4, 1, W.a), head(9, 2, W.c)],
            existence: [head(4, 1, W.a, insert: true), head(9, 5, W.b, delete: true)])
        let decoded = try Self.roundTrip(clocks, columnCount: 5)
        #expect(decoded.columns.count == 5)
        #expect(Array(decoded.columns.prefix(2)) == clocks.columns)
        #expect(
            decoded.columns.dropFirst(2).allSatisfy {
                $0 == Head(writer: .master, version: 0, stamp: .zero, isInsert: false, isDelete: false)
            })
        #expect(decoded.existence == clocks.existence)
    }

    @Test func decodingForFewerColumnsKeepsTheFirstOnes() throws {
        let clocks = RowClocks(
            version: 9, columns: [head(4, 1, W.a), head(9, 2, W.c), head(2, 3, W.b)], existence: [head(9, 2, W.c)])
        let decoded = try Self.roundTrip(clocks, columnCount: 2)
        #expect(decoded.columns == Array(clocks.columns.prefix(2)))
        #expect(decoded.existence == clocks.existence)
    }

    @Test func writersAreStoredByNumberAndResolvedBack() throws {
        let clocks = RowClocks(version: 1, columns: [head(1, 1, W.z)], existence: [head(1, 1, W.c, delete: true)])
        var asked: [Int64] = []
        let decoded = try RowClocksCoding.decode(RowClocksCoding.encode(clocks), version: 1, columnCount: 1) { n in
            asked.append(n)
            return W.byNumber(n)
        }
        #expect(asked == [99, 3])
        #expect(decoded.columns[0].writer == W.z)
        #expect(decoded.existence[0].writer == W.c)
    }

    @Test func truncatedClocksAreRefused() {
        let bytes = RowClocksCoding.encode(
            RowClocks(
                version: 1, columns: [head(1, 300, W.b)],
                existence: [head(1, 2, W.a, insert: true), head(1, 3, W.c, delete: true)]))
        for n in 0..<bytes.count {
            expectSyncError(.changesetMalformed, "prefix \(n)") { () throws(SyncError) in
                try RowClocksCoding.decode(Array(bytes.prefix(n)), version: 1, columnCount: 1, resolve: W.byNumber)
            }
        }
    }

    /// One byte after the existence heads is the liveness flag (1 deleted, 2 live); anything else is refused.
    @Test(
        "Trailing bytes after the existence heads are refused",
        arguments: [
            ([0], "unknown liveness flag 0"), ([1, 2, 3], "2 bytes too many"), ([0xFF], "unknown liveness flag 255"),
        ]
            as [([UInt8], String)])
    func trailingBytesAreRefused(_ extra: [UInt8], _ message: String) {
        let bytes = RowClocksCoding.encode(
            RowClocks(version: 1, columns: [head(1, 300, W.b)], existence: [head(1, 300, W.b, insert: true)]))
        let error = expectSyncError(.internalError) { () throws(SyncError) in
            try RowClocksCoding.decode(bytes + extra, version: 1, columnCount: 1, resolve: W.byNumber)
        }
        #expect(error?.message.contains(message) == true, "\(error?.message ?? "")")
    }

    @Test func deleteWinsLivenessRoundTrips() throws {
        // A write head remains, but under delete-wins the row is deleted.
        let clocks = RowClocks(
            version: 4, columns: [head(3, 1, W.a)], existence: [head(3, 1, W.a), head(4, 2, W.b, delete: true)],
            deleted: true)
        #expect(clocks.isDeleted)
        let decoded = try Self.roundTrip(clocks)
        #expect(decoded.isDeleted)
        #expect(decoded == clocks)
        // The update-wins rule needs no flag byte.
        let plain = RowClocks(version: 4, columns: [head(3, 1, W.a)], existence: [head(3, 1, W.a)], deleted: false)
        #expect(
            RowClocksCoding.encode(plain)
                == RowClocksCoding.encode(
                    RowClocks(
                        version: 4, columns: [head(3, 1, W.a)], existence: [head(3, 1, W.a)])))
    }
}
