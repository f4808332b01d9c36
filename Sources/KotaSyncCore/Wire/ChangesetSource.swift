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

extension Array: ChangesetSource where Element == UInt8 {
    package func copyBytes(from offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(SyncError) -> Int {
        let n = Swift.max(0, Swift.min(buffer.count, count - offset))
        guard n > 0 else { return 0 }
        withUnsafeBytes { bytes in buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + n]))
        }
        return n
    }
}
