/// The bytes of an encoded changeset, wherever they are kept: in memory or in a file.
///
/// ``ChangesetStream`` reads a changeset through this in pieces, and may read it more than once
/// (the server checks a push in full before it merges it), so a source must give the same bytes
/// every time.
package protocol ChangesetSource: Sendable {
    /// The length of the changeset in bytes.
    var count: Int { get }
    /// Copies bytes from `offset` into `buffer`, as many as fit and exist, and returns how many.
    func copyBytes(from offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(SyncError) -> Int
}

extension ChangesetSource {
    /// Copies the bytes of `bytes` from `offset` into `buffer`, as many as fit and exist, and
    /// returns how many: ``copyBytes(from:into:)`` for a source whose bytes are in memory.
    package static func copy(
        _ bytes: UnsafeRawBufferPointer, from offset: Int, into buffer: UnsafeMutableRawBufferPointer
    ) -> Int {
        let n = Swift.max(0, Swift.min(buffer.count, bytes.count - offset))
        guard n > 0 else { return 0 }
        buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + n]))
        return n
    }

    /// Hands `body` the bytes in `range`, in order, at most `chunkSize` at a time, for a check
    /// (CRC-32, SHA-256) that must not hold the whole changeset.
    package func forEachChunk(
        in range: Range<Int>, chunkSize: Int, _ body: (UnsafeRawBufferPointer) throws(SyncError) -> Void
    ) throws(SyncError) {
        let chunk = UnsafeMutableRawBufferPointer.allocate(
            byteCount: Swift.min(chunkSize, Swift.max(range.count, 1)), alignment: 1)
        defer { chunk.deallocate() }
        var offset = range.lowerBound
        while offset < range.upperBound {
            let n = Swift.min(chunk.count, range.upperBound - offset)
            let got = try copyBytes(from: offset, into: UnsafeMutableRawBufferPointer(rebasing: chunk[..<n]))
            guard got == n else {
                throw SyncError(
                    .internalError, "The changeset's bytes could not be read (\(got) of \(n) at \(offset)).")
            }
            try body(UnsafeRawBufferPointer(rebasing: chunk[..<n]))
            offset += n
        }
    }
}

extension Array: ChangesetSource where Element == UInt8 {
    package func copyBytes(from offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(SyncError) -> Int {
        withUnsafeBytes { bytes in Self.copy(bytes, from: offset, into: buffer) }
    }
}
