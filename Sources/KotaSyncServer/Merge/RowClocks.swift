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

/// One change as the merge remembers it: a column write, or a delete.
package struct Head: Hashable, Sendable {
    package var writer: Writer
    /// The row version at which the master merged it. A change based on this version or later saw it.
    package var version: UInt64
    package var stamp: HLC
    /// Part of an insert (an upsert of a row its replica had never seen).
    package var isInsert: Bool
    package var isDelete: Bool

    package init(writer: Writer, version: UInt64, stamp: HLC, isInsert: Bool = false, isDelete: Bool = false) {
        self.writer = writer
        self.version = version
        self.stamp = stamp
        self.isInsert = isInsert
        self.isDelete = isDelete
    }

    /// Whether this change orders after `other` when neither saw the other: the higher stamp, then
    /// the higher replica id.
    package func beats(_ other: Head) -> Bool {
        if stamp != other.stamp { return stamp > other.stamp }
        return other.writer.id.bytes.lexicographicallyPrecedes(writer.id.bytes)
    }

    /// Identifies a head across merges: a replica never issues the same stamp twice.
    package var key: HeadKey { HeadKey(writer: writer.number, stamp: stamp) }
}

/// The identity of a ``Head``.
package struct HeadKey: Hashable, Sendable {
    package var writer: Int64
    package var stamp: HLC
}

/// The merge state of one master row.
///
/// For each column, the head whose value the master holds (the column's winner); the column's
/// other heads — concurrent writes that lost — live in the conflict records. For the row itself,
/// the existence heads: the latest writes and deletes that no later change saw. The row is live
/// while any of them is a write (a delete racing an update loses).
package struct RowClocks: Equatable, Sendable {
    /// The row's version: the master sequence number of its latest change. Pulls go by it.
    package var version: UInt64
    /// One winner per non-key column, in schema order.
    package var columns: [Head]
    /// Writes and deletes no later change saw.
    package var existence: [Head]

    /// Whether the row is deleted, when that differs from the `update-wins` rule (no existence
    /// head is a write): under `delete-wins` a row whose existence heads include a delete is
    /// deleted even if a write head remains. Nil: the `update-wins` rule.
    private var deletedOverride: Bool?

    package init(version: UInt64, columns: [Head], existence: [Head], deleted: Bool? = nil) {
        self.version = version
        self.columns = columns
        self.existence = existence
        let byUpdateWins = !existence.contains { !$0.isDelete }
        self.deletedOverride = deleted == nil || deleted == byUpdateWins ? nil : deleted
    }

    /// Deleted: no existence head is a write (or, under `delete-wins`, one is a delete).
    package var isDeleted: Bool { deletedOverride ?? !existence.contains { !$0.isDelete } }

    /// The latest stamp the row carries.
    package var stamp: HLC { (columns + existence).map(\.stamp).max() ?? .zero }
}

/// The compact byte form of ``RowClocks`` kept in the master's `_ks_rows.clocks` column.
///
/// Writers are stored by number; `resolve` turns a number back into a ``Writer``.
package enum RowClocksCoding {
    package static func encode(_ clocks: RowClocks) -> [UInt8] {
        var w = ByteWriter(capacity: 8 + (clocks.columns.count + clocks.existence.count) * 12)
        func put(_ h: Head) {
            w.writeVarint(h.version)
            w.writeVarint(h.stamp.rawValue)
            w.writeVarint(UInt64(h.writer.number))
            w.writeUInt8((h.isInsert ? 1 : 0) | (h.isDelete ? 2 : 0))
        }
        w.writeVarint(UInt64(clocks.columns.count))
        for h in clocks.columns { put(h) }
        w.writeVarint(UInt64(clocks.existence.count))
        for h in clocks.existence { put(h) }
        // A trailing flags byte only when liveness is not the `update-wins` rule's.
        if clocks.isDeleted != !clocks.existence.contains(where: { !$0.isDelete }) {
            w.writeUInt8(clocks.isDeleted ? 1 : 2)
        }
        return w.bytes
    }

    /// Decodes clocks for a table of `columnCount` columns; columns added to the schema after the
    /// row was written read as written by the master at version 0.
    package static func decode(
        _ bytes: [UInt8], version: UInt64, columnCount: Int, resolve: (Int64) -> Writer
    ) throws(SyncError) -> RowClocks {
        var r = ByteReader(bytes)
        func get() throws(SyncError) -> Head {
            let v = try r.readVarint("clock version")
            let s = try r.readVarint("clock stamp")
            let n = try r.readVarint("clock writer")
            let flags = try r.readUInt8("clock flags")
            return Head(
                writer: resolve(Int64(bitPattern: n)), version: v, stamp: HLC(rawValue: s), isInsert: flags & 1 != 0,
                isDelete: flags & 2 != 0)
        }
        let stored = try r.readCount("clock count", limit: 100_000)
        var columns: [Head] = []
        columns.reserveCapacity(max(stored, columnCount))
        for _ in 0..<stored { columns.append(try get()) }
        while columns.count < columnCount { columns.append(Head(writer: .master, version: 0, stamp: .zero)) }
        let existenceCount = try r.readCount("existence count", limit: 100_000)
        var existence: [Head] = []
        for _ in 0..<existenceCount { existence.append(try get()) }
        var deleted: Bool?
        if !r.isAtEnd {
            let flags = try r.readUInt8("clock liveness")
            guard flags == 1 || flags == 2 else {
                throw SyncError(.internalError, "Row clocks have an unknown liveness flag \(flags).")
            }
            deleted = flags == 1
        }
        guard r.isAtEnd else { throw SyncError(.internalError, "Row clocks have \(r.remaining) bytes too many.") }
        return RowClocks(
            version: version, columns: Array(columns.prefix(columnCount)), existence: existence, deleted: deleted)
    }
}
