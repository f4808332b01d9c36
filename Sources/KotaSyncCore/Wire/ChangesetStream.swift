/// Decodes a changeset row by row, holding only a window of its inflated payload.
///
/// ``ChangesetCodec/decode(_:limits:)`` inflates the whole payload and decodes every row before
/// it returns: for a 50 MB push that is the payload and a few hundred bytes of Swift values per
/// row, all at once. A stream checks the envelope and the CRC-32 when it is made, then inflates
/// and decodes as rows are asked for (``next()``), so its memory does not grow with the
/// changeset. The rows rest on the same payload readers, and the errors are the same errors in the
/// same order: when the payload is bad, the rest of the zlib stream is inflated (and discarded)
/// first, so a stream that zlib refuses is refused as such, as the whole-payload decoder refuses
/// it before it reads a row.
package struct ChangesetStream {
    /// The checked envelope.
    package let header: ChangesetHeader
    /// The table dictionary.
    package let tables: [Changeset.Table]
    /// The number of rows the payload declares.
    package let rowCount: Int
    /// The rows handed out so far.
    package private(set) var rowsRead = 0
    private var window: Window
    private var previousStamp: UInt64 = 0
    private var ended = false

    /// Checks the envelope of `source` within `limits` and its CRC-32, and reads the table
    /// dictionary; `window` is how many inflated bytes are decoded at a time (a row larger than
    /// that widens it).
    package init(_ source: any ChangesetSource, limits: DecodeLimits, window size: Int = 256 << 10)
        throws(SyncError)
    {
        let prefixBuffer = UnsafeMutableRawBufferPointer.allocate(
            byteCount: min(ChangesetHeader.size, source.count), alignment: 1)
        defer { prefixBuffer.deallocate() }
        let got = try source.copyBytes(from: 0, into: prefixBuffer)
        let prefix = Array(prefixBuffer)
        guard got == prefix.count else {
            throw SyncError(
                .internalError, "The changeset's envelope could not be read (\(got) of \(prefix.count) bytes).")
        }
        header = try ChangesetCodec.decodeHeader(prefix, totalLength: source.count, limits: limits)
        let body = ChangesetHeader.size..<source.count
        var crc = Zlib.crc32(prefix[0..<64])
        try source.forEachChunk(in: body, chunkSize: 64 << 10) { chunk in crc = Zlib.crc32(chunk, initial: crc) }
        guard crc == header.checksum else {
            throw SyncError(
                .changesetCorrupt,
                "The changeset fails its CRC-32 check (damaged in transit or on disk). Send it again.")
        }
        window = Window(
            inflater: Zlib.Inflater(source, compressed: body, expectedLength: header.uncompressedLength), size: size)
        let payloadLength = header.uncompressedLength
        (tables, rowCount) = try window.parse { r throws(SyncError) in
            let tables = try ChangesetCodec.readTables(&r)
            return (tables, try ChangesetCodec.readRowCount(&r, limits: limits, payloadLength: payloadLength))
        }
    }

    /// The changeset's envelope and tables, with no rows.
    package var withoutRows: Changeset {
        Changeset(
            kind: header.kind, id: header.id, replicaID: header.replicaID, firstSequence: header.firstSequence,
            lastSequence: header.lastSequence, tables: tables, rows: [])
    }

    /// The next row, or nil after the last one, once the payload was found to end there.
    package mutating func next() throws(SyncError) -> Changeset.Row? {
        guard rowsRead < rowCount else {
            try end()
            return nil
        }
        let (index, tables, kind, previous) = (rowsRead, tables, header.kind, previousStamp)
        let row = try window.parse { r throws(SyncError) in
            try ChangesetCodec.readRow(&r, index: index, tables: tables, kind: kind, previousStamp: previous)
        }
        previousStamp = row.stamp.rawValue
        rowsRead += 1
        return row
    }

    /// Checks that nothing follows the last row and that the zlib stream is sound to its end.
    private mutating func end() throws(SyncError) {
        guard !ended else { return }
        try window.inflater.drain()
        let remaining = header.uncompressedLength - window.position
        guard remaining == 0 else {
            throw SyncError(.changesetMalformed, "\(remaining) unexpected bytes follow the last row.")
        }
        ended = true
    }

    /// The inflated bytes not yet decoded, and where they are in the payload.
    private struct Window {
        let inflater: Zlib.Inflater
        /// How many bytes a refill aims for.
        let size: Int
        var bytes: [UInt8] = []
        /// The first byte of `bytes` not yet decoded.
        var start = 0
        /// The payload offset of `bytes[0]`.
        var base = 0

        /// The payload offset of the next byte to decode.
        var position: Int { base + start }

        init(inflater: Zlib.Inflater, size: Int) {
            self.inflater = inflater
            self.size = max(size, 16)
        }

        /// Decodes with `read` from the next byte. A read that runs out of bytes while the
        /// payload has more is tried again on a window twice as large, so `read` must be free of
        /// side effects until it returns.
        mutating func parse<T>(_ read: (inout ByteReader) throws(SyncError) -> T) throws(SyncError) -> T {
            while true {
                let failure: SyncError
                let ranOut: Bool
                do {
                    var r = ByteReader(bytes, from: start, to: bytes.count, base: base)
                    do {
                        let value = try read(&r)
                        start = r.offset
                        return value
                    } catch {
                        (failure, ranOut) = (error, r.ranOut)
                    }
                }
                if ranOut && !inflater.isFinished {
                    try refill(toHold: 2 * (bytes.count - start))
                    continue
                }
                // The whole-payload decoder inflates everything before it reads a byte: damage
                // anywhere in the zlib stream is what it reports.
                try inflater.drain()
                throw failure
            }
        }

        /// Drops the decoded bytes and inflates until the window holds `needed` bytes (at least
        /// `size`) or the payload ends.
        private mutating func refill(toHold needed: Int) throws(SyncError) {
            if start > 0 {
                bytes.removeSubrange(0..<start)
                base += start
                start = 0
            }
            let target = max(needed, size)
            while bytes.count < target && !inflater.isFinished {
                let filled = bytes.count
                // One zero-filled array appended (a memset and a memcpy), not a lazy sequence
                // appended element by element.
                bytes.append(contentsOf: [UInt8](repeating: 0, count: target - filled))
                let got = try bytes.withUnsafeMutableBufferPointer { buffer throws(SyncError) in
                    try inflater.inflate(into: UnsafeMutableBufferPointer(rebasing: buffer[filled...]))
                }
                bytes.removeSubrange((filled + got)...)
            }
        }
    }
}
