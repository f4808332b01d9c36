import Foundation
import Testing

@testable import KotaSyncCore

// MARK: - Seeded randomness

extension RandomNumberGenerator {
    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &self) < p }

    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8.random(in: 0...255, using: &self) } }

    mutating func uuid() -> UUID { UUID(bytes: bytes(16)) }
}

// MARK: - Values

/// NaNs: SQLite cannot store them, so the wire refuses them (`Protocol/changeset.md` §2.1).
let nanValues: [SQLValue] = [
    .real(.nan), .real(Double(bitPattern: 0x7FF8_0000_0000_0001)), .real(Double(bitPattern: 0xFFF0_0000_0000_0001)),
    .real(Double(bitPattern: 0x7FF0_0000_0000_0001)), .real(-.nan),
]

/// Values at the edges of every storage class (NaN excluded, see ``nanValues``).
let edgeValues: [SQLValue] = [
    .null,
    .integer(0), .integer(1), .integer(-1), .integer(63), .integer(-64), .integer(64), .integer(-65),
    .integer(Int64.max), .integer(Int64.min), .integer(Int64.max - 1), .integer(Int64.min + 1),
    .integer(1 << 32), .integer(-(1 << 32)),
    .real(0.0), .real(-0.0), .real(1.0), .real(-1.5),
    .real(Double.leastNonzeroMagnitude), .real(-Double.leastNonzeroMagnitude),
    .real(Double.leastNormalMagnitude.nextDown),  // largest subnormal
    .real(Double.greatestFiniteMagnitude), .real(-Double.greatestFiniteMagnitude),
    .real(1e308), .real(.infinity), .real(-.infinity), .real(1.0 / 3.0), .real(0.1),
    .text(""), .text("007"), .text("0"), .text("1"), .text("it's"), .text("héllo wörld"),
    .text("e\u{301}"),  // decomposed é, different bytes from "é"
    .text("é"), .text("日本語テキスト"), .text("🙂👩🏽‍⚕️"), .text("\u{0}nul inside"), .text(String(repeating: "x", count: 300)),
    .blob([]), .blob([0]), .blob([0, 0, 0, 0]), .blob([0xFF, 0x00, 0x80]),
    .blob((0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }),
]

extension SQLValue {
    /// A random value of any storage class, biased towards edges.
    static func random<G: RandomNumberGenerator>(using g: inout G) -> SQLValue {
        switch Int.random(in: 0..<8, using: &g) {
        case 0: return .null
        case 1: return .integer(Int64.random(in: .min ... .max, using: &g))
        case 2: return .integer(Int64.random(in: -300...300, using: &g))
        case 3:
            var d = Double(bitPattern: g.next())
            while d.isNaN { d = Double(bitPattern: g.next()) }
            return .real(d)
        case 4: return .real(Double.random(in: -1e6...1e6, using: &g))
        case 5:
            let alphabet: [Character] = ["a", "0", "7", " ", "'", "é", "日", "🙂", "\u{0}", "e\u{301}"]
            return .text(
                String((0..<Int.random(in: 0...12, using: &g)).map { _ in alphabet.randomElement(using: &g)! }))
        case 6: return .blob(g.bytes(Int.random(in: 0...40, using: &g)))
        default:
            return edgeValues.filter { if case .blob(let b) = $0 { b.count < 100 } else { true } }.randomElement(
                using: &g)!
        }
    }
}

/// Bit-exact identity, also for reals (−0.0 ≠ 0.0, NaN payloads kept) and texts (bytes, not
/// canonical equivalence).
func identical(_ a: SQLValue, _ b: SQLValue) -> Bool {
    switch (a, b) {
    case (.null, .null): true
    case let (.integer(x), .integer(y)): x == y
    case let (.real(x), .real(y)): x.bitPattern == y.bitPattern
    case let (.text(x), .text(y)): Array(x.utf8) == Array(y.utf8)
    case let (.blob(x), .blob(y)): x == y
    default: false
    }
}

// MARK: - Changesets

/// A random, valid changeset: between 1 and 3 tables, random rows, some with per-column bases.
/// A random valid changeset: sequences and versions up to 2^63 − 1, the most a decoder accepts.
func randomChangeset<G: RandomNumberGenerator>(using g: inout G, maxRows: Int = 12) -> Changeset {
    let kind: Changeset.Kind = g.chance(0.7) ? .push : .pull
    let tableCount = Int.random(in: 1...3, using: &g)
    let tables = (0..<tableCount).map { t in
        Changeset.Table(
            name: ["patients", "visits", "t\(t)", "日本", ""].randomElement(using: &g)! + "\(t)",
            primaryKey: (0..<Int.random(in: 1...3, using: &g)).map { "k\($0)" },
            columns: (0..<Int.random(in: 0...5, using: &g)).map { "c\($0)" })
    }
    var rows: [Changeset.Row] = []
    for _ in 0..<Int.random(in: 0...maxRows, using: &g) {
        let t = Int.random(in: 0..<tableCount, using: &g)
        let table = tables[t]
        let ops: [Changeset.Operation] = kind == .push ? [.upsert, .update, .delete] : [.upsert, .delete]
        let op = ops.randomElement(using: &g)!
        let version =
            g.chance(0.3) ? UInt64.random(in: 0...3, using: &g) : g.next() >> UInt64.random(in: 1...63, using: &g)
        var columns: [Changeset.ColumnValue] = []
        if op != .delete {
            let indices = Array(table.columns.indices).shuffled(using: &g)
                .prefix(Int.random(in: 0...table.columns.count, using: &g))
            let withBases = g.chance(0.3)
            for c in indices {
                var base: UInt64? = nil
                if withBases && g.chance(0.6) {
                    base = UInt64.random(in: 0...1000, using: &g)
                    if base == version { base = nil }
                }
                columns.append(Changeset.ColumnValue(column: c, value: .random(using: &g), baseVersion: base))
            }
        }
        let stamp: HLC =
            switch Int.random(in: 0..<4, using: &g) {
            case 0: HLC(rawValue: g.next())
            case 1: HLC(rawValue: 0)
            case 2: HLC(rawValue: .max)
            default:
                HLC(
                    milliseconds: 1_700_000_000_000 + UInt64.random(in: 0...10, using: &g),
                    counter: .random(in: 0...3, using: &g))
            }
        rows.append(
            Changeset.Row(
                table: t, operation: op, version: version, stamp: stamp,
                primaryKey: table.primaryKey.map { _ in .random(using: &g) }, columns: columns))
    }
    return Changeset(
        kind: kind, id: g.uuid(), replicaID: kind == .pull ? .zero : g.uuid(), firstSequence: g.next() >> 8,
        lastSequence: g.next() >> 1, tables: tables, rows: rows)
}

