import Foundation
import Testing

@testable import KotaSyncCore

@Suite("Changeset codec")
struct ChangesetCodecTests {
    static let patients = Changeset.Table(
        name: "patients", primaryKey: ["id"], columns: ["name", "nik", "weight", "photo"])
    static let visits = Changeset.Table(name: "visits", primaryKey: ["opd", "seq"], columns: ["patient", "note"])
    static let tags = Changeset.Table(name: "tags", primaryKey: ["tag"], columns: [])

    static func push(_ rows: [Changeset.Row], tables: [Changeset.Table] = [patients]) -> Changeset {
        Changeset(
            kind: .push, id: UUID(), replicaID: UUID(), firstSequence: 10, lastSequence: 20, tables: tables, rows: rows)
    }

    static func roundTrip(_ c: Changeset, sourceLocation: SourceLocation = #_sourceLocation) throws -> Changeset {
        let decoded = try ChangesetCodec.decode(ChangesetCodec.encode(c))
        #expect(identical(decoded, c), "decoded \(decoded) differs from \(c)", sourceLocation: sourceLocation)
        return decoded
    }

    // MARK: - Round trips

    @Test("Every storage class round-trips bit-exact, as key and as column", arguments: edgeValues.indices)
    func everyStorageClassRoundTripsBitExact(_ index: Int) throws {
        let value = edgeValues[index]
        let c = Self.push([
            Changeset.Row(
                table: 0, operation: .upsert, version: 3, stamp: HLC(milliseconds: 1, counter: 2), primaryKey: [value],
                columns: [
                    .init(column: 0, value: value), .init(column: 1, value: .text("x")), .init(column: 3, value: value),
                ])
        ])
        let decoded = try Self.roundTrip(c)
        let row = try #require(decoded.rows.first)
        #expect(identical(row.primaryKey[0], value))
        #expect(identical(row.columns[0].value, value))
        #expect(identical(row.columns[2].value, value))
        #expect(row.columns[0].value.storageClass == value.storageClass)
    }

    @Test func minusZeroAndZeroStayDistinctOnTheWire() throws {
        let plus = Self.push([
            .init(
                table: 0, operation: .update, version: 1, stamp: .zero, primaryKey: [.integer(1)],
                columns: [.init(column: 2, value: .real(0.0))])
        ])
        var minus = plus
        minus.rows[0].columns[0].value = .real(-0.0)
        #expect(ChangesetCodec.encodePayload(plus) != ChangesetCodec.encodePayload(minus))
        let p = try ChangesetCodec.decode(ChangesetCodec.encode(plus))
        let m = try ChangesetCodec.decode(ChangesetCodec.encode(minus))
        guard case .real(let pv) = p.rows[0].columns[0].value, case .real(let mv) = m.rows[0].columns[0].value else {
            Issue.record("not reals")
            return
        }
        #expect(pv.bitPattern == 0)
        #expect(mv.bitPattern == 0x8000_0000_0000_0000)
        #expect(p.rows[0].columns[0].value != m.rows[0].columns[0].value)
    }

