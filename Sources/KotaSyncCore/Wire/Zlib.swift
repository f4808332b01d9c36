import CZlib

/// zlib (RFC 1950) compression and the CRC-32 that the changeset envelope uses.
package enum Zlib {
    /// The compression level KotaSync uses on the wire: zlib's default trade-off.
    package static let defaultLevel: Int32 = 6

    package static func compress(_ input: [UInt8], level: Int32 = defaultLevel) -> [UInt8] {
        var destLength = compressBound(uLong(input.count))
        var out = [UInt8](repeating: 0, count: Int(destLength))
        let status = out.withUnsafeMutableBufferPointer { dst in
            input.withUnsafeBufferPointer { src in
                compress2(dst.baseAddress, &destLength, src.baseAddress, uLong(src.count), level)
            }
        }
        // compressBound guarantees room; any other failure is a broken zlib.
        precondition(status == Z_OK, "zlib compress2 failed with \(status)")
        out.removeSubrange(Int(destLength)...)
        return out
    }

    /// Inflates `input`, which must inflate to exactly `expectedLength` bytes.
    ///
    /// The caller has already checked `expectedLength` against its limit, so the output buffer
    /// is the only allocation and a stream that would inflate further is cut off, not followed.
    package static func decompress(_ input: ArraySlice<UInt8>, expectedLength: Int) throws(SyncError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: max(expectedLength, 1))
        var destLength = uLong(expectedLength)
        var sourceLength = uLong(input.count)
        let status = out.withUnsafeMutableBufferPointer { dst in
            input.withUnsafeBufferPointer { src in
                uncompress2(dst.baseAddress, &destLength, src.baseAddress, &sourceLength)
            }
        }
        switch status {
        case Z_OK:
            guard Int(destLength) == expectedLength else {
                throw SyncError(
                    .changesetCorrupt,
                    "The payload inflates to \(destLength) bytes but the header declares \(expectedLength).")
            }
            guard Int(sourceLength) == input.count else {
                throw SyncError(.changesetCorrupt, "The compressed payload has bytes after the end of its zlib stream.")
            }
            out.removeSubrange(expectedLength...)
            return out
        case Z_BUF_ERROR where Int(destLength) == expectedLength:
            throw SyncError(
                .changesetCorrupt, "The payload inflates to more than the \(expectedLength) bytes its header declares.")
        default:
            throw SyncError(
                .changesetCorrupt, "The compressed payload is not a valid zlib stream (zlib status \(status)).")
        }
    }

    package static func crc32<C: Collection>(_ bytes: C, initial: UInt32 = 0) -> UInt32 where C.Element == UInt8 {
        let result =
            bytes.withContiguousStorageIfAvailable { buf in
                CZlib.crc32(uLong(initial), buf.baseAddress, uInt(buf.count))
            }
            ?? Array(bytes).withUnsafeBufferPointer { buf in
                CZlib.crc32(uLong(initial), buf.baseAddress, uInt(buf.count))
            }
        return UInt32(truncatingIfNeeded: result)
    }
}
