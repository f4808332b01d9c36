import Foundation

/// Limits a decoder enforces before it allocates for a changeset.
public struct DecodeLimits: Sendable, Equatable {
    /// The largest uncompressed payload accepted, checked against the header before inflating.
    public var maxUncompressedBytes: Int
    /// The largest compression ratio accepted (uncompressed ÷ compressed), so a small body that
    /// declares a huge payload is refused without inflating it.
    public var maxCompressionRatio: Int
    /// The most rows one changeset may carry.
    public var maxRows: Int

    public init(maxUncompressedBytes: Int = 64 << 20, maxCompressionRatio: Int = 1000, maxRows: Int = 1_000_000) {
        self.maxUncompressedBytes = maxUncompressedBytes
        self.maxCompressionRatio = maxCompressionRatio
        self.maxRows = maxRows
    }
}

/// The fixed-size envelope in front of every changeset; see `Protocol/changeset.md`.
public struct ChangesetHeader: Sendable, Equatable {
    public static let magic: [UInt8] = Array("KSYN".utf8)
    public static let formatVersion: UInt8 = 1
    /// Bytes in the envelope before the compressed payload.
    public static let size = 68

    public var kind: Changeset.Kind
    public var id: UUID
    public var replicaID: UUID
    public var firstSequence: UInt64
    public var lastSequence: UInt64
    public var uncompressedLength: Int
    public var compressedLength: Int
    public var checksum: UInt32
}

/// Encodes and decodes the binary changeset format.
///
/// The decoder trusts nothing: it checks the magic, the version, the declared lengths against
/// the actual body and the ``DecodeLimits`` (before inflating), the CRC-32, the inflated length,
/// every index and count in the payload, and that the payload ends where it should.
public enum ChangesetCodec {
    /// Encodes `changeset` into its wire form, compressed at `level`.
    public static func encode(_ changeset: Changeset, level: Int32 = 6) -> [UInt8] {
        let payload = encodePayload(changeset)
        let compressed = Zlib.compress(payload, level: level)
        var w = ByteWriter(capacity: ChangesetHeader.size + compressed.count)
        w.writeBytes(ChangesetHeader.magic)
        w.writeUInt8(ChangesetHeader.formatVersion)
        w.writeUInt8(changeset.kind.rawValue)
        w.writeUInt16(0)
        w.writeBytes(changeset.id.bytes)
        w.writeBytes(changeset.replicaID.bytes)
        w.writeUInt64(changeset.firstSequence)
        w.writeUInt64(changeset.lastSequence)
        w.writeUInt32(UInt32(payload.count))
        w.writeUInt32(UInt32(compressed.count))
        let crc = Zlib.crc32(compressed, initial: Zlib.crc32(w.bytes))
        w.writeUInt32(crc)
        w.writeBytes(compressed)
        return w.bytes
    }

    /// The uncompressed payload: the table dictionary, then the rows.
    package static func encodePayload(_ changeset: Changeset) -> [UInt8] {
        var w = ByteWriter(capacity: 64 + changeset.rows.count * 48)
        w.writeVarint(UInt64(changeset.tables.count))
        for table in changeset.tables {
            w.writeString(table.name)
            w.writeVarint(UInt64(table.primaryKey.count))
            for name in table.primaryKey { w.writeString(name) }
            w.writeVarint(UInt64(table.columns.count))
            for name in table.columns { w.writeString(name) }
        }
        w.writeVarint(UInt64(changeset.rows.count))
        var previousStamp: UInt64 = 0
        for row in changeset.rows {
            w.writeVarint(UInt64(row.table))
            w.writeUInt8(row.operation.rawValue)
            let hasBases = row.columns.contains { $0.baseVersion != nil }
            w.writeUInt8(hasBases ? 1 : 0)
            w.writeVarint(row.version)
            w.writeZigzag(Int64(bitPattern: row.stamp.rawValue &- previousStamp))
            previousStamp = row.stamp.rawValue
            for value in row.primaryKey { w.writeValue(value) }
            w.writeVarint(UInt64(row.columns.count))
            for column in row.columns {
                w.writeVarint(UInt64(column.column))
                if hasBases { w.writeVarint(column.baseVersion ?? row.version) }
                w.writeValue(column.value)
            }
        }
        return w.bytes
    }