    @Test func textThatLooksNumericStaysText() throws {
        let values: [SQLValue] = [
            .text("007"), .text("1"), .text("1.0"), .text(""), .integer(7), .real(7), .blob([0x30, 0x30, 0x37]),
        ]
        let c = Self.push(
            values.enumerated().map { i, v in
                .init(
                    table: 0, operation: .update, version: 1, stamp: .zero, primaryKey: [.integer(Int64(i))],
                    columns: [.init(column: 0, value: v)])
            })
        let decoded = try Self.roundTrip(c)
        #expect(
            decoded.rows.map { $0.columns[0].value.storageClass } == [
                .text, .text, .text, .text, .integer, .real, .blob,
            ])
        #expect(decoded.rows[0].columns[0].value == .text("007"))
        #expect(decoded.rows[0].columns[0].value != .integer(7))
    }

    @Test func largeAndZeroFilledBlobsRoundTrip() throws {
        var g = SplitMix64(seed: 7)
        let large = g.bytes(3 << 20)
        let zeros = [UInt8](repeating: 0, count: 100_000)
        let c = Self.push([
            .init(
                table: 0, operation: .upsert, version: 0, stamp: .zero, primaryKey: [.blob(zeros)],
                columns: [.init(column: 3, value: .blob(large))]),
            .init(
                table: 0, operation: .upsert, version: 0, stamp: .zero, primaryKey: [.blob([])],
                columns: [.init(column: 3, value: .blob(zeros))]),
        ])
        _ = try Self.roundTrip(c)
    }

    @Test func multiTableChangesetRoundTripsWithStampsInAnyOrder() throws {
        let stamps: [UInt64] = [500, 100, .max, 0, 1 << 63, (1 << 63) - 1, 42]
        let rows: [Changeset.Row] = stamps.enumerated().map { i, s in
            switch i % 3 {
            case 0:
                .init(
                    table: 0, operation: .upsert, version: UInt64(i), stamp: HLC(rawValue: s),
                    primaryKey: [.integer(Int64(i))],
                    columns: [
                        .init(column: 0, value: .text("p\(i)")), .init(column: 1, value: .null),
                        .init(column: 2, value: .real(60.5)), .init(column: 3, value: .blob([1])),
                    ])
            case 1:
                .init(
                    table: 1, operation: .update, version: UInt64(Int64.max), stamp: HLC(rawValue: s),
                    primaryKey: [.text("opd-\(i)"), .integer(Int64(i))],
                    columns: [.init(column: 1, value: .text("note"))])
            default:
                .init(
                    table: 2, operation: .delete, version: 7, stamp: HLC(rawValue: s), primaryKey: [.text("tag\(i)")],
                    columns: [])
            }
        }
        let c = Self.push(rows, tables: [Self.patients, Self.visits, Self.tags])
        let decoded = try Self.roundTrip(c)
        #expect(decoded.rows.map(\.stamp.rawValue) == stamps)
        #expect(decoded.tables == [Self.patients, Self.visits, Self.tags])
    }

    @Test func perColumnBaseVersionsRoundTrip() throws {
        let c = Self.push([
            .init(
                table: 0, operation: .update, version: 10, stamp: HLC(rawValue: 9), primaryKey: [.integer(1)],
                columns: [
                    .init(column: 0, value: .text("a"), baseVersion: 7), .init(column: 1, value: .text("b")),
                    .init(column: 2, value: .integer(3), baseVersion: 0),
                ]),
            .init(
                table: 0, operation: .update, version: 10, stamp: HLC(rawValue: 9), primaryKey: [.integer(2)],
                columns: [.init(column: 0, value: .text("c"))]),
        ])
        let decoded = try Self.roundTrip(c)
        #expect(decoded.rows[0].columns.map(\.baseVersion) == [7, nil, 0])
        #expect(decoded.rows[1].columns.map(\.baseVersion) == [nil])
    }

    @Test func rowsWithoutColumnBasesCarryNoBaseFlag() {
        let c = Self.push([
            .init(
                table: 0, operation: .update, version: 10, stamp: .zero, primaryKey: [.integer(1)],
                columns: [.init(column: 0, value: .null)])
        ])
        let p = ChangesetCodec.encodePayload(c)
        let expected = payload { w in
            w.writeTables([Self.patients])
            w.writeVarint(1)
            w.writeRowHeader(op: 2, flags: 0, version: 10, stampDelta: 0)
            w.writeValue(.integer(1))
            w.writeVarint(1)
            w.writeVarint(0)
            w.writeValue(.null)
        }
        #expect(p == expected)
    }

    @Test func aBaseEqualToTheRowVersionDecodesAsNoOverride() throws {
        let c = Self.push([
            .init(
                table: 0, operation: .update, version: 10, stamp: .zero, primaryKey: [.integer(1)],
                columns: [.init(column: 0, value: .null, baseVersion: 10)])
        ])
        let decoded = try ChangesetCodec.decode(ChangesetCodec.encode(c))
        #expect(decoded.rows[0].columns[0].baseVersion == nil)
        #expect(decoded.rows[0].columns[0].value == .null)
    }

    @Test func pullPageRoundTrips() throws {
        let page = Changeset(
            kind: .pull, id: UUID(), replicaID: .zero, firstSequence: 100, lastSequence: 250,
            tables: [Self.patients, Self.tags],
            rows: [
                .init(
                    table: 0, operation: .upsert, version: 101, stamp: HLC(milliseconds: 1_700_000_000_000, counter: 0),
                    primaryKey: [.integer(1)],
                    columns: (0..<4).map { .init(column: $0, value: .integer(Int64($0))) }),
                .init(
                    table: 1, operation: .delete, version: 250, stamp: HLC(milliseconds: 1_700_000_000_001, counter: 3),
                    primaryKey: [.text("x")], columns: []),
            ])
        let decoded = try Self.roundTrip(page)
        #expect(decoded.kind == .pull)
        #expect(decoded.replicaID == .zero)
        #expect(decoded.firstSequence == 100)
        #expect(decoded.lastSequence == 250)
    }

    @Test func emptyChangesetRoundTrips() throws {
        _ = try Self.roundTrip(Self.push([], tables: []))
    }

    // MARK: - Header

    /// Sequences and versions are SQLite integers on both sides: 2^63 − 1 is the largest a
    /// changeset may carry; above it both decoders refuse the changeset where they read the number.
    @Test func sequencesAndVersionsAboveTheLargestSQLiteIntegerAreMalformed() throws {
        func changeset(first: UInt64 = 1, last: UInt64 = 1, version: UInt64 = 1, base: UInt64? = nil) -> Changeset {
            Changeset(
                kind: .push, id: UUID(), replicaID: UUID(), firstSequence: first, lastSequence: last,
                tables: [Self.patients],
                rows: [
                    .init(
                        table: 0, operation: .update, version: version, stamp: .zero, primaryKey: [.integer(1)],
                        columns: [.init(column: 0, value: .text("x"), baseVersion: base)])
                ])
        }
        let largest = UInt64(Int64.max)
        let accepted = changeset(first: largest, last: largest, version: largest, base: largest - 1)
        #expect(try ChangesetCodec.decode(ChangesetCodec.encode(accepted)) == accepted)
        for (what, refused) in [
            ("first sequence", changeset(first: largest + 1, last: largest + 1)),
            ("last sequence", changeset(last: .max)), ("version", changeset(version: largest + 1)),
            ("base version", changeset(base: .max)),
        ] {
            let bytes = ChangesetCodec.encode(refused)
            let whole = try #require(throws: SyncError.self) { try ChangesetCodec.decode(bytes) }
            #expect(whole.code == .changesetMalformed, "\(what)")
            #expect(whole.message.contains("above 9223372036854775807"), "\(what): \(whole.message)")
            let streamed = try #require(throws: SyncError.self) {
                var stream = try ChangesetStream(bytes, limits: DecodeLimits())
                while try stream.next() != nil {}
            }
            #expect(streamed == whole, "\(what)")
        }
    }

    @Test func headerLayoutIsAsSpecified() throws {
        let id = UUID(uuidString: "00112233-4455-6677-8899-AABBCCDDEEFF")!
        let replica = UUID(uuidString: "FFEEDDCC-BBAA-9988-7766-554433221100")!
        let c = Changeset(
            kind: .push, id: id, replicaID: replica, firstSequence: 0x0102_0304_0506_0708,
            lastSequence: UInt64(Int64.max),
            tables: [Self.patients],
            rows: [
                .init(table: 0, operation: .delete, version: 1, stamp: .zero, primaryKey: [.integer(1)], columns: [])
            ])
        let bytes = ChangesetCodec.encode(c)
        let payloadBytes = ChangesetCodec.encodePayload(c)
        #expect(Array(bytes[0..<4]) == Array("KSYN".utf8))
        #expect(bytes[4] == 1)
        #expect(bytes[5] == 1)
        #expect(bytes[6] == 0 && bytes[7] == 0)
        #expect(
            Array(bytes[8..<24]) == [
                0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF,
            ])
        #expect(Array(bytes[24..<40]) == replica.bytes)
        #expect(Array(bytes[40..<48]) == [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(Array(bytes[48..<56]) == [0x7F] + [UInt8](repeating: 0xFF, count: 7))

        let header = try ChangesetCodec.decodeHeader(bytes)
        #expect(header.kind == .push)
        #expect(header.id == id)
        #expect(header.replicaID == replica)
        #expect(header.firstSequence == 0x0102_0304_0506_0708)
        #expect(header.lastSequence == UInt64(Int64.max))
        #expect(header.uncompressedLength == payloadBytes.count)
        #expect(header.compressedLength == bytes.count - ChangesetHeader.size)
        let crc = Zlib.crc32(bytes[68...], initial: Zlib.crc32(bytes[0..<64]))
        #expect(header.checksum == crc)
        #expect(
            Array(bytes[64..<68]) == [
                UInt8(crc >> 24), UInt8(truncatingIfNeeded: crc >> 16), UInt8(truncatingIfNeeded: crc >> 8),
                UInt8(truncatingIfNeeded: crc),
            ])
        // The body is the zlib stream of the payload.
        #expect(try Zlib.decompress(bytes[68...], expectedLength: payloadBytes.count) == payloadBytes)
    }

    // MARK: - Bad envelopes

    static var valid: [UInt8] {
        ChangesetCodec.encode(
            push([
                .init(
                    table: 0, operation: .upsert, version: 0, stamp: HLC(rawValue: 77), primaryKey: [.integer(1)],
                    columns: [.init(column: 0, value: .text("Siti"))])
            ]))
    }

    @Test("A header cut short is truncated", arguments: [0, 1, 3, 4, 5, 20, 67])
    func truncatedHeaderIsTruncated(_ length: Int) {
        expectSyncError(.changesetTruncated) { () throws(SyncError) in
            try ChangesetCodec.decode(Array(Self.valid.prefix(length)))
        }
    }

    @Test func shortInputThatIsNotAChangesetIsUnsupported() {
        expectSyncError(.unsupportedVersion) { () throws(SyncError) in try ChangesetCodec.decode(Array("<html>".utf8)) }
    }

    @Test func truncatedPayloadIsTruncated() {
        let v = Self.valid
        for cut in [1, 2, v.count - 68] {
            expectSyncError(.changesetTruncated, "cut \(cut)") { () throws(SyncError) in
                try ChangesetCodec.decode(Array(v.dropLast(cut)))
            }
        }
    }

    @Test func trailingBytesAreMalformed() {
        expectSyncError(.changesetMalformed) { () throws(SyncError) in try ChangesetCodec.decode(Self.valid + [0]) }
        expectSyncError(.changesetMalformed) { () throws(SyncError) in
            try ChangesetCodec.decode(Self.valid + Self.valid)
        }
    }

    @Test func wrongMagicIsUnsupported() {
        for magic in ["KSYM", "ksyn", "PK\u{3}\u{4}", "\u{0}\u{0}\u{0}\u{0}"] {
            var b = Self.valid
            b.replaceSubrange(0..<4, with: Array(magic.utf8))
            expectSyncError(.unsupportedVersion, "\(magic)") { () throws(SyncError) in
                try ChangesetCodec.decode(Envelope.reseal(b))
            }
        }
    }

    @Test("Another format version is unsupported", arguments: [0, 2, 255] as [UInt8])
    func wrongVersionIsUnsupported(_ version: UInt8) {
        var b = Self.valid
        b[Envelope.versionOffset] = version
        expectSyncError(.unsupportedVersion) { () throws(SyncError) in try ChangesetCodec.decode(Envelope.reseal(b)) }
        expectSyncError(.unsupportedVersion) { () throws(SyncError) in
            try ChangesetCodec.decodeHeader(Envelope.reseal(b))
        }
    }

    @Test("An unknown kind is malformed", arguments: [0, 3, 255] as [UInt8])
    func unknownKindIsMalformed(_ kind: UInt8) {
        var b = Self.valid
        b[Envelope.kindOffset] = kind
        expectSyncError(.changesetMalformed) { () throws(SyncError) in try ChangesetCodec.decode(Envelope.reseal(b)) }
    }

    @Test func anyFlippedBitFailsTheChecksum() {
        let v = Self.valid
        // Every byte the CRC covers that is not checked before it (magic, version, kind, flags
        // and lengths are): ids, sequences, the checksum itself, and the body.
        for offset in Array(8..<56) + Array(64..<v.count) {
            var b = v
            b[offset] ^= 0x10
            expectSyncError(.changesetCorrupt, "byte \(offset)") { () throws(SyncError) in try ChangesetCodec.decode(b)
            }
        }
    }

    @Test func declaredHugePayloadIsRefusedBeforeInflating() {
        // 2^31 bytes declared, ten bytes of body, and a wrong CRC: the limit must be checked first,
        // so neither the CRC nor zlib (nor a 2 GiB buffer) is ever reached.
        var b = Envelope.raw(body: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], uncompressed: 1 << 31)
        b[Envelope.checksumOffset] ^= 0xFF
        expectSyncError(.changesetTooLarge) { () throws(SyncError) in try ChangesetCodec.decodeHeader(b) }
        expectSyncError(.changesetTooLarge) { () throws(SyncError) in try ChangesetCodec.decode(b) }
        let max = Envelope.raw(body: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], uncompressed: .max)
        expectSyncError(.changesetTooLarge) { () throws(SyncError) in try ChangesetCodec.decode(max) }
    }

    @Test func uncompressedLimitIsInclusive() throws {
        let v = Self.valid
        let header = try ChangesetCodec.decodeHeader(v)
        _ = try ChangesetCodec.decode(v, limits: DecodeLimits(maxUncompressedBytes: header.uncompressedLength))
        expectSyncError(.changesetTooLarge) { () throws(SyncError) in
            try ChangesetCodec.decode(v, limits: DecodeLimits(maxUncompressedBytes: header.uncompressedLength - 1))
        }
    }

    @Test func compressionRatioAboveTheLimitIsTooLarge() throws {
        let zeros = Self.push([
            .init(
                table: 0, operation: .upsert, version: 0, stamp: .zero, primaryKey: [.integer(1)],
                columns: [.init(column: 3, value: .blob(.init(repeating: 0, count: 200_000)))])
        ])
        let bytes = ChangesetCodec.encode(zeros)
        let header = try ChangesetCodec.decodeHeader(bytes, limits: DecodeLimits(maxCompressionRatio: 1_000_000))
        let ratio = header.uncompressedLength / header.compressedLength
        #expect(ratio > 100)
        _ = try ChangesetCodec.decode(bytes, limits: DecodeLimits(maxCompressionRatio: ratio + 1))
        expectSyncError(.changesetTooLarge) { () throws(SyncError) in
            try ChangesetCodec.decode(bytes, limits: DecodeLimits(maxCompressionRatio: ratio - 1))
        }
        // By the header alone: 1000x of a 100-byte body passes the header check, 1000x + 1 does not.
        let body = [UInt8](repeating: 7, count: 100)
        _ = try ChangesetCodec.decodeHeader(Envelope.raw(body: body, uncompressed: 100_000))
        expectSyncError(.changesetTooLarge) { () throws(SyncError) in
            try ChangesetCodec.decode(Envelope.raw(body: body, uncompressed: 100_001))
        }
    }

    @Test func unlimitedRatioDoesNotOverflow() throws {
        // max(compressed, 1) × Int.max must not trap; the check is then simply passed.
        let v = Self.valid
        let c = try ChangesetCodec.decode(v, limits: DecodeLimits(maxCompressionRatio: .max))
        #expect(c.rows.count == 1)
    }

    @Test("Inflated length must match the header", arguments: [-1, 1, -5, 1000])
    func inflatedLengthNotMatchingTheHeaderIsCorrupt(_ delta: Int) throws {
        var b = Self.valid
        let header = try ChangesetCodec.decodeHeader(b)
        Envelope.setUInt32(&b, at: Envelope.uncompressedOffset, UInt32(header.uncompressedLength + delta))
        expectSyncError(.changesetCorrupt) { () throws(SyncError) in try ChangesetCodec.decode(Envelope.reseal(b)) }
    }

    @Test func bodyThatIsNotZlibIsCorrupt() {
        var g = SplitMix64(seed: 3)
        let b = Envelope.raw(body: g.bytes(40), uncompressed: 100)
        expectSyncError(.changesetCorrupt) { () throws(SyncError) in try ChangesetCodec.decode(b) }
    }

    @Test func bytesAfterTheZlibStreamAreCorrupt() throws {
        let p = ChangesetCodec.encodePayload(Self.push([]))
        let b = Envelope.raw(body: Zlib.compress(p) + [0, 0, 0], uncompressed: UInt32(p.count))
        expectSyncError(.changesetCorrupt) { () throws(SyncError) in try ChangesetCodec.decode(b) }
        _ = try ChangesetCodec.decode(Envelope.raw(body: Zlib.compress(p), uncompressed: UInt32(p.count)))
    }

    /// `Protocol/changeset.md` §4, step 11.
    @Test func rowCountAboveTheRowLimitIsTooLarge() throws {
        let rows: [Changeset.Row] = (0..<3).map {
            .init(
                table: 0, operation: .delete, version: 1, stamp: .zero, primaryKey: [.integer(Int64($0))], columns: [])
        }
        let bytes = ChangesetCodec.encode(Self.push(rows))
        _ = try ChangesetCodec.decode(bytes, limits: DecodeLimits(maxRows: 3))
        expectSyncError(.changesetTooLarge) { () throws(SyncError) in
            try ChangesetCodec.decode(bytes, limits: DecodeLimits(maxRows: 2))
        }
    }

    @Test func declaredRowCountAboveTheLimitIsTooLargeWhateverFollows() {
        // No rows follow at all: the count alone decides.
        for count: UInt64 in [1_000_001, 1 << 40, (1 << 63) - 1] {
            let p = payload { w in
                w.writeTables([Self.t2])
                w.writeVarint(count)
            }
            expectSyncError(.changesetTooLarge, "\(count)") { () throws(SyncError) in
                try ChangesetCodec.decode(Envelope.wrap(payload: p))
            }
        }
    }

    @Test func rowCountOfTwoToThe63IsMalformed() {
        for count: UInt64 in [1 << 63, .max] {
            let p = payload { w in
                w.writeTables([Self.t2])
                w.writeVarint(count)
            }
            expectSyncError(.changesetMalformed, "\(count)") { () throws(SyncError) in
                try ChangesetCodec.decode(Envelope.wrap(payload: p))
            }
        }
    }

    @Test func brokenTableDictionaryIsMalformedEvenBeforeAHugeRowCount() {
        let p = payload { w in
            w.writeVarint(1)
            w.writeString("t")
            w.writeVarint(0)
            w.writeVarint(0)
            w.writeVarint(5_000_000)
        }
        expectSyncError(.changesetMalformed) { () throws(SyncError) in
            try ChangesetCodec.decode(Envelope.wrap(payload: p))
        }
    }

    /// Found while writing the fuzz target (seed Tests/Fuzz/corpus/crashes/wide-table-dictionary.bin):
    /// the duplicate checks searched the names read so far, so a 13 KB body (100 tables of 2,000
    /// columns) took 16 s to decode under ASan, and a payload at the 64 MiB limit, a few hundred
    /// kilobytes compressed, minutes of server CPU.
    @Test(.timeLimit(.minutes(1)))
    func aWideTableDictionaryDecodesInLinearTime() throws {
        let columns = (0..<2_000).map { "c\($0)" }
        let tables = (0..<1_000).map { Changeset.Table(name: "t\($0)", primaryKey: ["id"], columns: columns) }
        let wide = payload { w in
            w.writeTables(tables)
            w.writeVarint(0)
        }
        let decoded = try ChangesetCodec.decode(Envelope.wrap(payload: wide))
        #expect(decoded.tables == tables)

        // The same dictionary with the last column of the last table repeated, and with the last
        // table's name repeated, is still refused.
        var repeatedColumn = tables
        repeatedColumn[999].columns[1_999] = "c0"
        var repeatedTable = tables
        repeatedTable[999].name = "t0"
        for bad in [repeatedColumn, repeatedTable] {
            let p = payload { w in
                w.writeTables(bad)
                w.writeVarint(0)
            }
            expectSyncError(.changesetMalformed) { () throws(SyncError) in
                try ChangesetCodec.decode(Envelope.wrap(payload: p))
            }
        }
    }

    @Test("Header flags other than 0 are malformed", arguments: [0x0001, 0x8000, 0xABCD] as [UInt16])
    func headerFlagsMustBeZero(_ flags: UInt16) {
        var b = Self.valid
        b[6] = UInt8(flags >> 8)
        b[7] = UInt8(truncatingIfNeeded: flags)
        expectSyncError(.changesetMalformed) { () throws(SyncError) in try ChangesetCodec.decode(Envelope.reseal(b)) }
        // Checked before the CRC.
        expectSyncError(.changesetMalformed) { () throws(SyncError) in try ChangesetCodec.decode(b) }
    }

    @Test("NaN is refused in a key and in a column", arguments: nanValues.indices)
    func nanIsMalformed(_ index: Int) {
        let nan = nanValues[index]
        let inColumn = Self.push([
            .init(
                table: 0, operation: .update, version: 1, stamp: .zero, primaryKey: [.integer(1)],
                columns: [.init(column: 2, value: nan)])
        ])
        expectSyncError(.changesetMalformed) { () throws(SyncError) in
            try ChangesetCodec.decode(ChangesetCodec.encode(inColumn))
        }
        let inKey = Self.push([
            .init(table: 0, operation: .delete, version: 1, stamp: .zero, primaryKey: [nan], columns: [])
        ])
        expectSyncError(.changesetMalformed) { () throws(SyncError) in
            try ChangesetCodec.decode(ChangesetCodec.encode(inKey))
        }
    }

    // MARK: - Malformed payloads

    struct BadPayload: CustomTestStringConvertible, Sendable {
        var name: String
        var kind: Changeset.Kind = .push
        var bytes: [UInt8]
        var testDescription: String { name }
    }

    static let t2 = Changeset.Table(name: "t", primaryKey: ["id"], columns: ["a", "b"])

    static let badPayloads: [BadPayload] = [
        BadPayload(name: "empty payload", bytes: []),
        BadPayload(name: "varint longer than ten bytes", bytes: [UInt8](repeating: 0xFF, count: 11) + [0]),
        BadPayload(name: "tenth varint byte above 1", bytes: [UInt8](repeating: 0xFF, count: 9) + [0x02, 0]),
        BadPayload(name: "varint cut off at the end", bytes: [0x80]),
        // Only the shortest form of a varint is valid, so no two decoders can read one input two ways.
        BadPayload(name: "over-long varint 80 00 for 0", bytes: [0x80, 0x00, 0x00]),
        BadPayload(name: "over-long varint ff 00 for 127", bytes: [0xFF, 0x00, 0x00]),
        BadPayload(name: "over-long ten-byte varint for 0", bytes: [UInt8](repeating: 0x80, count: 9) + [0x00, 0x00]),
        BadPayload(
            name: "over-long varint as a row version",
            bytes: payload { w in
                w.writeTables([t2])
                w.writeVarint(1)
                w.writeVarint(0)
                w.writeUInt8(3)
                w.writeUInt8(0)
                w.writeBytes([0x85, 0x00])
                w.writeVarint(0)
                w.writeValue(.integer(1))
                w.writeVarint(0)
            }),
        BadPayload(name: "table count above its limit", bytes: payload { $0.writeVarint(10_001) }),
        BadPayload(
            name: "table without primary key",
            bytes: payload { w in
                w.writeVarint(1)
                w.writeString("t")
                w.writeVarint(0)
                w.writeVarint(0)
                w.writeVarint(0)
            }),
        BadPayload(
            name: "string length beyond payload",
            bytes: payload { w in
                w.writeVarint(1)
                w.writeVarint(50)
                w.writeBytes([0x74])
            }),
        BadPayload(
            name: "invalid UTF-8 table name",
            bytes: payload { w in
                w.writeVarint(1)
                w.writeVarint(2)
                w.writeBytes([0xC3, 0x28])
                w.writeVarint(1)
                w.writeString("id")
                w.writeVarint(0)
                w.writeVarint(0)
            }),
        BadPayload(
            name: "row table index out of range",
            bytes: payload { w in
                w.writeTables([t2])
                w.writeVarint(1)
                w.writeRowHeader(table: 1, op: 3)
                w.writeValue(.integer(1))
                w.writeVarint(0)
            }),
        BadPayload(
            name: "row but no tables",
            bytes: payload { w in
                w.writeTables([])
                w.writeVarint(1)
                w.writeRowHeader(table: 0, op: 3)
                w.writeValue(.integer(1))
                w.writeVarint(0)
            }),
        BadPayload(
            name: "column index out of range",
            bytes: payload { w in
                w.writeTables([t2])
                w.writeVarint(1)
                w.writeRowHeader(op: 2)
                w.writeValue(.integer(1))
                w.writeVarint(1)
                w.writeVarint(2)
                w.writeValue(.null)
            }),
        BadPayload(
            name: "more columns than the table has",
            bytes: payload { w in
                w.writeTables([t2])
                w.writeVarint(1)
                w.writeRowHeader(op: 1)
                w.writeValue(.integer(1))
                w.writeVarint(3)
                for c in 0..<3 as Range<UInt64> {
                    w.writeVarint(c % 2)
                    w.writeValue(.null)
                }
            }),
        BadPayload(
            name: "duplicate column",
            bytes: payload { w in
                w.writeTables([t2])
                w.writeVarint(1)
                w.writeRowHeader(op: 2)
                w.writeValue(.integer(1))
                w.writeVarint(2)
                w.writeVarint(1)
                w.writeValue(.integer(5))
                w.writeVarint(1)
                w.writeValue(.integer(6))
            }),
        BadPayload(
            name: "delete with columns",
            bytes: payload { w in
                w.writeTables([t2])
                w.writeVarint(1)
                w.writeRowHeader(op: 3)
                w.writeValue(.integer(1))
                w.writeVarint(1)
                w.writeVarint(0)
                w.writeValue(.null)
            }),
        BadPayload(
            name: "row count beyond payload",
            bytes: payload { w in
                w.writeTables([t2])
                w.writeVarint(1000)
                w.writeRowHeader(op: 3)
                w.writeValue(.integer(1))
                w.writeVarint(0)
            }),
        BadPayload(
            name: "one row fewer than declared",
            bytes: payload { w in
                w.writeTables([t2])
                w.writeVarint(2)
                w.writeRowHeader(op: 3)
                w.writeValue(.integer(1))
                w.writeVarint(0)
            }),
        BadPayload(
            name: "bytes after the last row",
            bytes: payload { w in
                w.writeTables([t2])
                w.writeVarint(1)
                w.writeRowHeader(op: 3)
                w.writeValue(.integer(1))
                w.writeVarint(0)
                w.writeUInt8(0)
            }),
        BadPayload(
            name: "invalid UTF-8 text value",
            bytes: payload { w in
                w.writeTables([t2])
                w.writeVarint(1)
                w.writeRowHeader(op: 2)
                w.writeValue(.integer(1))
                w.writeVarint(1)
                w.writeVarint(0)
                w.writeUInt8(ValueTag.text)
                w.writeVarint(2)
                w.writeBytes([0xC3, 0x28])
            }),
        BadPayload(
            name: "overlong UTF-8 in a key",
            bytes: payload { w in
                w.writeTables([t2])
                w.writeVarint(1)
                w.writeRowHeader(op: 3)
                w.writeUInt8(ValueTag.text)
                w.writeVarint(2)
                w.writeBytes([0xC0, 0xAF])
                w.writeVarint(0)
            }),
        BadPayload(
            name: "UTF-16 surrogate encoded as UTF-8",
            bytes: payload { w in
                w.writeTables([t2])
                w.writeVarint(1)
                w.writeRowHeader(op: 3)
                w.writeUInt8(ValueTag.text)
                w.writeVarint(3)
                w.writeBytes([0xED, 0xA0, 0x80])
                w.writeVarint(0)
            }),
        BadPayload(
            name: "unknown value tag 5",
            bytes: payload { w in
                w.writeTables([t2])
                w.writeVarint(1)
                w.writeRowHeader(op: 3)
                w.writeUInt8(5)
                w.writeVarint(0)
            }),
        BadPayload(
            name: "unknown value tag 255",
            bytes: payload { w in
                w.writeTables([t2])
                w.writeVarint(1)
                w.writeRowHeader(op: 2)
                w.writeValue(.integer(1))
                w.writeVarint(1)
                w.writeVarint(0)
                w.writeUInt8(255)
            }),
        BadPayload(
            name: "blob length beyond payload",
            bytes: payload { w in
                w.writeTables([t2])
                w.writeVarint(1)
                w.writeRowHeader(op: 3)
                w.writeUInt8(ValueTag.blob)
                w.writeVarint(9)
                w.writeBytes([1, 2])
                w.writeVarint(0)
            }),
        BadPayload(
            name: "real cut short",
            bytes: payload { w in
                w.writeTables([t2])
                w.writeVarint(1)
                w.writeRowHeader(op: 3)
                w.writeUInt8(ValueTag.real)
                w.writeBytes([0, 0, 0])
            }),
        BadPayload(
            name: "operation 0",
            bytes: payload { w in
                w.writeTables([t2])
                w.writeVarint(1)
                w.writeRowHeader(op: 0)
                w.writeValue(.integer(1))
                w.writeVarint(0)
            }),
        BadPayload(
            name: "operation 4",
            bytes: payload { w in
                w.writeTables([t2])
                w.writeVarint(1)
                w.writeRowHeader(op: 4)
                w.writeValue(.integer(1))
                w.writeVarint(0)
            }),
        BadPayload(
            name: "update in a pull page", kind: .pull,
            bytes: payload { w in
                w.writeTables([t2])
                w.writeVarint(1)
                w.writeRowHeader(op: 2)
                w.writeValue(.integer(1))
                w.writeVarint(1)
                w.writeVarint(0)
                w.writeValue(.null)
            }),
        BadPayload(
            name: "unknown row flag",
            bytes: payload { w in
                w.writeTables([t2])
                w.writeVarint(1)
                w.writeRowHeader(op: 3, flags: 2)
                w.writeValue(.integer(1))
                w.writeVarint(0)
            }),
        BadPayload(
            name: "table declared twice",
            bytes: payload { w in
                w.writeTables([t2, Changeset.Table(name: "t", primaryKey: ["id"], columns: [])])
                w.writeVarint(0)
            }),
        BadPayload(
            name: "column name declared twice",
            bytes: payload { w in
                w.writeTables([Changeset.Table(name: "t", primaryKey: ["id"], columns: ["a", "b", "a"])])
                w.writeVarint(0)
            }),
        BadPayload(
            name: "key column listed as a non-key column",
            bytes: payload { w in
                w.writeTables([Changeset.Table(name: "t", primaryKey: ["k1", "id"], columns: ["a", "id"])])
                w.writeVarint(0)
            }),
        BadPayload(
            name: "quiet NaN column value",
            bytes: payload { w in
                w.writeTables([t2])
                w.writeVarint(1)
                w.writeRowHeader(op: 2)
                w.writeValue(.integer(1))
                w.writeVarint(1)
                w.writeVarint(0)
                w.writeUInt8(ValueTag.real)
                w.writeUInt64(0x7FF8_0000_0000_0000)
            }),
        BadPayload(
            name: "signalling negative NaN key",
            bytes: payload { w in
                w.writeTables([t2])
                w.writeVarint(1)
                w.writeRowHeader(op: 3)
                w.writeUInt8(ValueTag.real)
                w.writeUInt64(0xFFF0_0000_0000_0001)
                w.writeVarint(0)
            }),
        BadPayload(
            name: "base flag but base missing",
            bytes: payload { w in
                w.writeTables([t2])
                w.writeVarint(1)
                w.writeRowHeader(op: 2, flags: 1)
                w.writeValue(.integer(1))
                w.writeVarint(1)
                w.writeVarint(0)
            }),
    ]

    @Test("Malformed payloads are refused as changeset_malformed", arguments: badPayloads)
    func malformedPayloadIsRefused(_ bad: BadPayload) {
        expectSyncError(.changesetMalformed) { () throws(SyncError) in
            try ChangesetCodec.decode(Envelope.wrap(payload: bad.bytes, kind: bad.kind))
        }
    }

    @Test func handWrittenPayloadsOfTheSameShapeDecode() throws {
        // The counterpart of the malformed cases: the same writer helpers make a valid payload.
        let bytes = payload { w in
            w.writeTables([Self.t2])
            w.writeVarint(2)
            w.writeRowHeader(op: 2, flags: 1, version: 4, stampDelta: 10)
            w.writeValue(.integer(1))
            w.writeVarint(2)
            w.writeVarint(1)
            w.writeVarint(3)
            w.writeValue(.text("é"))
            w.writeVarint(0)
            w.writeVarint(4)
            w.writeValue(.null)
            w.writeRowHeader(op: 3, version: 4, stampDelta: -3)
            w.writeValue(.integer(2))
            w.writeVarint(0)
        }
        let c = try ChangesetCodec.decode(Envelope.wrap(payload: bytes))
        #expect(c.rows.count == 2)
        #expect(
            c.rows[0].columns == [.init(column: 1, value: .text("é"), baseVersion: 3), .init(column: 0, value: .null)])
        #expect(c.rows.map(\.stamp.rawValue) == [10, 7])
        #expect(ChangesetCodec.encodePayload(c) == bytes)
    }

    // MARK: - Properties

    @Test func randomChangesetsRoundTripExactly() throws {
        for seed in 0..<400 as Range<UInt64> {
            var g = SplitMix64(seed: seed)
            let c = randomChangeset(using: &g)
            let level = Int32.random(in: 0...9, using: &g)
            let bytes = ChangesetCodec.encode(c, level: level)
            let decoded = try ChangesetCodec.decode(bytes)
            #expect(identical(decoded, c), "seed \(seed)")
            #expect(ChangesetCodec.encodePayload(decoded) == ChangesetCodec.encodePayload(c), "seed \(seed)")
            let header = try ChangesetCodec.decodeHeader(bytes)
            #expect(header.uncompressedLength == ChangesetCodec.encodePayload(c).count, "seed \(seed)")
        }
    }

    @Test func mutatedChangesetsEitherDecodeOrThrowSyncError() throws {
        let allowed: Set<SyncError.Code> = [
            .changesetTruncated, .changesetCorrupt, .changesetMalformed, .changesetTooLarge, .unsupportedVersion,
        ]
        var decodedCount = 0
        var refused: [SyncError.Code: Int] = [:]
        func attempt(_ bytes: [UInt8], _ context: @autoclosure () -> String) {
            do {
                let c = try ChangesetCodec.decode(bytes)
                decodedCount += 1
                // Whatever decodes is a well-formed changeset: it encodes and decodes to itself.
                let again = try ChangesetCodec.decode(ChangesetCodec.encode(c))
                #expect(identical(again, c), "\(context())")
            } catch {
                refused[error.code, default: 0] += 1
                #expect(allowed.contains(error.code), "\(error) — \(context())")
            }
        }
        for seed in 0..<300 as Range<UInt64> {
            var g = SplitMix64(seed: 1_000 + seed)
            let c = randomChangeset(using: &g, maxRows: 6)
            let bytes = ChangesetCodec.encode(c)
            let p = ChangesetCodec.encodePayload(c)
            for round in 0..<20 {
                // 1. Raw damage anywhere (mostly caught by the CRC).
                var damaged = bytes
                mutate(&damaged, using: &g)
                attempt(damaged, "seed \(seed) round \(round) raw")
                // 2. Damage to the envelope, resealed so the checks past the CRC run.
                var resealed = bytes
                mutate(&resealed, using: &g)
                if resealed.count >= ChangesetHeader.size { resealed = Envelope.reseal(resealed) }
                attempt(resealed, "seed \(seed) round \(round) resealed")
                // 3. Damage to the payload itself, in a valid envelope, so the payload parser runs.
                var inner = p
                mutate(&inner, using: &g)
                attempt(
                    Envelope.wrap(payload: inner, kind: c.kind),
                    "seed \(seed) round \(round) payload \(inner.hexString)")
            }
        }
        // Not vacuous: both outcomes happen, and the payload parser's own checks are reached.
        #expect(decodedCount > 100)
        #expect(refused[.changesetMalformed, default: 0] > 100)
        #expect(refused[.changesetCorrupt, default: 0] > 100)
    }

    func mutate<G: RandomNumberGenerator>(_ bytes: inout [UInt8], using g: inout G) {
        for _ in 0..<Int.random(in: 1...3, using: &g) {
            switch Int.random(in: 0..<6, using: &g) {
            case 0, 1:
                guard !bytes.isEmpty else { continue }
                bytes[Int.random(in: 0..<bytes.count, using: &g)] ^= UInt8(1) << UInt8.random(in: 0...7, using: &g)
            case 2:
                guard !bytes.isEmpty else { continue }
                bytes[Int.random(in: 0..<bytes.count, using: &g)] = [0, 0x7F, 0x80, 0xFF, 1, 5].randomElement(
                    using: &g)!
            case 3:
                guard !bytes.isEmpty else { continue }
                bytes.remove(at: Int.random(in: 0..<bytes.count, using: &g))
            case 4:
                bytes.insert(UInt8.random(in: 0...255, using: &g), at: Int.random(in: 0...bytes.count, using: &g))
            default:
                bytes.removeLast(Int.random(in: 0...min(bytes.count, 4), using: &g))
            }
        }
    }
}

