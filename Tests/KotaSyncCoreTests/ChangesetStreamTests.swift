import Foundation
import Testing

@testable import KotaSyncCore

/// The streaming decoder against the whole-changeset decoder: the same rows from the same bytes,
/// and the same error (code and message) for every input either refuses, whatever the window.
@Suite("Changeset stream")
struct ChangesetStreamTests {
    /// Windows from the smallest (nearly every read runs past the end and is retried) to the
    /// server's.
    static let windows = [16, 257, 256 << 10]

    /// The sample server's limits, and limits small enough that small inputs reach them.
    static let serverLimits = DecodeLimits(maxUncompressedBytes: 64 << 20, maxCompressionRatio: 1000, maxRows: 200_000)
    static let tightLimits = DecodeLimits(maxUncompressedBytes: 4096, maxCompressionRatio: 50, maxRows: 40)

    /// Every row of `bytes` read through a stream, as one changeset, or the stream's error.
    static func streamed(_ bytes: [UInt8], limits: DecodeLimits, window: Int) -> Result<Changeset, SyncError> {
        Result { () throws(SyncError) -> Changeset in
            var stream = try ChangesetStream(bytes, limits: limits, window: window)
            var rows: [Changeset.Row] = []
            while let row = try stream.next() { rows.append(row) }
            // Asking again after the end changes nothing.
            #expect(try stream.next() == nil)
            var changeset = stream.withoutRows
            changeset.rows = rows
            return changeset
        }
    }