    /// Reads and checks the envelope of `bytes` without inflating anything.
    public static func decodeHeader(_ bytes: [UInt8], limits: DecodeLimits = DecodeLimits()) throws(SyncError)
        -> ChangesetHeader
    {
        try decodeHeader(Array(bytes.prefix(ChangesetHeader.size)), totalLength: bytes.count, limits: limits)
    }

    /// Reads and checks an envelope from its first bytes (`prefix`, at most
    /// ``ChangesetHeader/size`` of them) and the length of the whole changeset.
    package static func decodeHeader(_ bytes: [UInt8], totalLength: Int, limits: DecodeLimits) throws(SyncError)
        -> ChangesetHeader
    {
        guard bytes.count >= ChangesetHeader.size else {
            if bytes.count >= 4, !bytes.starts(with: ChangesetHeader.magic) {
                throw SyncError(
                    .unsupportedVersion, "This is not a KotaSync changeset (its first bytes are not \"KSYN\").")
            }
            throw SyncError(
                .changesetTruncated,
                "A changeset has a \(ChangesetHeader.size)-byte header; only \(bytes.count) bytes arrived.")
        }
        var r = ByteReader(bytes)
        guard bytes.starts(with: ChangesetHeader.magic) else {
            throw SyncError(.unsupportedVersion, "This is not a KotaSync changeset (its first bytes are not \"KSYN\").")
        }
        _ = try r.readBytes(4, "magic")
        let version = try r.readUInt8("format version")
        guard version == ChangesetHeader.formatVersion else {
            throw SyncError(
                .unsupportedVersion,
                "Changeset format version \(version) is not supported; this server reads version \(ChangesetHeader.formatVersion). Update the client."
            )
        }
        let kindByte = try r.readUInt8("kind")
        guard let kind = Changeset.Kind(rawValue: kindByte) else {
            throw SyncError(.changesetMalformed, "Unknown changeset kind \(kindByte).")
        }
        let flags = try r.readUInt16("flags")
        guard flags == 0 else {
            throw SyncError(
                .changesetMalformed, "Header flags are \(flags); version 1 defines none, so they must be 0.")
        }
        let id = UUID(bytes: try r.readBytes(16, "changeset id"))
        let replica = UUID(bytes: try r.readBytes(16, "replica id"))
        let first = try r.readUInt64("first sequence")
        let last = try r.readUInt64("last sequence")
        let uncompressed = Int(try r.readUInt32("uncompressed length"))
        let compressed = Int(try r.readUInt32("compressed length"))
        let checksum = try r.readUInt32("checksum")
        let actual = totalLength - ChangesetHeader.size
        if actual < compressed {
            throw SyncError(
                .changesetTruncated,
                "The header declares a \(compressed)-byte payload; only \(actual) bytes follow it. Send the changeset again."
            )
        }
        if actual > compressed {
            throw SyncError(.changesetMalformed, "\(actual - compressed) unexpected bytes follow the payload.")
        }
        if uncompressed > limits.maxUncompressedBytes {
            throw SyncError(
                .changesetTooLarge,
                "The payload would inflate to \(uncompressed) bytes; the limit is \(limits.maxUncompressedBytes). Push fewer changes at a time."
            )
        }
        let (ratioBound, overflow) = max(compressed, 1).multipliedReportingOverflow(by: limits.maxCompressionRatio)
        if !overflow, uncompressed > ratioBound {
            throw SyncError(
                .changesetTooLarge,
                "The payload would inflate \(uncompressed / max(compressed, 1))-fold; the limit is \(limits.maxCompressionRatio)."
            )
        }
        try checkStorable(first, "The first sequence")
        try checkStorable(last, "The last sequence")
        return ChangesetHeader(
            kind: kind, id: id, replicaID: replica, firstSequence: first, lastSequence: last,
            uncompressedLength: uncompressed, compressedLength: compressed, checksum: checksum)
    }

    /// Decodes a whole changeset, checking everything listed in the type's description.
    public static func decode(_ bytes: [UInt8], limits: DecodeLimits = DecodeLimits()) throws(SyncError) -> Changeset {
        let header = try decodeHeader(bytes, limits: limits)
        let body = bytes[ChangesetHeader.size...]
        let crc = Zlib.crc32(body, initial: Zlib.crc32(bytes[0..<64]))
        guard crc == header.checksum else {
            throw SyncError(
                .changesetCorrupt,
                "The changeset fails its CRC-32 check (damaged in transit or on disk). Send it again.")
        }
        let payload = try Zlib.decompress(body, expectedLength: header.uncompressedLength)
        let (tables, rows) = try decodePayload(payload, kind: header.kind, limits: limits)
        return Changeset(
            kind: header.kind, id: header.id, replicaID: header.replicaID, firstSequence: header.firstSequence,
            lastSequence: header.lastSequence, tables: tables, rows: rows)
    }

