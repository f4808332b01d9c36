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

/// An open conflict record: a head that lost, and the head it lost to.
package struct ConflictRecord: Sendable, Equatable, Hashable {
    /// The column; nil when the loser is a delete.
    package var column: Int?
    package var kind: ConflictReport.Kind
    package var loser: Head
    package var winner: Head

    package init(column: Int?, kind: ConflictReport.Kind, loser: Head, winner: Head) {
        self.column = column
        self.kind = kind
        self.loser = loser
        self.winner = winner
    }

    /// Records are identified by what lost: a head loses at most once per column.
    package var key: RecordKey { RecordKey(column: column, loser: loser.key) }
}

/// The identity of a conflict record.
package struct RecordKey: Hashable, Sendable {
    package var column: Int?
    package var loser: HeadKey
}

/// Where a column's new master value comes from.
package enum ValueSource: Sendable, Equatable {
    /// The incoming change's value.
    case incoming
    /// A head that had lost before and wins again; its value is in its conflict record.
    case loser(Head)
}

/// What merging one incoming change into one master row does.
package struct MergeDecision: Sendable, Equatable {
    /// What happens to the row in the master table.
    package enum Effect: Sendable, Equatable {
        case none, create, update, delete, resurrect
    }

    package var effect: Effect = .none
    /// Columns whose master value changes, and where the value comes from.
    package var values: [Int: ValueSource] = [:]
    /// The row's new clocks; nil when nothing changes (a delete of a row the master never had).
    package var clocks: RowClocks?
    /// Every conflict record that should be open on the row afterwards.
    package var records: [ConflictRecord] = []

    /// Writes the decided column values into `values` (the row's values before the change) and
    /// returns each changed column with the value it replaced. A value from a head that had lost
    /// before comes from its record, through `loserValue`.
    package func apply(
        to values: inout [SQLValue], incoming: [Int: SQLValue], loserValue: (RecordKey) -> SQLValue?
    ) -> [(Int, SQLValue)] {
        var replaced: [(Int, SQLValue)] = []
        for (c, source) in self.values.sorted(by: { $0.key < $1.key }) {
            let value: SQLValue
            switch source {
            case .incoming: value = incoming[c] ?? .null
            case .loser(let head): value = loserValue(RecordKey(column: c, loser: head.key)) ?? .null
            }
            replaced.append((c, values[c]))
            values[c] = value
        }
        return replaced
    }
}

/// The merge rules, as a pure function of the row's merge state and the incoming change.
///
/// The rules (also in `Protocol/merge.md`):
/// - A change *saw* an earlier one when the earlier one is its own replica's, or was merged at a
///   version no later than the change's base version.
/// - Each column keeps its *heads*: the writes to it that no later write to it saw. The master
///   holds the value of the strongest head (highest hybrid-clock stamp, then highest replica id);
///   every other head is an open conflict record that lost to it.
/// - The row keeps its existence heads the same way, writes and deletes alike; it is live while
///   any of them is a write (a delete racing an update loses, `update-wins`), and each delete head
///   of a live row is an open record that lost to the strongest write.
///
/// The heads, and so the values and the open records, depend only on the set of changes merged
/// and on what each change saw — not on the order in which they arrive.
package enum MergeEngine {
    /// The policy names recorded with each decision.
    package static let columnPolicy = "lww"
    package static let deletePolicy = "update-wins"

    /// Decides the effect of `change` on a row whose state is `current` (nil: the master never
    /// had the row), whose open column records are `losers`, with `newVersion` as the version the
    /// row takes if it changes.
    package static func decide(
        current: RowClocks?, losers: [ConflictRecord], change: IncomingChange, columnCount: Int, newVersion: UInt64
    ) -> MergeDecision {
        let incoming = Head(
            writer: change.writer, version: newVersion, stamp: change.stamp,
            isInsert: change.operation == .upsert && change.rowBase == 0, isDelete: change.operation == .delete)
        func saw(_ head: Head, base: UInt64) -> Bool {
            head.writer == change.writer || head.version <= base
        }
        var d = MergeDecision()

        guard let current else {
            guard change.operation != .delete else { return d }
            d.effect = .create
            for c in change.columns { d.values[c] = .incoming }
            d.clocks = RowClocks(
                version: newVersion, columns: Array(repeating: incoming, count: columnCount), existence: [incoming])
            return d
        }

        var columns = current.columns
        var columnLosers: [Int: [Head]] = [:]
        for record in losers { if let c = record.column { columnLosers[c, default: []].append(record.loser) } }

        if change.operation != .delete {
            for c in change.columns {
                let base = change.base(for: c)
                var heads = ([columns[c]] + columnLosers[c, default: []]).filter { !saw($0, base: base) }
                heads.append(incoming)
                let winner = strongest(heads)
                columnLosers[c] = heads.filter { $0 != winner }
                if winner != columns[c] {
                    d.values[c] = winner == incoming ? .incoming : .loser(winner)
                    columns[c] = winner
                }
            }
        }

        let existence = current.existence.filter { !saw($0, base: change.rowBase) } + [incoming]
        let writes = existence.filter { !$0.isDelete }
        let live = !writes.isEmpty

        for (c, heads) in columnLosers.sorted(by: { $0.key < $1.key }) {
            for loser in heads {
                let kind: ConflictReport.Kind = loser.isInsert && columns[c].isInsert ? .insertInsert : .updateUpdate
                d.records.append(ConflictRecord(column: c, kind: kind, loser: loser, winner: columns[c]))
            }
        }
        if live {
            let winner = strongest(writes)
            for delete in existence where delete.isDelete {
                d.records.append(ConflictRecord(column: nil, kind: .deleteUpdate, loser: delete, winner: winner))
            }
        }

        switch (current.isDeleted, live) {
        case (false, true): d.effect = d.values.isEmpty ? .none : .update
        case (false, false): d.effect = .delete
        case (true, true): d.effect = .resurrect
        case (true, false): d.effect = .none
        }
        d.clocks = RowClocks(version: newVersion, columns: columns, existence: existence)
        return d
    }

    /// The head that wins among concurrent ones.
    static func strongest(_ heads: [Head]) -> Head {
        heads.max { $1.beats($0) }!
    }
}
