import KotaSyncCore

/// One incoming row change, as the merge engine sees it.
package struct IncomingChange: Sendable, Equatable {
    package var operation: Changeset.Operation
    package var writer: Writer
    /// The stamp after the server's clock-skew check.
    package var stamp: HLC
    /// The master version of the row the replica last saw.
    package var rowBase: UInt64
    /// The columns the change sets, by schema index.
    package var columns: [Int]
    /// Per-column bases that differ from ``rowBase``.
    package var columnBases: [Int: UInt64]

    package init(
        operation: Changeset.Operation, writer: Writer, stamp: HLC, rowBase: UInt64, columns: [Int],
        columnBases: [Int: UInt64] = [:]
    ) {
        self.operation = operation
        self.writer = writer
        self.stamp = stamp
        self.rowBase = rowBase
        self.columns = columns
        self.columnBases = columnBases
    }

    package func base(for column: Int) -> UInt64 { columnBases[column] ?? rowBase }
}

/// A conflict record still open on a row: somebody's change lost to the current winner.
package struct OpenConflict: Sendable, Equatable {
    package var id: Int64
    /// The column; nil for a losing delete.
    package var column: Int?
    package var loser: Writer
    package var winnerStamp: HLC
    package var winnerWriter: Writer

    package init(id: Int64, column: Int?, loser: Writer, winnerStamp: HLC, winnerWriter: Writer) {
        self.id = id
        self.column = column
        self.loser = loser
        self.winnerStamp = winnerStamp
        self.winnerWriter = winnerWriter
    }
}

/// A side of a new conflict: the incoming change, or the write the master holds now.
package enum Party: Sendable, Equatable {
    case incoming
    case master(ColumnClock)
}

/// A conflict the merge records.
package struct ConflictDecision: Sendable, Equatable {
    /// The column; nil when a delete is one side.
    package var column: Int?
    package var kind: ConflictReport.Kind
    package var winner: Party
    package var loser: Party
}

/// What merging one incoming change into one master row does.
package struct MergeDecision: Sendable, Equatable {
    /// What happens to the row in the master table.
    package enum Effect: Sendable, Equatable {
        case none, create, update, delete, resurrect
    }

    package var effect: Effect = .none
    /// Columns that take the incoming value.
    package var written: [Int] = []
    /// The row's new clocks; nil when they do not change.
    package var clocks: RowClocks?
    /// Whether the row's version moves (a write, or a lost change whose replica must be sent the
    /// winning values).
    package var bumped = false
    package var conflicts: [ConflictDecision] = []
    /// Open records whose winner becomes the incoming change.
    package var repointed: [Int64] = []
    /// Open records of this writer's earlier changes, which this change replaces.
    package var superseded: [Int64] = []
}

/// The merge rules, as a pure function of the row's clocks and the incoming change.
///
/// The rules (also in `Protocol/merge.md`):
/// - A change *saw* a write when the write is its own replica's or its version is at most the
///   change's base version. A change that saw the write it replaces applies cleanly.
/// - Otherwise the two are concurrent: for a column, the higher hybrid-clock stamp wins (then
///   the higher replica id), and a conflict is recorded with both values.
/// - A delete racing an update loses (update-wins): the row stays, or comes back, and the delete
///   is recorded as the losing side.
/// - Records are kept so that the final set does not depend on the order in which changesets
///   arrive: an open record is re-pointed at each later winner of its column, and a replica's
///   own later change of the same column supersedes its earlier losing one.
package enum MergeEngine {
    /// The policy names recorded with each decision.
    package static let columnPolicy = "lww"
    package static let deletePolicy = "update-wins"

    package static func decide(
        current: RowClocks?, open: [OpenConflict], change: IncomingChange, columnCount: Int, newVersion: UInt64
    ) -> MergeDecision {
        let mine = ColumnClock(version: newVersion, stamp: change.stamp, writer: change.writer)
        var d = MergeDecision()

        let touchedColumns = Set(change.columns)
        d.superseded = open.filter { record in
            guard record.loser == change.writer else { return false }
            guard change.operation != .delete, let column = record.column else { return true }
            return touchedColumns.contains(column)
        }.map(\.id)
        let live = open.filter { !d.superseded.contains($0.id) }

        guard var clocks = current else {
            guard change.operation != .delete else { return d }
            d.effect = .create
            d.written = change.columns
            d.clocks = RowClocks(
                version: newVersion, deletions: [], columns: Array(repeating: mine, count: columnCount))
            d.bumped = true
            return d
        }

        func saw(_ clock: ColumnClock, base: UInt64) -> Bool {
            clock.writer == change.writer || clock.version <= base
        }

        if clocks.isDeleted {
            if change.operation == .delete {
                // Deletes agree with each other. Each deleting replica stays named on the tombstone,
                // so a later concurrent update records every delete it overrides, in any order.
                if let i = clocks.deletions.firstIndex(where: { $0.writer == change.writer }) {
                    clocks.deletions[i] = ColumnClock(
                        version: clocks.deletions[i].version, stamp: mine.stamp, writer: mine.writer)
                } else {
                    clocks.deletions.append(
                        ColumnClock(version: clocks.version, stamp: mine.stamp, writer: mine.writer))
                }
                d.clocks = clocks
                return d
            }
            for deletion in clocks.deletions where !saw(deletion, base: change.rowBase) {
                d.conflicts.append(
                    ConflictDecision(column: nil, kind: .deleteUpdate, winner: .incoming, loser: .master(deletion)))
            }
            clocks.deletions = []
            for c in change.columns { clocks.columns[c] = mine }
            clocks.version = newVersion
            d.effect = .resurrect
            d.written = change.columns
            d.clocks = clocks
            d.bumped = true
            return d
        }

        if change.operation == .delete {
            let concurrent = clocks.columns.indices.filter { !saw(clocks.columns[$0], base: change.rowBase) }
            if let strongest = concurrent.map({ clocks.columns[$0] }).max(by: { $1.beats($0) }) {
                d.conflicts.append(
                    ConflictDecision(column: nil, kind: .deleteUpdate, winner: .master(strongest), loser: .incoming))
                clocks.version = newVersion
                d.clocks = clocks
                d.bumped = true
            } else {
                clocks.deletions = [mine]
                clocks.version = newVersion
                d.effect = .delete
                d.clocks = clocks
                d.bumped = true
            }
            return d
        }

        let kind: ConflictReport.Kind =
            change.operation == .upsert && change.rowBase == 0 ? .insertInsert : .updateUpdate
        var lost = false
        for c in change.columns {
            let held = clocks.columns[c]
            if saw(held, base: change.base(for: c)) {
                // A clean overwrite.
            } else if mine.beats(held) {
                d.conflicts.append(ConflictDecision(column: c, kind: kind, winner: .incoming, loser: .master(held)))
            } else {
                d.conflicts.append(ConflictDecision(column: c, kind: kind, winner: .master(held), loser: .incoming))
                lost = true
                continue
            }
            clocks.columns[c] = mine
            d.written.append(c)
            d.repointed += live.filter { $0.column == c }.map(\.id)
        }
        if !d.written.isEmpty {
            d.effect = .update
            d.repointed += live.filter {
                $0.column == nil && mine.beats(stamp: $0.winnerStamp, writer: $0.winnerWriter)
            }.map(\.id)
        }
        if !d.written.isEmpty || lost {
            clocks.version = newVersion
            d.clocks = clocks
            d.bumped = true
        }
        return d
    }
}
