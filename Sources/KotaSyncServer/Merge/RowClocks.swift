import Foundation
import KotaSyncCore

/// Who wrote a change: the master's number for the replica, and its globally unique id.
///
/// Numbers are local to one master and depend on arrival order, so every decision that must not
/// depend on arrival order (tie-breaks) uses ``id``. Number 0 is the master itself (seed rows).
package struct Writer: Hashable, Sendable {
    package var number: Int64
    package var id: UUID

    package init(number: Int64, id: UUID) {
        self.number = number
        self.id = id
    }

    package static let master = Writer(number: 0, id: .zero)
}

/// The write that a column's (or a row deletion's) current state comes from.
package struct ColumnClock: Equatable, Sendable {
    /// The master version at which it was written.
    package var version: UInt64
    package var stamp: HLC
    package var writer: Writer

    package init(version: UInt64, stamp: HLC, writer: Writer) {
        self.version = version
        self.stamp = stamp
        self.writer = writer
    }

    /// Whether this write orders after `other` when neither saw the other: the higher stamp,
    /// then the higher replica id.
    package func beats(_ other: ColumnClock) -> Bool {
        beats(stamp: other.stamp, writer: other.writer)
    }

    package func beats(stamp otherStamp: HLC, writer otherWriter: Writer) -> Bool {
        if stamp != otherStamp { return stamp > otherStamp }
        return otherWriter.id.bytes.lexicographicallyPrecedes(writer.id.bytes)
    }
}

/// The merge metadata of one master row: a clock per column, and the tombstone's clock.
package struct RowClocks: Equatable, Sendable {
    /// The row's version: the master sequence number of its latest change. Pulls go by it.
    package var version: UInt64
    /// The deletes that made the row a tombstone, one per replica that deleted it without
    /// seeing the others' deletes; empty while the row is live.
    package var deletions: [ColumnClock]
    /// One clock per non-key column, in schema order.
    package var columns: [ColumnClock]

    package init(version: UInt64, deletions: [ColumnClock], columns: [ColumnClock]) {
        self.version = version
        self.deletions = deletions
        self.columns = columns
    }

    package var isDeleted: Bool { !deletions.isEmpty }
}

/// The compact byte form of ``RowClocks`` kept in the master's `_ks_rows.clocks` column.
///
/// Writers are stored by number; `resolve` turns a number back into a ``Writer``.
package enum RowClocksCoding {
    package static func encode(_ clocks: RowClocks) -> [UInt8] {
        var w = ByteWriter(capacity: 8 + clocks.columns.count * 12)
        w.writeVarint(UInt64(clocks.columns.count))
        func put(_ c: ColumnClock) {
            w.writeVarint(c.version)
            w.writeVarint(c.stamp.rawValue)
            w.writeVarint(UInt64(c.writer.number))
        }
        for c in clocks.columns { put(c) }
        w.writeVarint(UInt64(clocks.deletions.count))
        for d in clocks.deletions { put(d) }
        return w.bytes
    }

    /// Decodes clocks for a table of `columnCount` columns; columns added to the schema after the
    /// row was written read as written by the master at version 0.
    package static func decode(
        _ bytes: [UInt8], version: UInt64, columnCount: Int, resolve: (Int64) -> Writer
    ) throws(SyncError) -> RowClocks {
        var r = ByteReader(bytes)
        func get() throws(SyncError) -> ColumnClock {
            let v = try r.readVarint("clock version")
            let s = try r.readVarint("clock stamp")
            let n = try r.readVarint("clock writer")
            return ColumnClock(version: v, stamp: HLC(rawValue: s), writer: resolve(Int64(bitPattern: n)))
        }
        let stored = try r.readCount("clock count", limit: 100_000)
        var columns: [ColumnClock] = []
        columns.reserveCapacity(max(stored, columnCount))
        for _ in 0..<stored { columns.append(try get()) }
        while columns.count < columnCount { columns.append(ColumnClock(version: 0, stamp: .zero, writer: .master)) }
        let deleteCount = try r.readCount("deletion count", limit: 100_000)
        var deletions: [ColumnClock] = []
        for _ in 0..<deleteCount { deletions.append(try get()) }
        return RowClocks(version: version, deletions: deletions, columns: Array(columns.prefix(columnCount)))
    }
}
