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

/// A standing conflict record: a head that lost, and the head it lost to.
package struct ConflictRecord: Sendable, Equatable, Hashable {
    /// The column; nil for a delete/update record.
    package var column: Int?
    package var kind: ConflictReport.Kind
    package var loser: Head
    package var winner: Head
    /// The policy that decided, as written in the record (`lww`, `update-wins`, ...).
    package var policy: String
    /// Waits for a reviewer (status `open`) instead of being decided automatically (`auto`).
    package var waiting: Bool

    package init(
        column: Int?, kind: ConflictReport.Kind, loser: Head, winner: Head, policy: String = "lww",
        waiting: Bool = false
    ) {
        self.column = column
        self.kind = kind
        self.loser = loser
        self.winner = winner
        self.policy = policy
        self.waiting = waiting
    }

    /// Records are identified by what lost: a head loses at most once per column.
    package var key: RecordKey { RecordKey(column: column, loser: loser.key) }

    /// The status a new record gets.
    package var status: ConflictReport.Status { waiting ? .open : .auto }
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
    /// An `additive` column changed concurrently: the master's value plus the change's delta,
    /// its value minus the value its writer had seen (see ``AdditiveMerge``).
    case sum
}

/// An `additive` column merged as a delta: nothing is overwritten, so no record stands, but the
/// merge is recorded (`auto`) for review when something else changed the column in between.
package struct AdditiveMerge: Sendable, Equatable {
    package var column: Int
    /// The column's winner before (its value is the master's value the delta was added to).
    package var previous: Head
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
    /// Every conflict record that should be standing on the row afterwards.
    package var records: [ConflictRecord] = []
    /// The `additive` columns the change sets (each merged as a delta).
    package var additive: [AdditiveMerge] = []

    /// Writes the decided column values into `values` (the row's values before the change) and
    /// returns each changed column with the value it replaced. A value from a head that had lost
    /// before comes from its record, through `loserValue`.
    package func apply(
        to values: inout [SQLValue], incoming: [Int: SQLValue], loserValue: (RecordKey) -> SQLValue?,
        seenValue: (Int) throws -> SQLValue = { _ in .null }
    ) rethrows -> [(Int, SQLValue)] {
        var replaced: [(Int, SQLValue)] = []
        for (c, source) in self.values.sorted(by: { $0.key < $1.key }) {
            let value: SQLValue
            switch source {
            case .incoming: value = incoming[c] ?? .null
            case .loser(let head): value = loserValue(RecordKey(column: c, loser: head.key)) ?? .null
            case .sum: value = Additive.sum(values[c], adding: incoming[c] ?? .null, since: try seenValue(c))
            }
            replaced.append((c, values[c]))
            values[c] = value
        }
        return replaced
    }
}

