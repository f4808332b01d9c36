/// Reads the primitive encodings of the wire format with a bounds check on every read.
///
/// Every failure is a ``SyncError`` with code `changeset_malformed` and the offset where
/// reading stopped, so a corrupt or hostile input can never read past the end of its buffer.
///
/// The descriptions of what is being read (`what`) are autoclosures: the decoder names every
/// read after its row ("row 4711 version"), and building those strings eagerly, for reads that
/// almost never fail, cost more than the reads themselves (`perf`: string interpolation and
/// integer formatting among the decoder's top symbols).
///
/// A reader may see a window of a longer payload (``ChangesetStream`` inflates a changeset piece by
/// piece): `base` is the payload offset of `bytes[0]`, so that messages name the byte in the
/// payload, and ``ranOut`` tells a failure that more bytes might cure from one they cannot.
package struct ByteReader {
    private let bytes: [UInt8]
    package private(set) var offset: Int
    private let end: Int
    /// The payload offset of `bytes[0]`; only messages use it.
    private let base: Int
    /// True after a read failed because it needed bytes past the end of what this reader sees.
    package private(set) var ranOut = false

    package init(_ bytes: [UInt8], from start: Int = 0, to end: Int? = nil, base: Int = 0) {
        self.bytes = bytes
        self.offset = start
        self.end = end ?? bytes.count
        self.base = base
    }

    package var isAtEnd: Bool { offset == end }
    package var remaining: Int { end - offset }
    /// Where reading stands, as an offset in the payload.
    package var position: Int { base + offset }

    private func fail(_ what: () -> String) -> SyncError {
        SyncError(.changesetMalformed, "Payload ends or is invalid at byte \(position) while reading \(what()).")
    }

    /// The failure of a read that needed more bytes than this reader sees.
    private mutating func starve(_ what: () -> String) -> SyncError {
        ranOut = true
        return fail(what)
    }

    package mutating func readUInt8(_ what: @autoclosure () -> String = "a byte") throws(SyncError) -> UInt8 {
        guard offset < end else { throw starve(what) }
        defer { offset += 1 }
        return bytes[offset]
    }

    package mutating func readUInt16(_ what: @autoclosure () -> String) throws(SyncError) -> UInt16 {
        UInt16(try readFixed(2, what()))
    }

    package mutating func readUInt32(_ what: @autoclosure () -> String) throws(SyncError) -> UInt32 {
        UInt32(try readFixed(4, what()))
    }

    package mutating func readUInt64(_ what: @autoclosure () -> String) throws(SyncError) -> UInt64 {
        try readFixed(8, what())
    }

    private mutating func readFixed(_ n: Int, _ what: @autoclosure () -> String) throws(SyncError) -> UInt64 {
        guard remaining >= n else { throw starve(what) }
        var v: UInt64 = 0
        for i in 0..<n { v = (v << 8) | UInt64(bytes[offset + i]) }
        offset += n
        return v
    }

    /// Reads an unsigned LEB128 varint in its shortest form; an over-long form (a last byte of 0
    /// after others) or one beyond 64 bits is `changeset_malformed`.
    package mutating func readVarint(_ what: @autoclosure () -> String) throws(SyncError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard offset < end else { throw starve(what) }
            guard shift < 64 else { throw fail(what) }
            let byte = bytes[offset]
            offset += 1
            // The tenth byte may only carry the top bit of a 64-bit value.
            if shift == 63 && byte > 1 { throw fail(what) }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 {
                // Only the shortest form is valid (`80 00` for 0 is not): with one encoding per
                // value, no two conforming decoders can disagree about an input.
                if byte == 0 && shift > 0 { throw fail(what) }
                return result
            }
            shift += 7
        }
    }

    /// Reads a varint that counts or indexes something, refusing values above `limit`.
    package mutating func readCount(_ what: @autoclosure () -> String, limit: Int) throws(SyncError) -> Int {
        let v = try readVarint(what())
        guard v <= UInt64(limit) else {
            throw SyncError(
                .changesetMalformed, "\(what()) is \(v) at byte \(position), more than the \(limit) allowed.")
        }
        return Int(v)
    }

    /// Reads the length of the bytes that follow, which must fit in what was left before it (the
    /// same bound as ``readCount(_:limit:)`` with `remaining`, and the same message).
    private mutating func readLength(_ what: @autoclosure () -> String) throws(SyncError) -> Int {
        let limit = remaining
        let v = try readVarint(what())
        guard v <= UInt64(limit) else {
            // A longer window might hold it: the caller decides whether this is the end.
            ranOut = true
            throw SyncError(
                .changesetMalformed, "\(what()) is \(v) at byte \(position), more than the \(limit) allowed.")
        }
        return Int(v)
    }

    package mutating func readZigzag(_ what: @autoclosure () -> String) throws(SyncError) -> Int64 {
        let v = try readVarint(what())
        return Int64(bitPattern: v >> 1) ^ -Int64(bitPattern: v & 1)
    }

    package mutating func readBytes(_ n: Int, _ what: @autoclosure () -> String) throws(SyncError) -> ArraySlice<UInt8>
    {
        guard n >= 0 else { throw fail(what) }
        guard remaining >= n else { throw starve(what) }
        defer { offset += n }
        return bytes[offset..<offset + n]
    }

    package mutating func readString(_ what: @autoclosure () -> String) throws(SyncError) -> String {
        let n = try readLength(what() + " length")
        let slice = try readBytes(n, what())
        guard let s = String(validating: slice, as: UTF8.self) else {
            throw SyncError(.changesetMalformed, "\(what()) ending at byte \(position) is not valid UTF-8.")
        }
        return s
    }

    package mutating func readValue(_ what: @autoclosure () -> String) throws(SyncError) -> SQLValue {
        let tag = try readUInt8(what() + " tag")
        switch tag {
        case ValueTag.null: return .null
        case ValueTag.integer: return .integer(try readZigzag(what()))
        case ValueTag.real:
            let v = Double(bitPattern: try readUInt64(what()))
            // SQLite has no NaN (it stores NULL instead), so no replica can have sent one.
            guard !v.isNaN else {
                throw SyncError(.changesetMalformed, "\(what()) ending at byte \(position) is a NaN.")
            }
            return .real(v)
        case ValueTag.text: return .text(try readString(what()))
        case ValueTag.blob:
            let n = try readLength(what() + " length")
            return .blob(Array(try readBytes(n, what())))
        default:
            throw SyncError(.changesetMalformed, "Unknown value tag \(tag) at byte \(position - 1) in \(what()).")
        }
    }
}
