import KotaSyncCore

/// A pushed changeset checked against the configured schema, with its tables and columns
/// mapped to the schema's.
package struct ValidatedChangeset: Sendable {
    /// The changeset; a streamed push (``CheckedPush``) keeps its envelope and tables here but no
    /// rows, which are read again one by one as they are merged.
    package var changeset: Changeset
    /// For each changeset table, the configured table.
    package var tables: [TableSchema]
    /// For each changeset table, changeset column index → schema column index.
    package var columnMaps: [[Int]]
    /// For each changeset table, the affinities of its key columns and of its columns by changeset
    /// column index: an affinity is found by searching the declared type's text, which took a
    /// few percent of a large push's merge when it was done for every value.
    private var keyAffinities: [[Affinity]]
    private var columnAffinities: [[Affinity]]

    init(changeset: Changeset, tables: [TableSchema], columnMaps: [[Int]]) {
        self.changeset = changeset
        self.tables = tables
        self.columnMaps = columnMaps
        keyAffinities = tables.map { $0.primaryKey.map(\.affinity) }
        columnAffinities = zip(tables, columnMaps).map { table, map in map.map { table.columns[$0].affinity } }
    }

    /// A row's changed columns in schema indexes: their order, their values as their columns
    /// keep them (``Affinity/stored(_:)``), and the base versions that differ from the row's.
    package func schemaColumns(of row: Changeset.Row) -> (
        columns: [Int], values: [Int: SQLValue], bases: [Int: UInt64]
    ) {
        let map = columnMaps[row.table]
        let affinities = columnAffinities[row.table]
        var columns: [Int] = []
        var values: [Int: SQLValue] = [:]
        var bases: [Int: UInt64] = [:]
        for c in row.columns {
            let i = map[c.column]
            columns.append(i)
            values[i] = affinities[c.column].stored(c.value)
            if let base = c.baseVersion { bases[i] = base }
        }
        return (columns, values, bases)
    }

    /// A row's key as the key columns keep it (``Affinity/stored(_:)``): the key the master's
    /// table will hold, so that its bookkeeping names the row by the same values. (A NUMERIC key
    /// pushed as the real `3.0` is the row `3`.)
    package func schemaKey(of row: Changeset.Row) -> [SQLValue] {
        zip(keyAffinities[row.table], row.primaryKey).map { $0.stored($1) }
    }

    /// Checks row `index` against the schema: a table, key and columns the changeset declares, no
    /// NULL in the key, and values of a storage class each column accepts.
    package func check(_ row: Changeset.Row, index: Int) throws(SyncError) {
        // A changeset built in code (not decoded) has had none of the decoder's checks.
        guard row.table >= 0, row.table < tables.count,
            row.primaryKey.count == tables[row.table].primaryKey.count,
            row.columns.allSatisfy({ $0.column >= 0 && $0.column < columnMaps[row.table].count })
        else {
            throw SyncError(
                .changesetMalformed, "Row \(index) refers to a table, key or column the changeset does not declare.")
        }
        let keys = keyAffinities[row.table]
        for (k, value) in row.primaryKey.enumerated() where value == .null || !keys[k].accepts(value.storageClass) {
            let table = tables[row.table]
            throw ChangesetValidator.mismatch(index, table, table.primaryKey[k], value)
        }
        let affinities = columnAffinities[row.table]
        for c in row.columns where !affinities[c.column].accepts(c.value.storageClass) {
            let table = tables[row.table]
            throw ChangesetValidator.mismatch(index, table, table.columns[columnMaps[row.table][c.column]], c.value)
        }
    }
}

/// Checks a pushed changeset against the replicated schema before anything is applied:
/// known tables and columns, the right key, and values of a storage class each column accepts.
package enum ChangesetValidator {
    package static func validate(_ changeset: Changeset, against schema: [TableSchema]) throws(SyncError)
        -> ValidatedChangeset
    {
        let validated = try validateTables(of: changeset, against: schema)
        for (index, row) in changeset.rows.enumerated() { try validated.check(row, index: index) }
        return validated
    }

    /// Checks what comes before the rows (the kind, the sequence range, and the tables with their
    /// keys and columns) and maps the tables to the schema's; `changeset.rows` are not looked at,
    /// so a streamed push checks each row with ``ValidatedChangeset/check(_:index:)`` as it reads it.
    package static func validateTables(of changeset: Changeset, against schema: [TableSchema]) throws(SyncError)
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
        return ValidatedChangeset(changeset: changeset, tables: tables, columnMaps: maps)
    }

    fileprivate static func mismatch(_ row: Int, _ table: TableSchema, _ column: ColumnSchema, _ value: SQLValue)
        -> SyncError
    {
        SyncError(
            .typeMismatch,
            "Row \(row) of the changeset: column \(table.name).\(column.name) is declared \(column.declaredType.isEmpty ? "without a type" : column.declaredType) and does not take a \(value.storageClass.rawValue) value. Correct the row on the replica; the change stays pending until it is pushed."
        )
    }
}
