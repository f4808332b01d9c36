import KotaSyncCore

/// A pushed changeset checked against the configured schema, with its tables and columns
/// mapped to the schema's.
package struct ValidatedChangeset: Sendable {
    package var changeset: Changeset
    /// For each changeset table, the configured table.
    package var tables: [TableSchema]
    /// For each changeset table, changeset column index → schema column index.
    package var columnMaps: [[Int]]

    /// A row's changed columns in schema indexes: their order, their values, and the base
    /// versions that differ from the row's.
    package func schemaColumns(of row: Changeset.Row) -> (
        columns: [Int], values: [Int: SQLValue], bases: [Int: UInt64]
    ) {
        let map = columnMaps[row.table]
        var columns: [Int] = []
        var values: [Int: SQLValue] = [:]
        var bases: [Int: UInt64] = [:]
        for c in row.columns {
            let i = map[c.column]
            columns.append(i)
            values[i] = c.value
            if let base = c.baseVersion { bases[i] = base }
        }
        return (columns, values, bases)
    }
}

/// Checks a pushed changeset against the replicated schema before anything is applied:
/// known tables and columns, the right key, and values of a storage class each column accepts.
package enum ChangesetValidator {
    package static func validate(_ changeset: Changeset, against schema: [TableSchema]) throws(SyncError)
        -> ValidatedChangeset
    {
        guard changeset.kind == .push else {
            throw SyncError(
                .changesetMalformed, "Only push changesets (kind 1) can be pushed; this one is a pull page.")
        }
        guard changeset.firstSequence <= changeset.lastSequence else {
            throw SyncError(
                .changesetMalformed,
                "The sequence range \(changeset.firstSequence)...\(changeset.lastSequence) runs backwards.")
        }
        var tables: [TableSchema] = []
        var maps: [[Int]] = []
        for table in changeset.tables {
            guard let known = schema.first(where: { $0.name == table.name }) else {
                throw SyncError(
                    .unknownTable,
                    "Table \(table.name) is not replicated by this server. Re-run `kotasync init` if the schema changed."
                )
            }
            guard table.primaryKey == known.primaryKey.map(\.name) else {
                throw SyncError(
                    .invalidPrimaryKey,
                    "Table \(table.name) is keyed by (\(known.primaryKey.map(\.name).joined(separator: ", "))), not (\(table.primaryKey.joined(separator: ", ")))."
                )
            }
            var map: [Int] = []
            for name in table.columns {
                guard let i = known.columns.firstIndex(where: { $0.name == name }) else {
                    throw SyncError(.unknownColumn, "Table \(table.name) has no column \(name).")
                }
                map.append(i)
            }
            tables.append(known)
            maps.append(map)
        }
        for (index, row) in changeset.rows.enumerated() {
            // A changeset built in code (not decoded) has had none of the decoder's checks.
            guard row.table >= 0, row.table < tables.count,
                row.primaryKey.count == tables[row.table].primaryKey.count,
                row.columns.allSatisfy({ $0.column >= 0 && $0.column < maps[row.table].count })
            else {
                throw SyncError(
                    .changesetMalformed, "Row \(index) refers to a table, key or column the changeset does not declare."
                )
            }
            let table = tables[row.table]
            for (value, column) in zip(row.primaryKey, table.primaryKey) {
                guard value != .null, column.accepts(value.storageClass) else {
                    throw mismatch(index, table, column, value)
                }
            }
            for c in row.columns {
                let column = table.columns[maps[row.table][c.column]]
                guard column.accepts(c.value.storageClass) else { throw mismatch(index, table, column, c.value) }
            }
        }
        return ValidatedChangeset(changeset: changeset, tables: tables, columnMaps: maps)
    }

    private static func mismatch(_ row: Int, _ table: TableSchema, _ column: ColumnSchema, _ value: SQLValue)
        -> SyncError
    {
        SyncError(
            .typeMismatch,
            "Row \(row) of the changeset: column \(table.name).\(column.name) is declared \(column.declaredType.isEmpty ? "without a type" : column.declaredType) and does not take a \(value.storageClass.rawValue) value. Correct the row on the replica; the change stays pending until it is pushed."
        )
    }
}