// MARK: - Test vectors

/// The shared vectors in `Protocol/vectors/`, read where the spec keeps them: every `*.bin` decodes to
/// what its sibling `.json` describes and its payload re-encodes byte for byte; every file in
/// `vectors/invalid/` fails with the code `invalid/invalid.json` lists for it.
@Suite("Changeset test vectors")
struct ChangesetVectorTests {
    /// A vector's description, as `Protocol/vectors/*.json` writes it. Numbers may be JSON numbers
    /// or decimal strings; a row's table and a column may be an index or a name.
    struct Vector: Decodable {
        var kind: Flexible
        var id: Flexible
        var replicaId: Flexible
        var firstSequence: Flexible
        var lastSequence: Flexible
        var tables: [Table]
        var rows: [Row]
        var payloadHex: String

        struct Table: Decodable {
            var name: String
            var primaryKey: [String]
            var columns: [String]
        }

        struct Row: Decodable {
            var table: Flexible
            var operation: String
            var version: Flexible
            var stamp: Flexible
            var primaryKey: [SQLValue]
            var columns: [Column]
        }

        struct Column: Decodable {
            var column: Flexible
            var value: SQLValue
            var baseVersion: Flexible?
        }
    }

    /// A JSON scalar that may be a number or a string.
    enum Flexible: Decodable, CustomStringConvertible {
        case number(UInt64)
        case string(String)

        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let n = try? c.decode(UInt64.self) {
                self = .number(n)
            } else {
                self = .string(try c.decode(String.self))
            }
        }

