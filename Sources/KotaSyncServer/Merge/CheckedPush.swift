import KotaSyncCore

/// A push changeset that was decoded and checked in full without keeping its rows: the merge
/// reads them again, one at a time, from the same bytes.
///
/// A 50 MB push decoded whole is a few hundred megabytes of rows; read twice as a stream it is a
/// window of the inflated payload and one row at a time. The first reading, here and before the
/// push waits for the master's writer, finds everything the whole-changeset path finds, in the
/// same order: every decoder error (``ChangesetCodec/decode(_:limits:)`` reads all rows before it
/// returns), then the schema's verdict, which is kept rather than thrown because a changeset that
/// was applied before gets its stored reply whatever the schema says now. So a bad row anywhere is
/// refused before anything is merged, with the code it always had, and a refused push never holds
/// the group commit.
public struct CheckedPush: Sendable {
    /// The changeset's bytes, read again by ``rows()``.
    package let source: any ChangesetSource
    package let limits: DecodeLimits
    /// The envelope and tables, with no rows.
    package let changeset: Changeset
    /// The number of rows.
    package let rowCount: Int
    /// Rows per table name, for the audit log.
    package let rowsPerTable: [String: Int]
    /// The schema check: the tables mapped to the schema's, or the first error it found.
    package let validation: Result<ValidatedChangeset, SyncError>

    /// Decodes every row of `source` within `limits` and checks it against `schema`; throws what
    /// the decoder refuses, keeps what the schema refuses in ``validation``.
    package init(_ source: any ChangesetSource, limits: DecodeLimits, schema: [TableSchema]) throws(SyncError) {
        var stream = try ChangesetStream(source, limits: limits)
        let changeset = stream.withoutRows
        var validation = Result { () throws(SyncError) in
            try ChangesetValidator.validateTables(of: changeset, against: schema)
        }
        var perTable = [Int](repeating: 0, count: changeset.tables.count)
        while let row = try stream.next() {
            perTable[row.table] += 1
            if case .success(let validated) = validation {
                do throws(SyncError) {
                    try validated.check(row, index: stream.rowsRead - 1)
                } catch {
                    validation = .failure(error)
                }
            }
        }
        var rowsPerTable: [String: Int] = [:]
        for (table, count) in zip(changeset.tables, perTable) where count > 0 { rowsPerTable[table.name] = count }
        self.source = source
        self.limits = limits
        self.changeset = changeset
        self.rowCount = stream.rowCount
        self.rowsPerTable = rowsPerTable
        self.validation = validation
    }

    /// The rows again, in order, for the merge. They decode as they did the first time (the bytes
    /// are the same), but the merge checks each one again all the same.
    package func rows() throws(SyncError) -> ChangesetStream {
        try ChangesetStream(source, limits: limits)
    }

    /// The push's counts for the audit log: its id, rows, and rows per table; no values.
    var auditDetail: [String: String] {
        [
            "changeset_id": changeset.id.uuidString, "rows": String(rowCount),
            "tables": rowsPerTable.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ","),
        ]
    }
}
