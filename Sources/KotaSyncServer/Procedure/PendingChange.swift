import Foundation
import KotaSyncCore

/// One change to merge into the master: a pushed row, a held row released, or a reviewer's
/// decision (written by the master itself).
struct PendingChange {
    var table: TableSchema
    var operation: Changeset.Operation
    var key: [SQLValue]
    /// The stamp after the clock-skew check.
    var stamp: HLC
    var clamped: Bool
    var rowBase: UInt64
    /// The columns the change sets (schema indexes), their values and their own bases.
    var columns: [Int]
    var incoming: [Int: SQLValue]
    var bases: [Int: UInt64]
    var writer: Writer
    var changesetID: UUID
    /// The OPD of the device that wrote the change, when it is known already (a push); else the
    /// merge finds it from the writer's replica (a held, queued or quarantined change released
    /// later). Every change but the master's own is judged by that OPD's rules.
    var opd: String?
    /// A parent a reviewer pointed this change at (merging two records into one): the writer did
    /// not choose it, so it is not judged by the writer's scope.
    var parentChosenByStaff: RowReference?

    /// The row as it arrived, by column name (key columns included).
    var heldRow: HeldRow {
        var values: [String: SQLValue] = [:]
        for (column, value) in zip(table.primaryKey, key) { values[column.name] = value }
        for c in columns { values[table.columns[c].name] = incoming[c] ?? .null }
        let operation: String =
            switch self.operation {
            case .upsert: "upsert"
            case .update: "update"
            case .delete: "delete"
            }
        return HeldRow(operation: operation, values: values)
    }

    var held: HeldChange {
        HeldChange(
            writer: writer.number, stamp: stamp.rawValue, clamped: clamped, version: rowBase,
            columnBases: Dictionary(uniqueKeysWithValues: bases.map { (table.columns[$0].name, $1) }),
            changeset: changesetID, row: heldRow)
    }

    /// Rebuilds a held change; `set` overrides values by column name.
    init(
        held: HeldChange, table: TableSchema, writer: Writer, set: [String: SQLValue] = [:]
    ) throws {
        let values = held.row.values.merging(set) { _, new in new }
        self.table = table
        operation =
            switch held.row.operation {
            case "upsert": .upsert
            case "update": .update
            default: .delete
            }
        key = try table.primaryKey.map { column in
            guard let v = values[column.name] else {
                throw SyncError(.internalError, "A held row of \(table.name) lacks its key column \(column.name).")
            }
            return v
        }
        stamp = HLC(rawValue: held.stamp)
        clamped = held.clamped
        rowBase = held.version
        columns = table.columns.indices.filter { values[table.columns[$0].name] != nil }
        incoming = Dictionary(uniqueKeysWithValues: columns.map { ($0, values[table.columns[$0].name]!) })
        bases = Dictionary(
            uniqueKeysWithValues: held.columnBases.compactMap { name, base in
                table.columns.firstIndex { $0.name == name }.map { ($0, base) }
            })
        self.writer = writer
        changesetID = held.changeset
    }

    init(
        table: TableSchema, operation: Changeset.Operation, key: [SQLValue], stamp: HLC, clamped: Bool,
        rowBase: UInt64, columns: [Int], incoming: [Int: SQLValue], bases: [Int: UInt64], writer: Writer,
        changesetID: UUID
    ) {
        self.table = table
        self.operation = operation
        self.key = key
        self.stamp = stamp
        self.clamped = clamped
        self.rowBase = rowBase
        self.columns = columns
        self.incoming = incoming
        self.bases = bases
        self.writer = writer
        self.changesetID = changesetID
    }

    var engineChange: IncomingChange {
        IncomingChange(
            operation: operation, writer: writer, stamp: stamp, rowBase: rowBase, columns: columns, columnBases: bases)
    }
}

/// What merging one change did.
enum MergeResult: Equatable {
    /// Nothing to do (a delete of a row the master never had).
    case ignored
    /// Merged, with this effect on the table.
    case merged(MergeDecision.Effect)
    /// Not applied: kept in conflict record `id` (quarantined, held for a parent, or queued).
    case held(Int64)
    /// Not applied: its writer may not make it (out of its scope, too large, a base version the
    /// master never issued).
    case refused(RowRefusal)
}