        var uint64: UInt64? {
            switch self {
            case .number(let n): n
            case .string(let s): UInt64(s)
            }
        }

        var string: String {
            switch self {
            case .number(let n): String(n)
            case .string(let s): s
            }
        }

        var uuid: UUID? {
            let s = string
            if let u = UUID(uuidString: s) { return u }
            if let b = [UInt8](hex: s), b.count == 16 { return UUID(bytes: b) }
            return nil
        }

        var description: String { string }

        /// An index into `names`, given either as the index or as the name.
        func index(in names: [String]) -> Int? {
            if let n = uint64 { return Int(n) }
            return names.firstIndex(of: string)
        }
    }

    static var root: URL? {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Protocol/vectors")
        return FileManager.default.fileExists(atPath: url.path) ? url : nil
    }

    static func files(under root: URL) -> [URL] {
        let e = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey])
        var out: [URL] = []
        while let url = e?.nextObject() as? URL {
            if (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true { out.append(url) }
        }
        return out.sorted { $0.path < $1.path }
    }

    @Test func vectorsDecodeAsDescribed() throws {
        let root = try #require(Self.root, "Protocol/vectors is missing")
        let bins = Self.files(under: root).filter {
            $0.pathExtension == "bin" && !$0.path.dropFirst(root.path.count).split(separator: "/").contains("invalid")
        }
        try #require(!bins.isEmpty, "no *.bin vectors in \(root.path); copy them from Protocol/vectors/")
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        for bin in bins {
            let name = bin.lastPathComponent
            let jsonURL = bin.deletingPathExtension().appendingPathExtension("json")
            guard FileManager.default.fileExists(atPath: jsonURL.path) else {
                Issue.record("\(name) has no sibling \(jsonURL.lastPathComponent)")
                continue
            }
            let v = try decoder.decode(Vector.self, from: Data(contentsOf: jsonURL))
            let bytes = [UInt8](try Data(contentsOf: bin))
            let c: Changeset
            do {
                c = try ChangesetCodec.decode(bytes)
            } catch {
                Issue.record("\(name) does not decode: \(error)")
                continue
            }
            let expectedKind: Changeset.Kind? =
                switch v.kind.string {
                case "push", "1": .push
                case "pull", "2": .pull
                default: nil
                }
            #expect(c.kind == expectedKind, "\(name): kind")
            #expect(c.id == v.id.uuid, "\(name): id")
            #expect(c.replicaID == v.replicaId.uuid, "\(name): replica_id")
            #expect(c.firstSequence == v.firstSequence.uint64, "\(name): first_sequence")
            #expect(c.lastSequence == v.lastSequence.uint64, "\(name): last_sequence")
            #expect(
                c.tables == v.tables.map { .init(name: $0.name, primaryKey: $0.primaryKey, columns: $0.columns) },
                "\(name): tables")
            #expect(c.rows.count == v.rows.count, "\(name): row count")
            for (i, (row, expected)) in zip(c.rows, v.rows).enumerated() {
                let tableIndex = expected.table.index(in: v.tables.map(\.name))
                #expect(row.table == tableIndex, "\(name) row \(i): table")
                #expect("\(row.operation)" == expected.operation, "\(name) row \(i): operation")
                #expect(row.version == expected.version.uint64, "\(name) row \(i): version")
                #expect(row.stamp.rawValue == expected.stamp.uint64, "\(name) row \(i): stamp")
                #expect(
                    row.primaryKey.count == expected.primaryKey.count
                        && zip(row.primaryKey, expected.primaryKey).allSatisfy { identical($0, $1) },
                    "\(name) row \(i): primary key \(row.primaryKey) vs \(expected.primaryKey)")
                #expect(row.columns.count == expected.columns.count, "\(name) row \(i): column count")
                let columnNames = tableIndex.flatMap { $0 < v.tables.count ? v.tables[$0].columns : nil } ?? []
                for (j, (col, e)) in zip(row.columns, expected.columns).enumerated() {
                    #expect(col.column == e.column.index(in: columnNames), "\(name) row \(i) column \(j): index")
                    #expect(identical(col.value, e.value), "\(name) row \(i) column \(j): \(col.value) vs \(e.value)")
                    // The decoder reports a base only where it differs from the row's version.
                    let base = e.baseVersion?.uint64
                    #expect(col.baseVersion == (base == row.version ? nil : base), "\(name) row \(i) column \(j): base")
                }
            }
            let payloadBytes = try #require([UInt8](hex: v.payloadHex), "\(name): payload_hex is not hex")
            let header = try ChangesetCodec.decodeHeader(bytes)
            #expect(
                try Zlib.decompress(bytes[ChangesetHeader.size...], expectedLength: header.uncompressedLength)
                    == payloadBytes,
                "\(name): the body does not inflate to payload_hex")
            #expect(
                ChangesetCodec.encodePayload(c).hexString == v.payloadHex.lowercased(), "\(name): re-encoded payload")
        }
    }

    @Test func invalidVectorsFailWithTheirListedCodes() throws {
        let root = try #require(Self.root, "Protocol/vectors is missing")
        let folder = root.appendingPathComponent("invalid")
        let listURL = folder.appendingPathComponent("invalid.json")
        try #require(
            FileManager.default.fileExists(atPath: listURL.path),
            "no invalid/invalid.json in \(root.path); copy the vectors from Protocol/vectors/")
        // Either {"file": "code"} or [{"file", "error", "description"}].
        struct Entry: Decodable {
            var file: String
            var error: String
        }
        let data = try Data(contentsOf: listURL)
        let list: [String: String] =
            if let map = try? JSONDecoder().decode([String: String].self, from: data) {
                map
            } else {
                Dictionary(
                    try JSONDecoder().decode([Entry].self, from: data).map { ($0.file, $0.error) },
                    uniquingKeysWith: { a, _ in a })
            }
        let files = Self.files(under: folder).filter { $0.lastPathComponent != "invalid.json" }
        try #require(!files.isEmpty, "no invalid vectors in \(folder.path)")
        var listed = Set(list.keys)
        for file in files {
            let relative = String(file.path.dropFirst(folder.path.count + 1))
            guard let code = list[relative] ?? list["invalid/" + relative] ?? list[file.lastPathComponent] else {
                Issue.record("\(relative) is not listed in invalid.json")
                continue
            }
            listed.remove(relative)
            listed.remove("invalid/" + relative)
            listed.remove(file.lastPathComponent)
            let bytes = [UInt8](try Data(contentsOf: file))
            do {
                let c = try ChangesetCodec.decode(bytes)
                Issue.record("\(relative) decodes (\(c.rows.count) rows) but should fail with \(code)")
            } catch {
                #expect(error.code.rawValue == code, "\(relative): \(error)")
            }
        }
        #expect(listed.isEmpty, "invalid.json lists files that do not exist: \(listed.sorted())")
    }
}