/// Whether two changesets are the same, with values compared bit for bit.
func identical(_ a: Changeset, _ b: Changeset) -> Bool {
    guard a == b, a.rows.count == b.rows.count else { return false }
    for (x, y) in zip(a.rows, b.rows) {
        guard x.primaryKey.count == y.primaryKey.count, x.columns.count == y.columns.count else { return false }
        for (p, q) in zip(x.primaryKey, y.primaryKey) where !identical(p, q) { return false }
        for (p, q) in zip(x.columns, y.columns) where !identical(p.value, q.value) { return false }
    }
    return true
}

// MARK: - Building raw envelopes

enum Envelope {
    /// Offsets of the header fields (see `Protocol/changeset.md`).
    static let versionOffset = 4
    static let kindOffset = 5
    static let uncompressedOffset = 56
    static let compressedOffset = 60
    static let checksumOffset = 64

    /// A well-formed envelope around `payload`, which need not be a valid payload: the header's
    /// lengths and CRC match the body.
    static func wrap(
        payload: [UInt8], kind: Changeset.Kind = .push, id: UUID = UUID(), replica: UUID = UUID(),
        first: UInt64 = 1, last: UInt64 = 1
    ) -> [UInt8] {
        let compressed = Zlib.compress(payload)
        return raw(
            body: compressed, kind: kind.rawValue, id: id, replica: replica, first: first, last: last,
            uncompressed: UInt32(payload.count))
    }

    /// An envelope with every field given, and a correct CRC.
    static func raw(
        magic: [UInt8] = ChangesetHeader.magic, version: UInt8 = ChangesetHeader.formatVersion, body: [UInt8],
        kind: UInt8 = 1, id: UUID = UUID(), replica: UUID = UUID(), first: UInt64 = 1, last: UInt64 = 1,
        uncompressed: UInt32, compressed: UInt32? = nil
    ) -> [UInt8] {
        var w = ByteWriter()
        w.writeBytes(magic)
        w.writeUInt8(version)
        w.writeUInt8(kind)
        w.writeUInt16(0)
        w.writeBytes(id.bytes)
        w.writeBytes(replica.bytes)
        w.writeUInt64(first)
        w.writeUInt64(last)
        w.writeUInt32(uncompressed)
        w.writeUInt32(compressed ?? UInt32(body.count))
        w.writeUInt32(0)
        w.writeBytes(body)
        return reseal(w.bytes)
    }

    /// Recomputes the CRC of an envelope after its header or body was changed.
    static func reseal(_ bytes: [UInt8]) -> [UInt8] {
        var out = bytes
        let crc = Zlib.crc32(out[ChangesetHeader.size...], initial: Zlib.crc32(out[0..<checksumOffset]))
        for i in 0..<4 { out[checksumOffset + i] = UInt8(truncatingIfNeeded: crc >> UInt32(24 - 8 * i)) }
        return out
    }

    /// Overwrites a big-endian 32-bit header field.
    static func setUInt32(_ bytes: inout [UInt8], at offset: Int, _ v: UInt32) {
        for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: v >> UInt32(24 - 8 * i)) }
    }
}

/// Builds a payload by hand with the codec's primitive writer.
func payload(_ build: (inout ByteWriter) -> Void) -> [UInt8] {
    var w = ByteWriter()
    build(&w)
    return w.bytes
}

extension ByteWriter {
    /// Writes the table dictionary of a payload.
    mutating func writeTables(_ tables: [Changeset.Table]) {
        writeVarint(UInt64(tables.count))
        for t in tables {
            writeString(t.name)
            writeVarint(UInt64(t.primaryKey.count))
            for k in t.primaryKey { writeString(k) }
            writeVarint(UInt64(t.columns.count))
            for c in t.columns { writeString(c) }
        }
    }

    /// Writes a row header: table index, operation byte, flags, version, stamp delta.
    mutating func writeRowHeader(
        table: UInt64 = 0, op: UInt8, flags: UInt8 = 0, version: UInt64 = 0, stampDelta: Int64 = 0
    ) {
        writeVarint(table)
        writeUInt8(op)
        writeUInt8(flags)
        writeVarint(version)
        writeZigzag(stampDelta)
    }
}

// MARK: - Expectations

/// Expects `body` to throw a ``SyncError`` with `code`.
@discardableResult
func expectSyncError<T>(
    _ code: SyncError.Code, _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws(SyncError) -> T
) -> SyncError? {
    do {
        let value = try body()
        Issue.record(
            "Expected \(code) but got a result: \(value)\(comment.map { " — \($0)" } ?? "")",
            sourceLocation: sourceLocation)
        return nil
    } catch {
        #expect(error.code == code, "\(error)\(comment.map { " — \($0)" } ?? "")", sourceLocation: sourceLocation)
        return error
    }
}