/// The merge rules, as a pure function of the row's merge state, the incoming change and the
/// table's policies.
///
/// The rules (also in `Protocol/merge.md`):
/// - A change *saw* an earlier one when the earlier one is its own replica's, or was merged at a
///   version no later than the change's base version.
/// - Each column keeps its *heads*: the writes to it that no later write to it saw. The master
///   holds the value of the winning head — by the column's policy: the highest hybrid-clock stamp
///   (`lww`), the Command Center's or an authority OPD's head first (`server-wins`,
///   `authority`), or the head the master already held (`manual`) — and every other head is a
///   standing conflict record that lost to it. An `additive` column adds each change's delta.
/// - The row keeps its existence heads the same way, writes and deletes alike. Under
///   `update-wins` (and `manual`) it is live while any of them is a write; under `delete-wins`,
///   while none is a delete. Each head on the losing side is a standing record.
///
/// The heads, and so the values and the standing records, depend only on the set of changes
/// merged and on what each change saw — not on the order in which they arrive — for every policy
/// but `manual`, whose point is to keep what the master held first.
package enum MergeEngine {
    /// Decides the effect of `change` on a row whose state is `current` (nil: the master never
    /// had the row), whose standing column records are `losers`, with `newVersion` as the
    /// version the row takes if it changes. `opd` names a writer's OPD (for `authority`).
    package static func decide(
        current: RowClocks?, losers: [ConflictRecord], change: IncomingChange, columnCount: Int, newVersion: UInt64,
        policy: TablePolicy? = nil, opd: (Writer) -> String = { _ in "" }
    ) -> MergeDecision {
        let policy = policy ?? .standard(columnCount: columnCount)
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

        let existence = current.existence.filter { !saw($0, base: change.rowBase) } + [incoming]
        let writes = existence.filter { !$0.isDelete }
        let deletes = existence.filter(\.isDelete)
        let live = policy.delete == .deleteWins ? deletes.isEmpty : !writes.isEmpty

        // Under delete-wins a deleted row's columns are not contested: a write that did not see
        // the delete loses whole (its values stay in its record), and column records end.
        let columnsContested = policy.delete != .deleteWins || live
        var columns = current.columns
        var columnLosers: [Int: [Head]] = [:]
        if columnsContested {
            for record in losers { if let c = record.column { columnLosers[c, default: []].append(record.loser) } }
        }

        if change.operation != .delete, columnsContested {
            for c in change.columns {
                let rule = policy.columns[c]
                if rule == .additive {
                    // Both count: the change adds what it changed to whatever the master holds.
                    d.additive.append(AdditiveMerge(column: c, previous: columns[c]))
                    d.values[c] = .sum
                    columns[c] = incoming
                    columnLosers[c] = []
                    continue
                }
                let base = change.base(for: c)
                var heads = ([columns[c]] + columnLosers[c, default: []]).filter { !saw($0, base: base) }
                heads.append(incoming)
                let winner: Head
                if rule == .manual {
                    // The master keeps its value against a change that did not see it.
                    winner = heads.contains(columns[c]) ? columns[c] : incoming
                } else {
                    winner = strongest(heads, rule, opd: opd)
                }
                columnLosers[c] = heads.filter { $0 != winner }
                if winner != columns[c] {
                    d.values[c] = winner == incoming ? .incoming : .loser(winner)
                    columns[c] = winner
                }
            }
        }

        for (c, heads) in columnLosers.sorted(by: { $0.key < $1.key }) {
            let rule = policy.columns[c]
            for loser in heads {
                let kind: ConflictReport.Kind = loser.isInsert && columns[c].isInsert ? .insertInsert : .updateUpdate
                d.records.append(
                    ConflictRecord(
                        column: c, kind: kind, loser: loser, winner: columns[c], policy: rule.description,
                        waiting: rule == .manual))
            }
        }
        let deletePolicy = policy.delete.rawValue
        if live, !deletes.isEmpty {
            let winner = strongest(writes, .lww, opd: opd)
            for delete in deletes {
                d.records.append(
                    ConflictRecord(
                        column: nil, kind: .deleteUpdate, loser: delete, winner: winner, policy: deletePolicy,
                        waiting: policy.delete == .manual))
            }
        } else if !live, !writes.isEmpty {
            // delete-wins: each write the deletes did not see lost.
            let winner = strongest(deletes, .lww, opd: opd)
            for write in writes {
                d.records.append(
                    ConflictRecord(column: nil, kind: .deleteUpdate, loser: write, winner: winner, policy: deletePolicy)
                )
            }
        }

        switch (current.isDeleted, live) {
        case (false, true): d.effect = d.values.isEmpty ? .none : .update
        case (false, false): d.effect = .delete
        case (true, true): d.effect = .resurrect
        case (true, false): d.effect = .none
        }
        d.clocks = RowClocks(version: newVersion, columns: columns, existence: existence, deleted: !live)
        return d
    }

    /// The head that wins among concurrent ones under `rule`: for `server-wins` and `authority`
    /// the favoured side first, then the higher stamp, then the higher replica id.
    static func strongest(_ heads: [Head], _ rule: ColumnPolicy = .lww, opd: (Writer) -> String = { _ in "" }) -> Head {
        func favoured(_ head: Head) -> Bool {
            switch rule {
            case .serverWins: head.writer.number == 0
            case .authority(let authority): opd(head.writer) == authority
            default: false
            }
        }
        return heads.max { a, b in
            let (fa, fb) = (favoured(a), favoured(b))
            return fa != fb ? fb : b.beats(a)
        }!
    }
}

/// Arithmetic of `additive` columns.
package enum Additive {
    /// `current + (value − seen)`: the change's delta added to what the master holds. NULL counts
    /// as 0. Integers stay integers (falling back to real on overflow); a text or blob anywhere
    /// makes it a plain write of `value`, as `lww` would.
    package static func sum(_ current: SQLValue, adding value: SQLValue, since seen: SQLValue) -> SQLValue {
        func number(_ v: SQLValue) -> (Int64?, Double)? {
            switch v {
            case .null: (0, 0)
            case .integer(let i): (i, Double(i))
            case .real(let r): (nil, r)
            default: nil
            }
        }
        guard value != .null, let c = number(current), let v = number(value), let s = number(seen) else {
            return value
        }
        if let ci = c.0, let vi = v.0, let si = s.0 {
            let (delta, o1) = vi.subtractingReportingOverflow(si)
            let (total, o2) = ci.addingReportingOverflow(delta)
            if !o1, !o2 { return .integer(total) }
        }
        return .real(c.1 + (v.1 - s.1))
    }
}
