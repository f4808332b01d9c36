/// Reads the primitive encodings of the wire format with a bounds check on every read.
///
/// Every failure is a ``SyncError`` with code `changeset_malformed` and the offset where
/// reading stopped, so a corrupt or hostile input can never read past the end of its buffer.
///
/// The descriptions of what is being read (`what`) are autoclosures: the decoder names every
/// read after its row ("row 4711 version"), and building those strings eagerly, for reads that
/// almost never fail, cost more than the reads themselves (`perf`: string interpolation and
/// integer formatting among the decoder's top symbols).
package struct ByteReader {
    private let bytes: [UInt8]
    package private(set) var offset: Int
    private let end: Int

    package init(_ bytes: [UInt8], from start: Int = 0, to end: Int? = nil) {
        self.bytes = bytes
        self.offset = start
        self.end = end ?? bytes.count
    }

    package var isAtEnd: Bool { offset == end }
    package var remaining: Int { end - offset }

    private func fail(_ what: () -> String) -> SyncError {
        SyncError(.changesetMalformed, "Payload ends or is invalid at byte \(offset) while reading \(what()).")
    }

    package mutating func readUInt8(_ what: @autoclosure () -> String = "a byte") throws(SyncError) -> UInt8 {
        guard offset < end else { throw fail(what) }
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
        guard remaining >= n else { throw fail(what) }
        var v: UInt64 = 0
        for i in 0..<n { v = (v << 8) | UInt64(bytes[offset + i]) }
        offset += n
        return v
    }

    package mutating func readVarint(_ what: @autoclosure () -> String) throws(SyncError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard offset < end, shift < 64 else { throw fail(what) }
            let byte = bytes[offset]
            offset += 1
            // The tenth byte may only carry the top bit of a 64-bit value.
            if shift == 63 && byte > 1 { throw fail(what) }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    /// Reads a varint that counts or indexes something, refusing values above `limit`.
    package mutating func readCount(_ what: @autoclosure () -> String, limit: Int) throws(SyncError) -> Int {
        let v = try readVarint(what())
        guard v <= UInt64(limit) else {
            throw SyncError(.changesetMalformed, "\(what()) is \(v) at byte \(offset), more than the \(limit) allowed.")
        }
        return Int(v)
    }

    package mutating func readZigzag(_ what: @autoclosure () -> String) throws(SyncError) -> Int64 {
        let v = try readVarint(what())
        return Int64(bitPattern: v >> 1) ^ -Int64(bitPattern: v & 1)
    }

    package mutating func readBytes(_ n: Int, _ what: @autoclosure () -> String) throws(SyncError) -> ArraySlice<UInt8>
    {
        guard n >= 0, remaining >= n else { throw fail(what) }
        defer { offset += n }
        return bytes[offset..<offset + n]
    }

    package mutating func readString(_ what: @autoclosure () -> String) throws(SyncError) -> String {
        let n = try readCount(what() + " length", limit: remaining)
        let slice = try readBytes(n, what())
        guard let s = String(validating: slice, as: UTF8.self) else {
            throw SyncError(.changesetMalformed, "\(what()) ending at byte \(offset) is not valid UTF-8.")
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
            guard !v.isNaN else { throw SyncError(.changesetMalformed, "\(what()) ending at byte \(offset) is a NaN.") }
            return .real(v)
        case ValueTag.text: return .text(try readString(what()))
        case ValueTag.blob:
            let n = try readCount(what() + " length", limit: remaining)
            return .blob(Array(try readBytes(n, what())))
        default:
            throw SyncError(.changesetMalformed, "Unknown value tag \(tag) at byte \(offset - 1) in \(what()).")
        }
    }
}