    package static func decodePayload(_ payload: [UInt8], kind: Changeset.Kind, limits: DecodeLimits) throws(SyncError)
        -> ([Changeset.Table], [Changeset.Row])
    {
        var r = ByteReader(payload)
        let tables = try readTables(&r)
        let rowCount = try readRowCount(&r, limits: limits, payloadLength: payload.count)
        var rows: [Changeset.Row] = []
        rows.reserveCapacity(rowCount)
        var previousStamp: UInt64 = 0
        for index in 0..<rowCount {
            let row = try readRow(&r, index: index, tables: tables, kind: kind, previousStamp: previousStamp)
            previousStamp = row.stamp.rawValue
            rows.append(row)
        }
        guard r.isAtEnd else {
            throw SyncError(.changesetMalformed, "\(r.remaining) unexpected bytes follow the last row.")
        }
        return (tables, rows)
    }

    // The parts of a payload, shared by `decodePayload` (the whole payload in memory) and
    // `ChangesetStream` (a window of it at a time), so that both refuse the same bytes with the
    // same errors.

    /// Reads the table dictionary.
    package static func readTables(_ r: inout ByteReader) throws(SyncError) -> [Changeset.Table] {
        let tableCount = try r.readCount("table count", limit: 10_000)
        var tables: [Changeset.Table] = []
        tables.reserveCapacity(tableCount)
        // Sets, not searches of the lists: up to 10,000 tables of 2,000 columns fit in a payload,
        // and searching the lists would cost a few kilobytes of body billions of comparisons.
        var tableNames = Set<String>()
        for _ in 0..<tableCount {
            let name = try r.readString("table name")
            guard tableNames.insert(name).inserted else {
                throw SyncError(.changesetMalformed, "Table \(name) is declared twice.")
            }
            let pkCount = try r.readCount("primary-key column count", limit: 64)
            guard pkCount > 0 else {
                throw SyncError(.changesetMalformed, "Table \(name) is declared with no primary-key column.")
            }
            var pk: [String] = []
            for _ in 0..<pkCount { pk.append(try r.readString("primary-key column name")) }
            let columnCount = try r.readCount("column count", limit: 2_000)
            var columns: [String] = []
            columns.reserveCapacity(columnCount)
            let keyNames = Set(pk)
            var columnNames = Set<String>()
            for _ in 0..<columnCount {
                let column = try r.readString("column name")
                guard !keyNames.contains(column), columnNames.insert(column).inserted else {
                    throw SyncError(.changesetMalformed, "Column \(column) of table \(name) is declared twice.")
                }
                columns.append(column)
            }
            tables.append(Changeset.Table(name: name, primaryKey: pk, columns: columns))
        }
        return tables
    }

    /// Reads the row count and checks it against the limit and against what the payload, of
    /// `payloadLength` bytes in all, has left to hold the rows.
    package static func readRowCount(_ r: inout ByteReader, limits: DecodeLimits, payloadLength: Int) throws(SyncError)
        -> Int
    {
        let rowCount = try r.readCount("row count", limit: Int.max)
        guard rowCount <= limits.maxRows else {
            throw SyncError(
                .changesetTooLarge,
                "The changeset has \(rowCount) rows; the limit is \(limits.maxRows). Push fewer changes at a time.")
        }
        // Every row takes at least six bytes, so a count that the payload cannot hold is refused
        // before anything is reserved for it.
        guard rowCount <= (payloadLength - r.position) / 6 + 1 else {
            throw SyncError(.changesetMalformed, "The payload declares \(rowCount) rows but is too short to hold them.")
        }
        return rowCount
    }