    /// Expects the stream to reach `decode`'s verdict on `bytes` with every window.
    static func expectSameVerdict(
        _ bytes: [UInt8], limits: DecodeLimits = DecodeLimits(), _ comment: Comment? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let whole = Result { () throws(SyncError) in try ChangesetCodec.decode(bytes, limits: limits) }
        for window in windows {
            switch (whole, streamed(bytes, limits: limits, window: window)) {
            case (.success(let a), .success(let b)):
                #expect(
                    identical(a, b), "window \(window): rows differ\(comment.map { " — \($0)" } ?? "")",
                    sourceLocation: sourceLocation)
            case (.failure(let a), .failure(let b)):
                #expect(a == b, "window \(window)\(comment.map { " — \($0)" } ?? "")", sourceLocation: sourceLocation)
            case (let a, let b):
                Issue.record(
                    "window \(window): decode gave \(a), the stream \(b)\(comment.map { " — \($0)" } ?? "")",
                    sourceLocation: sourceLocation)
            }
        }
    }

    /// A push of `count` rows of a two-column table, with a note of 40 to 150 characters each.
    static func bigPush(_ count: Int) -> Changeset {
        var g = SplitMix64(seed: 11)
        let rows = (0..<count).map { i in
            Changeset.Row(
                table: 0, operation: .upsert, version: 0,
                stamp: HLC(milliseconds: 1_700_000_000_000 + UInt64(i), counter: 0),
                primaryKey: [.text("row-\(i)")],
                columns: [
                    .init(column: 0, value: .integer(Int64(i))),
                    .init(
                        column: 1, value: .text(String(repeating: "catatan ", count: Int.random(in: 5...19, using: &g)))
                    ),
                ])
        }
        return Changeset(
            kind: .push, id: UUID(), replicaID: UUID(), firstSequence: 1, lastSequence: UInt64(count),
            tables: [Changeset.Table(name: "visits", primaryKey: ["id"], columns: ["n", "notes"])], rows: rows)
    }

    // MARK: - Same rows

    // The loops below yield now and then: these tests are CPU-bound, and on two cores they would
    // otherwise hold the threads that the time-limited tests running beside them need.

    @Test func randomChangesetsStreamToTheSameRows() async {
        var g = SplitMix64(seed: 2026)
        for i in 0..<120 {
            let changeset = randomChangeset(using: &g, maxRows: 30)
            Self.expectSameVerdict(ChangesetCodec.encode(changeset), "changeset \(i)")
            await Task.yield()
        }
    }

    @Test func edgeValuesAndRowsLargerThanTheWindowStreamToTheSameRows() {
        let rows = edgeValues.enumerated().map { i, value in
            Changeset.Row(
                table: 0, operation: .upsert, version: UInt64(i), stamp: HLC(rawValue: UInt64(i) &* 0x9E37_79B9),
                primaryKey: [value == .null ? .integer(Int64(i)) : value], columns: [.init(column: 0, value: value)])
        }
        let changeset = Changeset(
            kind: .push, id: UUID(), replicaID: UUID(), firstSequence: 1, lastSequence: 2,
            tables: [Changeset.Table(name: "t", primaryKey: ["k"], columns: ["v"])], rows: rows)
        Self.expectSameVerdict(ChangesetCodec.encode(changeset))
    }

    @Test func aLargeChangesetStreamsToTheSameRows() {
        Self.expectSameVerdict(ChangesetCodec.encode(Self.bigPush(5000)))
    }

    // MARK: - Same errors

    /// Every seed and finding of the fuzz corpus, down the fuzz target's paths: as sent, with its
    /// lengths and CRC made right, and as a payload in a correct envelope.
    @Test func everyFuzzCorpusInputGetsTheSameVerdict() async throws {
        let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fuzz/corpus")
        let files =
            try FileManager.default.contentsOfDirectory(atPath: corpus.path).map { corpus.appendingPathComponent($0) }
            + (try FileManager.default.contentsOfDirectory(atPath: corpus.appendingPathComponent("crashes").path)
                .map { corpus.appendingPathComponent("crashes/\($0)") })
        var tried = 0
        for file in files where !file.hasDirectoryPath {
            guard let data = FileManager.default.contents(atPath: file.path) else { continue }
            let bytes = [UInt8](data)
            let name = file.lastPathComponent
            Self.expectSameVerdict(bytes, limits: Self.serverLimits, "\(name) as sent")
            if bytes.count >= ChangesetHeader.size {
                var sealed = bytes
                Envelope.setUInt32(&sealed, at: Envelope.compressedOffset, UInt32(truncatingIfNeeded: bytes.count - 68))
                Self.expectSameVerdict(Envelope.reseal(sealed), limits: Self.tightLimits, "\(name) resealed")
            }
            for kind in [Changeset.Kind.push, .pull] {
                Self.expectSameVerdict(
                    Envelope.wrap(payload: bytes, kind: kind), limits: Self.tightLimits, "\(name) as a \(kind) payload")
            }
            tried += 1
            await Task.yield()
        }
        #expect(tried > 100)
    }

    /// A byte of the payload changed, anywhere: most changes break a row somewhere in the middle.
    @Test func aDamagedPayloadGetsTheSameVerdict() async {
        let payload = ChangesetCodec.encodePayload(Self.bigPush(60))
        var g = SplitMix64(seed: 5)
        for _ in 0..<60 {
            var damaged = payload
            let at = Int.random(in: 0..<payload.count, using: &g)
            damaged[at] = UInt8.random(in: 0...255, using: &g)
            Self.expectSameVerdict(Envelope.wrap(payload: damaged), "byte \(at) set to \(damaged[at])")
            await Task.yield()
        }
        for cut in [1, 2, 50, payload.count / 2, payload.count - 1] {
            Self.expectSameVerdict(Envelope.wrap(payload: Array(payload.dropLast(cut))), "cut \(cut)")
        }
        Self.expectSameVerdict(Envelope.wrap(payload: payload + [0, 0, 7]), "bytes after the last row")
    }

    /// The zlib stream changed (with a correct CRC), and the declared length wrong: zlib's
    /// verdicts, wherever in the stream the damage is.
    @Test func aDamagedZlibStreamGetsTheSameVerdict() async throws {
        let payload = ChangesetCodec.encodePayload(Self.bigPush(150))
        let compressed = Zlib.compress(payload)
        var g = SplitMix64(seed: 6)
        for _ in 0..<60 {
            var body = compressed
            let at = Int.random(in: 0..<body.count, using: &g)
            body[at] ^= UInt8.random(in: 1...255, using: &g)
            Self.expectSameVerdict(
                Envelope.raw(body: body, uncompressed: UInt32(payload.count)), "byte \(at) of the body")
            await Task.yield()
        }
        for cut in [1, 4, 5, 100, compressed.count / 2] {
            Self.expectSameVerdict(
                Envelope.raw(body: Array(compressed.dropLast(cut)), uncompressed: UInt32(payload.count)),
                "stream cut by \(cut)")
        }
        for delta in [-1000, -1, 1, 1000] {
            Self.expectSameVerdict(
                Envelope.raw(body: compressed, uncompressed: UInt32(payload.count + delta)), "declared \(delta)")
        }
        Self.expectSameVerdict(
            Envelope.raw(body: compressed + [0], uncompressed: UInt32(payload.count)), "a byte after the stream")
        // A declared length of 0 (zlib's uncompress2 has a case of its own for it).
        for inner in [[], [0], [1, 2, 3]] as [[UInt8]] {
            Self.expectSameVerdict(Envelope.raw(body: Zlib.compress(inner), uncompressed: 0), "declared 0, \(inner)")
        }
    }

    /// A bad row early and damage near the end of the zlib stream: reading the whole payload first,
    /// `decode` reports the damage; so does the stream, although it meets the bad row first.
    @Test func damageToTheZlibStreamIsReportedBeforeABadRow() throws {
        let push = Self.bigPush(2000)
        var payload = ChangesetCodec.encodePayload(push)
        // The table dictionary, the row count (two bytes for 2000), then the first row: its table
        // index, then its operation.
        let dictionary =
            ChangesetCodec.encodePayload(
                Changeset(
                    kind: .push, id: push.id, replicaID: push.replicaID, firstSequence: 1, lastSequence: 1,
                    tables: push.tables, rows: [])
            ).count - 1
        payload[dictionary + 2 + 1] = 9  // no such operation
        var body = Zlib.compress(payload)
        body[body.count - 2] ^= 0xFF  // the Adler-32 trailer
        let bytes = Envelope.raw(body: body, uncompressed: UInt32(payload.count))
        let error = expectSyncError(.changesetCorrupt) { () throws(SyncError) in
            try Self.streamed(bytes, limits: DecodeLimits(), window: 1000).get()
        }
        #expect(error?.message.contains("zlib") == true)
        Self.expectSameVerdict(bytes)
        // Without the damage, the bad row is what is reported.
        Self.expectSameVerdict(Envelope.wrap(payload: payload))
    }

    @Test func envelopeErrorsAreTheSame() {
        let valid = ChangesetCodec.encode(Self.bigPush(3))
        for length in [0, 3, 4, 67, 68, 100, valid.count - 1] {
            Self.expectSameVerdict(Array(valid.prefix(length)), "first \(length) bytes")
        }
        Self.expectSameVerdict(valid + [0], "a byte after the body")
        var flipped = valid
        flipped[30] ^= 1
        Self.expectSameVerdict(flipped, "a flipped bit")
        Self.expectSameVerdict(valid, limits: DecodeLimits(maxUncompressedBytes: 10), "too large")
        Self.expectSameVerdict(valid, limits: DecodeLimits(maxRows: 2), "too many rows")
    }

    // MARK: - The inflater

    /// Inflating in pieces of any size, with input read in pieces of any size, gives the bytes
    /// and the verdicts of inflating in one go.
    @Test func theInflaterAgreesWithWholeDecompression() throws {
        let payload = ChangesetCodec.encodePayload(Self.bigPush(50))
        let compressed = Zlib.compress(payload)
        let cases: [(body: [UInt8], declared: Int)] = [
            (compressed, payload.count), (compressed, payload.count - 1), (compressed, payload.count + 1),
            (compressed, 0), (Array(compressed.dropLast(3)), payload.count), (compressed + [1], payload.count),
            (Zlib.compress([]), 0), (Zlib.compress([7]), 0), ([1, 2, 3], 10),
        ]
        for (body, declared) in cases {
            let whole = Result { () throws(SyncError) in try Zlib.decompress(body[...], expectedLength: declared) }
            for (input, output) in [(1, 1), (7, 3), (64 << 10, 1000), (64 << 10, 64 << 10)] {
                let pieces = Result { () throws(SyncError) -> [UInt8] in
                    let inflater = Zlib.Inflater(
                        body, compressed: 0..<body.count, expectedLength: declared, chunk: input)
                    var out: [UInt8] = []
                    var buffer = [UInt8](repeating: 0, count: output)
                    while !inflater.isFinished {
                        let n = try buffer.withUnsafeMutableBufferPointer { b throws(SyncError) in
                            try inflater.inflate(into: b)
                        }
                        out += buffer[..<n]
                    }
                    return out
                }
                let label = "\(body.count) bytes declared \(declared), pieces of \(input)/\(output)"
                switch (whole, pieces) {
                case (.success(let a), .success(let b)): #expect(a == b, "\(label)")
                case (.failure(let a), .failure(let b)): #expect(a == b, "\(label)")
                case (let a, let b): Issue.record("\(label): whole \(a), in pieces \(b)")
                }
            }
        }
    }
}
