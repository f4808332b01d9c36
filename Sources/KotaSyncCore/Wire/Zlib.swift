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

extension Zlib {
    /// Inflates a zlib stream piece by piece, in constant memory, and reaches the same verdicts as
    /// ``Zlib/decompress(_:expectedLength:)`` on the whole stream: the same errors for a stream
    /// that is not zlib, that inflates to more or fewer bytes than `expectedLength`, or that has
    /// bytes after its end. (That function is zlib's `uncompress2`; the cases below follow its
    /// loop, so that a changeset read in pieces is refused exactly as one read whole.)
    package final class Inflater {
        private let stream: UnsafeMutablePointer<z_stream>
        private let source: any ChangesetSource
        /// Where the compressed bytes are in `source`.
        private let compressed: Range<Int>
        /// The next byte of `source` to hand to zlib.
        private var nextInput: Int
        /// zlib keeps pointers into this between calls, so it is not a Swift array.
        private let input: UnsafeMutableRawBufferPointer
        /// Output room in all: `uncompress2` inflates into a buffer of the declared length (one
        /// byte when it is 0, to notice a stream that inflates to anything at all).
        private let capacity: Int
        package let expectedLength: Int
        /// True once the stream ended where it should; every byte has then been handed out.
        package private(set) var isFinished = false
        /// Where a discarded byte goes when nothing may be handed out (a declared length of 0).
        private var sink: UInt8 = 0
        /// The verdict once the stream was found unsound; every later call repeats it.
        private var failure: SyncError?

        /// An inflater of the bytes of `source` in `compressed`, which must inflate to exactly
        /// `expectedLength` bytes.
        package init(_ source: any ChangesetSource, compressed: Range<Int>, expectedLength: Int, chunk: Int = 64 << 10)
        {
            self.source = source
            self.compressed = compressed
            self.nextInput = compressed.lowerBound
            self.input = .allocate(byteCount: max(1, min(chunk, compressed.count)), alignment: 1)
            self.expectedLength = expectedLength
            self.capacity = max(expectedLength, 1)
            stream = .allocate(capacity: 1)
            stream.initialize(to: z_stream())
            // Only a broken zlib or no memory at all fails here.
            let status = inflateInit_(stream, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
            precondition(status == Z_OK, "zlib inflateInit failed with \(status)")
        }

        deinit {
            input.deallocate()
            inflateEnd(stream)
            stream.deinitialize(count: 1)
            stream.deallocate()
        }

        /// Inflates up to `buffer.count` bytes into `buffer` and returns how many; fewer only when
        /// the stream has ended (then ``isFinished`` is true, and the stream was checked).
        package func inflate(into buffer: UnsafeMutableBufferPointer<UInt8>) throws(SyncError) -> Int {
            if let failure { throw failure }
            do {
                return try inflateMore(into: buffer)
            } catch {
                failure = error
                throw error
            }
        }

        private func inflateMore(into buffer: UnsafeMutableBufferPointer<UInt8>) throws(SyncError) -> Int {
            var written = 0
            while !isFinished && written < buffer.count {
                try refillInput()
                let total = Int(stream.pointee.total_out)
                let room = min(buffer.count - written, capacity - total)
                let status: Int32
                if expectedLength == 0 {
                    // Nothing may be handed out; one byte of room notices a non-empty stream.
                    stream.pointee.avail_out = room > 0 ? 1 : 0
                    status = withUnsafeMutablePointer(to: &sink) { sink in
                        stream.pointee.next_out = sink
                        return CZlib.inflate(stream, Z_NO_FLUSH)
                    }
                } else {
                    stream.pointee.next_out = buffer.baseAddress! + written
                    stream.pointee.avail_out = uInt(room)
                    status = CZlib.inflate(stream, Z_NO_FLUSH)
                    written += room - Int(stream.pointee.avail_out)
                }
                stream.pointee.next_out = nil
                switch status {
                case Z_OK:
                    continue
                case Z_STREAM_END:
                    try finish()
                case Z_BUF_ERROR:
                    // No progress was possible: the input ran out, or the output room did.
                    let outputFull = expectedLength > 0 && Int(stream.pointee.total_out) == capacity
                    throw Self.failure(outputFull ? Z_BUF_ERROR : Z_DATA_ERROR, expectedLength: expectedLength)
                case Z_NEED_DICT:
                    throw Self.failure(Z_DATA_ERROR, expectedLength: expectedLength)
                default:
                    throw Self.failure(status, expectedLength: expectedLength)
                }
            }
            return written
        }

        /// Inflates the rest of the stream without keeping it, to find whether it is sound.
        package func drain() throws(SyncError) {
            var scratch = [UInt8](repeating: 0, count: 64 << 10)
            while !isFinished {
                _ = try scratch.withUnsafeMutableBufferPointer { buffer throws(SyncError) in
                    try inflate(into: buffer)
                }
            }
        }

        private func refillInput() throws(SyncError) {
            guard stream.pointee.avail_in == 0, nextInput < compressed.upperBound else { return }
            let count = min(input.count, compressed.upperBound - nextInput)
            let got = try source.copyBytes(
                from: nextInput, into: UnsafeMutableRawBufferPointer(rebasing: input[..<count]))
            guard got == count else {
                throw SyncError(.internalError, "The changeset's bytes could not be read again (\(got) of \(count)).")
            }
            nextInput += count
            stream.pointee.avail_in = uInt(count)
            stream.pointee.next_in = input.baseAddress!.assumingMemoryBound(to: UInt8.self)
        }

        private func finish() throws(SyncError) {
            isFinished = true
            let produced = expectedLength == 0 ? 0 : Int(stream.pointee.total_out)
            guard produced == expectedLength else {
                throw SyncError(
                    .changesetCorrupt,
                    "The payload inflates to \(produced) bytes but the header declares \(expectedLength).")
            }
            guard Int(stream.pointee.total_in) == compressed.count else {
                throw SyncError(.changesetCorrupt, "The compressed payload has bytes after the end of its zlib stream.")
            }
        }

        private static func failure(_ status: Int32, expectedLength: Int) -> SyncError {
            if status == Z_BUF_ERROR {
                return SyncError(
                    .changesetCorrupt,
                    "The payload inflates to more than the \(expectedLength) bytes its header declares.")
            }
            return SyncError(
                .changesetCorrupt, "The compressed payload is not a valid zlib stream (zlib status \(status)).")
        }
    }
}