    /// Reads row `index`, whose stamp is coded as a difference to `previousStamp`.
    package static func readRow(
        _ r: inout ByteReader, index: Int, tables: [Changeset.Table], kind: Changeset.Kind, previousStamp: UInt64
    ) throws(SyncError) -> Changeset.Row {
        let tableIndex = try r.readCount("row \(index) table index", limit: max(tables.count - 1, 0))
        guard tableIndex < tables.count else {
            throw SyncError(.changesetMalformed, "Row \(index) refers to a table but the changeset declares none.")
        }
        let table = tables[tableIndex]
        let opByte = try r.readUInt8("row \(index) operation")
        guard let op = Changeset.Operation(rawValue: opByte), kind == .push || op != .update else {
            throw SyncError(.changesetMalformed, "Row \(index) has an invalid operation \(opByte).")
        }
        let flags = try r.readUInt8("row \(index) flags")
        guard flags & ~1 == 0 else {
            throw SyncError(.changesetMalformed, "Row \(index) has unknown flags \(flags).")
        }
        let version = try r.readVarint("row \(index) version")
        try checkStorable(version, "Row \(index)'s version")
        let delta = try r.readZigzag("row \(index) stamp")
        let stamp = UInt64(bitPattern: Int64(bitPattern: previousStamp) &+ delta)
        var pk: [SQLValue] = []
        pk.reserveCapacity(table.primaryKey.count)
        for _ in table.primaryKey { pk.append(try r.readValue("row \(index) primary key")) }
        let columnCount = try r.readCount("row \(index) column count", limit: table.columns.count)
        if op == .delete && columnCount != 0 {
            throw SyncError(
                .changesetMalformed, "Row \(index) is a delete but carries \(columnCount) column values.")
        }
        var columns: [Changeset.ColumnValue] = []
        columns.reserveCapacity(columnCount)
        // Which columns the row has set so far: a bit per column (a `Set` cost an allocation
        // and a hash per value), with an array only for tables wider than 64 columns.
        var seenBits: UInt64 = 0
        var seenWide = table.columns.count > 64 ? [Bool](repeating: false, count: table.columns.count) : []
        for _ in 0..<columnCount {
            let c = try r.readCount("row \(index) column index", limit: max(table.columns.count - 1, 0))
            let repeated: Bool
            if seenWide.isEmpty {
                repeated = c < 64 && seenBits & (1 << UInt64(c)) != 0
                if c < 64 { seenBits |= 1 << UInt64(c) }
            } else {
                repeated = c < seenWide.count && seenWide[c]
                if c < seenWide.count { seenWide[c] = true }
            }
            guard c < table.columns.count, !repeated else {
                throw SyncError(
                    .changesetMalformed,
                    "Row \(index) sets column index \(c) of \(table.name) twice or out of range.")
            }
            let base = flags & 1 == 1 ? try r.readVarint("row \(index) column base version") : nil
            if let base { try checkStorable(base, "Row \(index)'s column base version") }
            let value = try r.readValue("row \(index) column \(table.columns[c])")
            columns.append(
                Changeset.ColumnValue(column: c, value: value, baseVersion: base == version ? nil : base))
        }
        return Changeset.Row(
            table: tableIndex, operation: op, version: version, stamp: HLC(rawValue: stamp), primaryKey: pk,
            columns: columns)
    }
}

extension ChangesetCodec {
    /// The largest sequence number or version a changeset may carry: 2^63 − 1. The wire has room
    /// for 2^64 − 1 (eight bytes, a varint), but the master and the replicas keep these numbers
    /// as SQLite integers, which are signed 64-bit, and no master ever issues a larger one.
    public static let maxStorable = UInt64(Int64.max)

    /// Refuses a sequence number or version above ``maxStorable`` (`changeset_malformed`), where
    /// it is decoded, so that nothing after the decoder meets one.
    static func checkStorable(_ value: UInt64, _ what: @autoclosure () -> String) throws(SyncError) {
        guard value <= maxStorable else {
            throw SyncError(
                .changesetMalformed,
                "\(what()) is \(value), above \(maxStorable), the largest a master stores (Protocol/changeset.md). This changeset cannot be applied; the replica that wrote it is damaged."
            )
        }
    }
}

extension UUID {
    /// The 16 bytes of the UUID in RFC 4122 order.
    package var bytes: [UInt8] {
        withUnsafeBytes(of: uuid) { Array($0) }
    }

    package init<C: Collection>(bytes: C) where C.Element == UInt8 {
        var raw: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &raw) { dst in
            for (i, b) in bytes.prefix(16).enumerated() { dst[i] = b }
        }
        self.init(uuid: raw)
    }

    /// The all-zero UUID, used where a changeset has no replica (pull pages).
    public static let zero = UUID(bytes: [UInt8](repeating: 0, count: 16))
}
