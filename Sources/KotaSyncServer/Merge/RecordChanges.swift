import KotaSyncCore

/// How a row's stored open conflict records change after a merge: the records the merge wants
/// open, compared with those stored.
package struct RecordChanges: Equatable, Sendable {
    /// Stored records no longer standing: they become `superseded`.
    package var superseded: [RecordKey] = []
    /// Standing records whose winner (or kind) changed: they are re-pointed.
    package var repointed: [ConflictRecord] = []
    /// Records not stored yet.
    package var inserted: [ConflictRecord] = []

    package init(wanted: [ConflictRecord], stored: [RecordKey: ConflictRecord]) {
        let wantedKeys = Set(wanted.map(\.key))
        superseded = stored.keys.filter { !wantedKeys.contains($0) }.sorted { "\($0)" < "\($1)" }
        for record in wanted {
            if let old = stored[record.key] {
                if old.winner.key != record.winner.key || old.kind != record.kind { repointed.append(record) }
            } else {
                inserted.append(record)
            }
        }
    }

    /// The losing value a new record keeps: the incoming change's own value when it is the loser,
    /// else the value the column held before the change (the winner it displaced). A delete has none.
    package static func loserValue(
        of record: ConflictRecord, change: IncomingChange, incoming: [Int: SQLValue], prior: [SQLValue]?
    ) -> SQLValue? {
        record.column.flatMap { c in
            record.loser.writer == change.writer && record.loser.stamp == change.stamp ? incoming[c] : prior?[c]
        }
    }
}
