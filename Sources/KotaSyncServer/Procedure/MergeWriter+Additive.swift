import KotaSyncCore

/// `additive` columns: a change counts as a delta from the value its writer had seen.
extension MergeWriter {
    /// The value the change's writer had seen of an `additive` column: its own last write if the
    /// master merged that after the change's base, else the column's value at the base.
    func seenValue(_ change: PendingChange, column c: Int, table: TableSchema, current: SQLValue?) throws -> SQLValue {
        let base = change.bases[c] ?? change.rowBase
        if let own = try store.additiveWrite(
            of: table, key: change.key, column: table.columns[c].name, writer: change.writer.number),
            own.version > base
        {
            return own.value
        }
        return try valueAt(base: base, column: c, table: table, key: change.key, current: current) ?? .null
    }

    /// Remembers what the writer now sees of the column, and records the merge when another
    /// change had moved the column since the writer saw it.
    mutating func recordAdditive(
        _ merge: AdditiveMerge, change: PendingChange, table: TableSchema, seen: SQLValue, prior: SQLValue,
        result: SQLValue, reported: Bool
    ) throws {
        let name = table.columns[merge.column].name
        let value = change.incoming[merge.column] ?? .null
        try store.rememberAdditive(
            of: table, key: change.key, column: name, writer: change.writer.number, version: version, value: value)
        guard prior != seen else { return }
        let incomingHead = Head(writer: change.writer, version: version, stamp: change.stamp)
        try insertRecord(
            ConflictRecord(
                column: merge.column, kind: .updateUpdate, loser: merge.previous, winner: incomingHead,
                policy: ColumnPolicy.additive.description),
            table: table, key: change.key, baseVersion: change.bases[merge.column] ?? change.rowBase, base: seen,
            winnerValue: result, loserValue: prior, changesetID: change.changesetID,
            reason:
                "additive: both changes count. The master held \(prior), this change moved the column from \(seen) to \(value); the master now holds \(result).",
            reported: reported)
    }
}
