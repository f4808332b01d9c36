import Foundation
import KotaSyncCore
import NIOCore
import PostgresNIO

/// The merge's port (``MergeStore``) on the PostgreSQL master, on one blocking connection inside
/// the transaction ``PostgresMaster/blockingTransaction(lock:_:)`` opened under the merge lock.
///
/// Every statement is a network round trip, so the port is set-based where the procedure is
/// hot. ``rows(of:keys:blocking:)`` reads, per window of keys and table, with one statement
/// each: the heads, the values (a `VALUES` list of typed keys joined to the table), the
/// standing records, and, when the master has holds, the blocking records and the held records
/// waiting for those rows; for a table with additive columns, its additive entries. Row writes
/// and deletes, bookkeeping heads, history entries, additive entries, new records, their
/// supersessions and re-pointings are buffered and written in multi-row statements; a read
/// writes out only the buffers it reads (its table's rows, the records, the heads), and
/// everything is written before a savepoint starts or ends and when the merge ends (``flush()``).
/// The history entries a window's conflict records take their base values from
/// (``firstReplaced(of:key:column:after:)``) are read ahead, one statement per window and table,
/// from ``expectHistoryReads(of:keys:)``. What is left row by row: the history read of a
/// resurrection (``valuesAtLastDeletion(of:key:)``), and the record reads and writes of a release
/// or a reviewer's decision.
///
/// PostgreSQL aborts a transaction at its first failed statement, so a write is made only when
/// it cannot fail by a constraint the procedure reacts to. A row of a table with UNIQUE indexes
/// is checked first against the table and the buffered rows (``uniqueCollisions(of:rows:)``;
/// the holders of a window's expected values are read ahead, one statement per index, from
/// ``expectWrites(of:rows:)``) and buffered only when it collides with nothing — otherwise
/// ``RowWriteOutcome/uniqueViolation(with:column:message:)`` and nothing is written. When a
/// buffered row is moving off the values a row would take, the table's buffer is written first,
/// so that no multi-row statement passes through two rows holding the same values. A NOT NULL
/// column left NULL, and a value its column cannot keep, are refused before the write
/// (``MergeStoreConstraintViolation``, `type_mismatch`). Any other constraint error PostgreSQL
/// raises leaves as a ``MergeStoreConstraintViolation`` too, and the caller rolls the
/// transaction (or the savepoint) back, so the connection is usable again.
///
/// Record ids: the largest id plus one, read once per transaction, as SQLite numbers an
/// `INTEGER PRIMARY KEY` — so a buffered record's id is known at once, ids grow with every
/// record (merges hold the merge lock, the only writer of records), and a master gives the
/// same ids on both backends. The identity sequence of `kotasync.conflicts` is moved along in
/// the same statement that inserts, so an insert that takes its default still gets a new id.
final class PostgresMergeStore: MergeStore {
    /// Keys per set-based read.
    static let chunk = 500
    /// Rows per multi-row write (fewer when a row takes many parameters).
    static let batch = 64

    private let connection: PostgresBlockingConnection
    private let definitions: [String: PostgresTableDefinition]
    private let describe: (Int64) -> String

    /// The DDL's CHECK constraints, judged as the SQLite master judges them.
    private let checks: SQLiteRowChecks
    private var pendingRows: [String: PendingRows] = [:]
    private var pendingRecords: [StoredConflict] = []
    private var pendingSupersede: [Int64] = []
    private var pendingRepoints: [Int64: Repoint] = [:]
    private var pendingHeads: [HeadWrite] = []
    private var pendingHistory: [HistoryEntry] = []
    /// Additive writes buffered, one per row, column and writer.
    private var pendingAdditive: [AdditiveID: AdditiveEntry] = [:]
    /// What each writer last wrote to the additive columns of rows read by ``rows(of:keys:blocking:)``
    /// (every entry of those rows: a missing one was never written), kept up to date by
    /// ``rememberAdditive(of:key:column:writer:version:value:)``.
    private var additiveKnown: [RowID: [AdditiveID: AdditiveEntry]] = [:]
    /// The tables with an additive column.
    private let additiveTables: Set<String>
    /// The `held` records waiting for rows read by ``rows(of:keys:blocking:)`` with `blocking`
    /// (every such record of those rows), kept up to date by the record writes; forgotten when a
    /// write could change them in a way not followed here.
    private var waitingKnown: [RowID: [StoredConflict]] = [:]
    /// Per table and UNIQUE index (its position), the row the table holds with given index
    /// values (``PrimaryKeyCoding`` bytes of the values), or nil for none: what the table held
    /// when it was read, so forgotten when the table's buffered rows are written out.
    private var holdersKnown: [String: [Int: [[UInt8]: [SQLValue]?]]] = [:]
    /// Per table and UNIQUE index, the buffered row (its encoded key) that will hold given index
    /// values (``indexTuple(_:_:)``): the buffered rows' side of a collision check, without
    /// comparing a row with every buffered row.
    private var pendingHolders: [String: [Int: [[UInt8]: [UInt8]]]] = [:]
    /// Per row, its history entries after a version, in version order: those written when the
    /// window's hint read them (``expectHistoryReads(of:keys:)``) and those written since (kept
    /// in step by ``flushHistory()``); entries still buffered are in ``pendingHistory``.
    private var historyKnown: [RowID: KnownHistory] = [:]
    private var nextRecordID: Int64?
    private var savepoints = 0

    /// A row's history entries with a version above `after`, as ``historyKnown`` keeps them.
    private struct KnownHistory {
        var after: UInt64
        var entries: [(version: UInt64, old: [(Int, SQLValue)])] = []
    }

    /// A table's buffered row writes: the last write of each key (a value, or nil for a delete).
    private struct PendingRows {
        var order: [[UInt8]] = []
        var writes: [[UInt8]: (key: [SQLValue], values: [SQLValue]?)] = [:]

        mutating func set(_ pk: [UInt8], key: [SQLValue], values: [SQLValue]?) {
            if writes.updateValue((key, values), forKey: pk) == nil { order.append(pk) }
        }
    }

    /// A standing record's new winner (``repointRecord(_:kind:winner:winnerValue:)``), buffered.
    private struct Repoint {
        var kind: ConflictReport.Kind
        var writer: Int64
        var stamp: Int64
        var value: SQLValue?
    }

    /// One writer's last write to one additive column of one row.
    private struct AdditiveID: Hashable {
        var table: String
        var pk: [UInt8]
        var column: String
        var writer: Int64
    }

    private struct AdditiveEntry {
        var version: UInt64
        var value: SQLValue
    }

    /// A row (and a version of it) as a dictionary key.
    private struct RowID: Hashable {
        var table: String
        var pk: [UInt8]
        var version: UInt64 = 0
    }

    init(
        connection: PostgresBlockingConnection, definitions: [String: PostgresTableDefinition],
        checks: SQLiteRowChecks, additiveTables: Set<String>, describe: @escaping (Int64) -> String
    ) {
        self.connection = connection
        self.definitions = definitions
        self.checks = checks
        self.additiveTables = additiveTables
        self.describe = describe
    }

    // MARK: - Statements

    private func definition(_ table: TableSchema) throws -> PostgresTableDefinition {
        guard let definition = definitions[table.name] else {
            throw SyncError(.internalError, "Table \(table.name) has no definition on this master.")
        }
        return definition
    }

    /// Runs a statement, turning PostgreSQL's constraint errors (SQLSTATE class 23) into the port's.
    @discardableResult
    private func run(_ statement: PostgresStatement, _ sql: String) throws -> [PostgresRow] {
        do {
            return try connection.rows(statement.query(sql))
        } catch let error as PSQLError where error.serverInfo?[.sqlState]?.hasPrefix("23") == true {
            // The server's message names the constraint, never a value (the detail would).
            throw MergeStoreConstraintViolation(message: error.serverInfo?[.message] ?? "constraint failed")
        }
    }

    private static func bytes(_ cell: PostgresCell) throws -> [UInt8] {
        Array(buffer: try cell.decode(ByteBuffer.self))
    }

    /// How many rows of `parameters` each fit one statement.
    private static func rowsPerStatement(_ parameters: Int) -> Int {
        max(1, min(batch, PostgresStatement.maxParameters / max(1, parameters)))
    }

    // MARK: - Versions and transactions

    func latestVersion() throws -> UInt64 {
        try flushHeads()
        let rows = try run(PostgresStatement(), "SELECT coalesce(max(version), 0) FROM kotasync.rows")
        return UInt64(bitPattern: try rows.first?.decode(Int64.self) ?? 0)
    }

    func inSavepoint(_ body: () throws -> Void) throws {
        try flush()
        let nextID = nextRecordID
        savepoints += 1
        let name = "ks_\(savepoints)"
        defer { savepoints -= 1 }
        try connection.run(sql: "SAVEPOINT \(name)")
        do {
            try body()
            try flush()
        } catch {
            // Rolled back: what it buffered never happened.
            nextRecordID = nextID
            pendingRows.removeAll()
            pendingRecords.removeAll()
            pendingSupersede.removeAll()
            pendingRepoints.removeAll()
            pendingHeads.removeAll()
            pendingHistory.removeAll()
            pendingAdditive.removeAll()
            additiveKnown.removeAll()
            waitingKnown.removeAll()
            holdersKnown.removeAll()
            pendingHolders.removeAll()
            historyKnown.removeAll()
            try connection.run(sql: "ROLLBACK TO SAVEPOINT \(name)")
            try connection.run(sql: "RELEASE SAVEPOINT \(name)")
            throw error
        }
        try connection.run(sql: "RELEASE SAVEPOINT \(name)")
    }

    /// Writes out every buffer. A read flushes only what it reads (the row writes of its table,
    /// the records, the heads), so that the per-row reads of a merge do not write out the
    /// window's bookkeeping row by row.
    func flush() throws {
        try flushRows()
        try flushRecords()
        try flushHeads()
        try flushHistory()
        try flushAdditive()
    }

    private func flushAdditive() throws {
        guard !pendingAdditive.isEmpty else { return }
        let entries = Array(pendingAdditive)
        pendingAdditive.removeAll()
        let step = Self.rowsPerStatement(9)
        var start = 0
        while start < entries.count {
            let end = min(start + step, entries.count)
            var statement = PostgresStatement()
            var tuples: [String] = []
            for (id, entry) in entries[start..<end] {
                let cells = [
                    statement.bind(id.table), statement.bind(PostgresStatement.bytes(id.pk)), statement.bind(id.column),
                    statement.bind(id.writer), statement.bind(Int64(bitPattern: entry.version)),
                    try statement.value(entry.value, as: .value),
                ]
                tuples.append("(" + cells.joined(separator: ", ") + ")")
            }
            try run(
                statement,
                """
                INSERT INTO kotasync.additive (tbl, pk, col, writer, version, value) \
                VALUES \(tuples.joined(separator: ", ")) \
                ON CONFLICT (tbl, pk, col, writer) DO UPDATE SET version = excluded.version, value = excluded.value
                """)
            start = end
        }
    }

    /// Writes out the buffered row writes (of table `only`, when given: a read of one table
    /// needs only its own written).
    private func flushRows(only: String? = nil) throws {
        guard !pendingRows.isEmpty else { return }
        let tables: [String: PendingRows]
        if let only {
            guard let pending = pendingRows.removeValue(forKey: only) else { return }
            tables = [only: pending]
        } else {
            tables = pendingRows
            pendingRows.removeAll()
        }
        for (name, pending) in tables.sorted(by: { $0.key < $1.key }) {
            guard let definition = definitions[name] else { continue }
            holdersKnown[name] = nil
            pendingHolders[name] = nil
            let writes = pending.order.compactMap { pk in pending.writes[pk] }
            let deletes = writes.filter { $0.values == nil }.map(\.key)
            let upserts = writes.compactMap { w in w.values.map { (w.key, $0) } }
            try delete(definition, keys: deletes)
            try upsert(definition, rows: upserts)
        }
    }

    private func delete(_ definition: PostgresTableDefinition, keys: [[SQLValue]]) throws {
        guard !keys.isEmpty else { return }
        let keyNames = definition.schema.primaryKey.map { PostgresTableDefinition.quote($0.name) }
        let perRow = definition.keyTypes.reduce(0) { $0 + $1.parameterCount }
        let step = Self.rowsPerStatement(perRow)
        var start = 0
        while start < keys.count {
            let end = min(start + step, keys.count)
            var statement = PostgresStatement()
            var rows: [String] = []
            for key in keys[start..<end] {
                var cells: [String] = []
                for (value, type) in zip(key, definition.keyTypes) {
                    cells.append(try statement.value(value, as: type))
                }
                rows.append("(" + cells.joined(separator: ", ") + ")")
            }
            let aliases = keyNames.indices.map { "k\($0)" }
            let join = zip(keyNames, aliases).map { "t.\($0) = d.\($1)" }.joined(separator: " AND ")
            try run(
                statement,
                """
                DELETE FROM \(definition.qualifiedName) AS t USING (VALUES \(rows.joined(separator: ", "))) \
                AS d(\(aliases.joined(separator: ", "))) WHERE \(join)
                """)
            start = end
        }
    }

    private func upsert(_ definition: PostgresTableDefinition, rows: [([SQLValue], [SQLValue])]) throws {
        guard !rows.isEmpty else { return }
        let schema = definition.schema
        let names = (schema.primaryKey + schema.columns).map { PostgresTableDefinition.quote($0.name) }
        let keyNames = schema.primaryKey.map { PostgresTableDefinition.quote($0.name) }
        let onConflict =
            schema.columns.isEmpty
            ? "DO NOTHING"
            : "DO UPDATE SET "
                + schema.columns.map { PostgresTableDefinition.quote($0.name) }.map { "\($0) = excluded.\($0)" }
                .joined(separator: ", ")
        let perRow = definition.allTypes.reduce(0) { $0 + $1.parameterCount }
        let step = Self.rowsPerStatement(perRow)
        var start = 0
        while start < rows.count {
            let end = min(start + step, rows.count)
            var statement = PostgresStatement()
            var tuples: [String] = []
            for (key, values) in rows[start..<end] {
                var cells: [String] = []
                for (value, type) in zip(key + values, definition.allTypes) {
                    cells.append(try statement.value(value, as: type))
                }
                tuples.append("(" + cells.joined(separator: ", ") + ")")
            }
            try run(
                statement,
                """
                INSERT INTO \(definition.qualifiedName) (\(names.joined(separator: ", "))) \
                VALUES \(tuples.joined(separator: ", ")) ON CONFLICT (\(keyNames.joined(separator: ", "))) \(onConflict)
                """)
            start = end
        }
    }

    private func flushRecords() throws {
        if !pendingRecords.isEmpty {
            let records = pendingRecords
            pendingRecords.removeAll()
            let step = Self.rowsPerStatement(36)
            var start = 0
            while start < records.count {
                let end = min(start + step, records.count)
                var statement = PostgresStatement()
                var tuples: [String] = []
                for record in records[start..<end] {
                    tuples.append(try PostgresConflictRow.bind(record, into: &statement))
                }
                try run(
                    statement,
                    """
                    WITH inserted AS (
                        INSERT INTO kotasync.conflicts (\(PostgresConflictRow.insertColumns))
                        VALUES \(tuples.joined(separator: ", ")) RETURNING id
                    )
                    SELECT setval(pg_get_serial_sequence('kotasync.conflicts', 'id'), (SELECT max(id) FROM inserted))
                    """)
                start = end
            }
        }
        if !pendingSupersede.isEmpty {
            var statement = PostgresStatement()
            let ids = statement.bind(pendingSupersede)
            pendingSupersede.removeAll()
            try run(statement, "UPDATE kotasync.conflicts SET status = 'superseded' WHERE id = ANY(\(ids))")
        }
        if !pendingRepoints.isEmpty {
            let repoints = pendingRepoints.sorted { $0.key < $1.key }
            pendingRepoints.removeAll()
            let step = Self.rowsPerStatement(9)
            var start = 0
            while start < repoints.count {
                let end = min(start + step, repoints.count)
                var statement = PostgresStatement()
                var tuples: [String] = []
                for (id, r) in repoints[start..<end] {
                    let cells = [
                        statement.bind(id), statement.bind(r.kind.rawValue), statement.bind(r.writer),
                        statement.bind(r.stamp), try statement.value(r.value ?? .null, as: .value),
                        statement.bind(r.value != nil),
                    ]
                    tuples.append("(" + cells.joined(separator: ", ") + ")")
                }
                try run(
                    statement,
                    """
                    UPDATE kotasync.conflicts AS c SET kind = v.kind, winner_writer = v.writer, winner_stamp = v.stamp, \
                    winner_value = v.value, winner_has_value = v.has_value \
                    FROM (VALUES \(tuples.joined(separator: ", "))) AS v(id, kind, writer, stamp, value, has_value) \
                    WHERE c.id = v.id
                    """)
                start = end
            }
        }
    }

    private func flushHeads() throws {
        guard !pendingHeads.isEmpty else { return }
        // One entry per row and statement: PostgreSQL's upsert may not touch a row twice.
        var last: [RowID: Int] = [:]
        for (i, head) in pendingHeads.enumerated() {
            last[RowID(table: head.table, pk: PrimaryKeyCoding.encode(head.key))] = i
        }
        let heads = last.values.sorted().map { pendingHeads[$0] }
        pendingHeads.removeAll()
        let step = Self.rowsPerStatement(11)
        var start = 0
        while start < heads.count {
            let end = min(start + step, heads.count)
            var statement = PostgresStatement()
            var tuples: [String] = []
            for head in heads[start..<end] {
                let cells = [
                    statement.bind(head.table),
                    statement.bind(PostgresStatement.bytes(PrimaryKeyCoding.encode(head.key))),
                    statement.bind(Int64(bitPattern: head.version)), statement.bind(head.deleted),
                    statement.bind(Int32(clamping: head.openConflicts)),
                    statement.bind(PostgresStatement.bytes(head.clocks)), try statement.value(head.scope, as: .value),
                    statement.bind(head.goneFor),
                ]
                tuples.append("(" + cells.joined(separator: ", ") + ")")
            }
            try run(
                statement,
                """
                INSERT INTO kotasync.rows (tbl, pk, version, deleted, open_conflicts, clocks, scope, gone_for) \
                VALUES \(tuples.joined(separator: ", ")) \
                ON CONFLICT (tbl, pk) DO UPDATE SET version = excluded.version, deleted = excluded.deleted, \
                open_conflicts = excluded.open_conflicts, clocks = excluded.clocks, scope = excluded.scope, \
                gone_for = excluded.gone_for
                """)
            start = end
        }
    }

    private func flushHistory() throws {
        guard !pendingHistory.isEmpty else { return }
        var last: [RowID: Int] = [:]
        for (i, entry) in pendingHistory.enumerated() {
            last[RowID(table: entry.table, pk: PrimaryKeyCoding.encode(entry.key), version: entry.version)] = i
        }
        let entries = last.values.sorted().map { pendingHistory[$0] }
        pendingHistory.removeAll()
        if !historyKnown.isEmpty {
            // Written now: what the rows read ahead hold from here on (entries come in version
            // order, and a written entry of the same row and version is replaced).
            for entry in entries {
                let row = RowID(table: entry.table, pk: PrimaryKeyCoding.encode(entry.key))
                guard var known = historyKnown[row], entry.version > known.after else { continue }
                known.entries.removeAll { $0.version == entry.version }
                known.entries.append((entry.version, entry.old))
                historyKnown[row] = known
            }
        }
        let step = Self.rowsPerStatement(8)
        var start = 0
        while start < entries.count {
            let end = min(start + step, entries.count)
            var statement = PostgresStatement()
            var tuples: [String] = []
            for entry in entries[start..<end] {
                let cells = [
                    statement.bind(entry.table),
                    statement.bind(PostgresStatement.bytes(PrimaryKeyCoding.encode(entry.key))),
                    statement.bind(Int64(bitPattern: entry.version)), statement.bind(entry.writer),
                    statement.bind(Int64(bitPattern: entry.stamp.rawValue)),
                    statement.bind(Int16(entry.operation.rawValue)),
                    statement.bind(PostgresStatement.bytes(HistoryCoding.encode(entry.old))),
                    statement.bind(entry.clamped),
                ]
                tuples.append("(" + cells.joined(separator: ", ") + ")")
            }
            try run(
                statement,
                """
                INSERT INTO kotasync.history (tbl, pk, version, writer, stamp, op, old, clamped) \
                VALUES \(tuples.joined(separator: ", ")) \
                ON CONFLICT (tbl, pk, version) DO UPDATE SET writer = excluded.writer, stamp = excluded.stamp, \
                op = excluded.op, old = excluded.old, clamped = excluded.clamped
                """)
            start = end
        }
    }

    // MARK: - Rows, read set-based

    /// Records that keep a row's later changes waiting.
    static let blocking = "c.kind IN ('unique', 'foreign_key', 'queued') AND c.status IN ('open', 'held')"
    /// Records that are heads that lost: the merge engine's input.
    static let standing =
        "c.status IN ('open', 'auto') AND c.kind IN ('update_update', 'insert_insert', 'delete_update') AND c.policy <> 'additive'"

    private func conflicts(_ statement: PostgresStatement, where clause: String, order: Bool = true) throws
        -> [StoredConflict]
    {
        try run(
            statement,
            "SELECT \(PostgresConflictRow.columns()) FROM kotasync.conflicts c WHERE \(clause)\(order ? " ORDER BY c.id" : "")"
        ).map { try PostgresConflictRow.decode($0.makeRandomAccess()) }
    }

    func rows(of table: TableSchema, keys: [[SQLValue]], blocking: Bool) throws -> [RowState] {
        try flushRows(only: table.name)
        try flushRecords()
        try flushHeads()
        var states = [RowState](repeating: RowState(head: nil, values: nil, standing: []), count: keys.count)
        var start = 0
        while start < keys.count {
            let end = min(start + Self.chunk, keys.count)
            try read(table, keys: keys, range: start..<end, blocking: blocking, into: &states)
            start = end
        }
        return states
    }

    /// Reads keys `range` of `keys` into `states`: one statement for the heads, one for the
    /// values, one for the standing records of the keys that have some, one for blocking records.
    private func read(
        _ table: TableSchema, keys: [[SQLValue]], range: Range<Int>, blocking: Bool, into states: inout [RowState]
    ) throws {
        let definition = try definition(table)
        let pks = range.map { PrimaryKeyCoding.encode(keys[$0]) }
        var position: [[UInt8]: [Int]] = [:]
        for (i, pk) in zip(range, pks) { position[pk, default: []].append(i) }

        // The bookkeeping heads.
        var heads = PostgresStatement()
        let name = heads.bind(table.name)
        let list = heads.bind(pks.map(PostgresStatement.bytes))
        var withRecords: [[UInt8]] = []
        for row in try run(
            heads,
            """
            SELECT pk, version, deleted, open_conflicts::bigint, clocks, \
            \(PostgresColumnType.value.select("scope").joined(separator: ", ")), gone_for
            FROM kotasync.rows WHERE tbl = \(name) AND pk = ANY(\(list))
            """)
        {
            let cells = row.makeRandomAccess()
            let pk = try Self.bytes(cells[0])
            let head = StoredHead(
                version: UInt64(bitPattern: try cells[1].decode(Int64.self)), deleted: try cells[2].decode(Bool.self),
                openConflicts: try cells[3].decode(Int64.self), clocks: try Self.bytes(cells[4]),
                scope: try PostgresColumnType.value.decode(cells, at: 5), goneFor: try cells[9].decode(String?.self))
            if head.openConflicts > 0 { withRecords.append(pk) }
            for i in position[pk] ?? [] { states[i].head = head }
        }

        // The current values, matched to the keys asked for by position, each key typed as its
        // column is.
        var values = PostgresStatement()
        var tuples: [String] = []
        for i in range {
            var cells = [values.bind(Int64(i))]
            for (value, type) in zip(keys[i], definition.keyTypes) { cells.append(try values.value(value, as: type)) }
            tuples.append("(" + cells.joined(separator: ", ") + ")")
        }
        let keyNames = table.primaryKey.map { PostgresTableDefinition.quote($0.name) }
        let aliases = keyNames.indices.map { "k\($0)" }
        let join = zip(keyNames, aliases).map { "t.\($0) = k.\($1)" }.joined(separator: " AND ")
        let selected =
            table.columns.isEmpty
            ? "1"
            : zip(table.columns, definition.columnTypes).flatMap { column, type in
                type.select("t.\(PostgresTableDefinition.quote(column.name))")
            }.joined(separator: ", ")
        for row in try run(
            values,
            """
            SELECT k.i, \(selected) FROM (VALUES \(tuples.joined(separator: ", "))) AS k(i, \(aliases.joined(separator: ", ")))
            JOIN \(definition.qualifiedName) AS t ON \(join)
            """)
        {
            let cells = row.makeRandomAccess()
            let i = Int(try cells[0].decode(Int64.self))
            var read: [SQLValue] = []
            var next = 1
            for type in definition.columnTypes {
                read.append(try type.decode(cells, at: next))
                next += type.selectCount
            }
            states[i].values = read
        }

        if !withRecords.isEmpty {
            var standing = PostgresStatement()
            let name = standing.bind(table.name)
            let list = standing.bind(withRecords.map(PostgresStatement.bytes))
            for record in try conflicts(standing, where: "c.tbl = \(name) AND c.pk = ANY(\(list)) AND \(Self.standing)")
            {
                for i in position[PrimaryKeyCoding.encode(record.key)] ?? [] { states[i].standing.append(record) }
            }
        }
        if additiveTables.contains(table.name) {
            try readAdditive(table, pks: pks)
        }
        if blocking {
            // The held records waiting for these rows: a write of a row releases them.
            var statement = PostgresStatement()
            let name = statement.bind(table.name)
            let list = statement.bind(pks.map(PostgresStatement.bytes))
            for pk in pks { waitingKnown[RowID(table: table.name, pk: pk)] = [] }
            for record in try conflicts(
                statement, where: "c.related_tbl = \(name) AND c.related_pk = ANY(\(list)) AND c.status = 'held'")
            {
                guard let related = record.related else { continue }
                waitingKnown[RowID(table: related.table, pk: PrimaryKeyCoding.encode(related.primaryKey)), default: []]
                    .append(record)
            }
        }
        if blocking {
            var statement = PostgresStatement()
            let name = statement.bind(table.name)
            let list = statement.bind(pks.map(PostgresStatement.bytes))
            for record in try conflicts(
                statement, where: "c.tbl = \(name) AND c.pk = ANY(\(list)) AND \(Self.blocking)")
            {
                for i in position[PrimaryKeyCoding.encode(record.key)] ?? [] where states[i].firstBlocking == nil {
                    states[i].firstBlocking = record
                }
            }
        }
    }

    func keys(of table: TableSchema, where columns: [String], equal values: [SQLValue]) throws -> [[SQLValue]] {
        try flushRows(only: table.name)
        let definition = try definition(table)
        var statement = PostgresStatement()
        var terms: [String] = []
        for (column, value) in zip(columns, values) {
            guard let c = table.columns.firstIndex(where: { $0.name == column }) else {
                guard let k = table.primaryKey.firstIndex(where: { $0.name == column }) else { return [] }
                terms.append(
                    "\(PostgresTableDefinition.quote(column)) = \(try statement.value(value, as: definition.keyTypes[k]))"
                )
                continue
            }
            // SQL `=`: NULL matches nothing.
            guard value != .null else { return [] }
            terms.append(
                "\(PostgresTableDefinition.quote(column)) = \(try statement.value(value, as: definition.columnTypes[c]))"
            )
        }
        let selected = zip(table.primaryKey, definition.keyTypes).flatMap { column, type in
            type.select(PostgresTableDefinition.quote(column.name))
        }
        return try run(
            statement,
            "SELECT \(selected.joined(separator: ", ")) FROM \(definition.qualifiedName) WHERE \(terms.joined(separator: " AND "))"
        ).map { row in try Self.key(row.makeRandomAccess(), definition) }
    }

    private static func key(_ cells: PostgresRandomAccessRow, _ definition: PostgresTableDefinition, at first: Int = 0)
        throws -> [SQLValue]
    {
        var key: [SQLValue] = []
        var next = first
        for type in definition.keyTypes {
            key.append(try type.decode(cells, at: next))
            next += type.selectCount
        }
        return key
    }

    // MARK: - Rows, written

    func writeRow(_ table: TableSchema, key: [SQLValue], values: [SQLValue]) throws -> RowWriteOutcome {
        let definition = try definition(table)
        // PostgreSQL would abort the transaction on these: refuse them before the write.
        for (column, value) in zip(table.columns, values) where column.notNull && value == .null {
            throw MergeStoreConstraintViolation(message: "NOT NULL constraint failed: \(table.name).\(column.name)")
        }
        // PostgreSQL holds no CHECK constraint: SQLite judges the row as the SQLite master would.
        try checks.check(table, key: key, values: values)
        // The values must bind now, not at the flush: a refusal names this row.
        _ = try definition.bindRow(key: key, values: values)
        if !definition.uniqueIndexes.isEmpty {
            if let collision = try uniqueCollisions(of: table, rows: [(key, values)])[0] {
                return .uniqueViolation(
                    with: collision.key, column: collision.column,
                    message:
                        "UNIQUE constraint failed: \(collision.index.map { "\(table.name).\($0)" }.joined(separator: ", "))"
                )
            }
        }
        let pk = PrimaryKeyCoding.encode(key)
        if !definition.uniqueIndexes.isEmpty { notePending(table, definition, pk: pk, key: key, values: values) }
        pendingRows[table.name, default: PendingRows()].set(pk, key: key, values: values)
        return .written
    }

    func uniqueCollisions(of table: TableSchema, rows: [(key: [SQLValue], values: [SQLValue])]) throws
        -> [UniqueCollision?]
    {
        let definition = try definition(table)
        guard !definition.uniqueIndexes.isEmpty, !rows.isEmpty else { return Array(repeating: nil, count: rows.count) }
        if let found = try collisions(of: table, definition, rows: rows) { return found }
        // A row the master holds would move off the values a row takes: written first, so that
        // no statement passes through two rows holding the same values.
        try flushRows(only: table.name)
        return try collisions(of: table, definition, rows: rows)!
    }

    /// ``uniqueCollisions(of:rows:)`` against what the table holds and the row writes buffered
    /// for it; nil when a row it holds, whose values a row would take, has a buffered write.
    private func collisions(
        of table: TableSchema, _ definition: PostgresTableDefinition, rows: [(key: [SQLValue], values: [SQLValue])]
    ) throws -> [UniqueCollision?]? {
        var found = [UniqueCollision?](repeating: nil, count: rows.count)
        let pending = pendingRows[table.name]
        for (n, index) in definition.uniqueIndexes.enumerated() {
            guard let parts = Self.indexParts(index, of: table, definition, rows: rows) else { continue }
            // Rows already found colliding keep their first index; a NULL never collides.
            let candidates = rows.indices.filter { i in found[i] == nil && !parts.contains { $0.value(i) == .null } }
            guard !candidates.isEmpty else { continue }
            let holders = try self.holders(of: table, definition, index: n, parts: parts, rows: candidates)
            let column = index.first { name in table.columns.contains { $0.name == name } }
            for i in candidates {
                // (The row itself holds its own values: no collision.)
                guard let other = holders[i] ?? nil, other != rows[i].key else { continue }
                // What the table holds of a row with a buffered write is not what it will hold.
                if pending?.writes[PrimaryKeyCoding.encode(other)] != nil { return nil }
                found[i] = UniqueCollision(key: other, index: index, column: column)
            }
            // The buffered rows, by their index values.
            guard let pending, let holders = pendingHolders[table.name]?[n] else { continue }
            let types = definition.types(of: index, in: table)
            for i in candidates where found[i] == nil {
                guard let tuple = Self.indexTuple(parts.map { $0.value(i) }, types), let pk = holders[tuple],
                    let write = pending.writes[pk], write.values != nil, write.key != rows[i].key
                else { continue }
                found[i] = UniqueCollision(key: write.key, index: index, column: column)
            }
        }
        return found
    }

    /// The columns of UNIQUE index `index` as types and value readers of `rows`; nil when the
    /// index names a column the table does not have.
    private static func indexParts(
        _ index: [String], of table: TableSchema, _ definition: PostgresTableDefinition,
        rows: [(key: [SQLValue], values: [SQLValue])]
    ) -> [(type: PostgresColumnType, value: (Int) -> SQLValue)]? {
        let parts: [(type: PostgresColumnType, value: (Int) -> SQLValue)] = index.compactMap { name in
            if let k = table.primaryKey.firstIndex(where: { $0.name == name }) {
                return (definition.keyTypes[k], { rows[$0].key[k] })
            }
            if let c = table.columns.firstIndex(where: { $0.name == name }) {
                return (definition.columnTypes[c], { rows[$0].values[c] })
            }
            return nil
        }
        return parts.count == index.count ? parts : nil
    }

    /// For each of `candidates` (positions in the rows `parts` reads), the row the table holds
    /// with its values of UNIQUE index `n`, or nil: from ``holdersKnown``, the rest read in one
    /// statement (and remembered).
    private func holders(
        of table: TableSchema, _ definition: PostgresTableDefinition, index n: Int,
        parts: [(type: PostgresColumnType, value: (Int) -> SQLValue)], rows candidates: [Int]
    ) throws -> [Int: [SQLValue]?] {
        let index = definition.uniqueIndexes[n]
        var out: [Int: [SQLValue]?] = [:]
        var ask: [Int] = []
        var tuples: [Int: [UInt8]] = [:]
        for i in candidates {
            let tuple = PrimaryKeyCoding.encode(parts.map { $0.type.affinity.stored($0.value(i)) })
            tuples[i] = tuple
            if let known = holdersKnown[table.name]?[n]?[tuple] { out[i] = known } else { ask.append(i) }
        }
        guard !ask.isEmpty else { return out }
        var statement = PostgresStatement()
        var rows: [String] = []
        for i in ask {
            var cells = [statement.bind(Int64(i))]
            for part in parts { cells.append(try statement.value(part.value(i), as: part.type)) }
            rows.append("(" + cells.joined(separator: ", ") + ")")
        }
        let aliases = index.indices.map { "u\($0)" }
        let join = zip(index, aliases).map { "t.\(PostgresTableDefinition.quote($0)) = r.\($1)" }
            .joined(separator: " AND ")
        let selectedKey = zip(table.primaryKey, definition.keyTypes).flatMap { column, type in
            type.select("t.\(PostgresTableDefinition.quote(column.name))")
        }
        for i in ask { out[i] = .some(nil) }
        for row in try run(
            statement,
            """
            SELECT r.i, \(selectedKey.joined(separator: ", ")) \
            FROM (VALUES \(rows.joined(separator: ", "))) AS r(i, \(aliases.joined(separator: ", "))) \
            JOIN \(definition.qualifiedName) AS t ON \(join)
            """)
        {
            let cells = row.makeRandomAccess()
            out[Int(try cells[0].decode(Int64.self))] = .some(try Self.key(cells, definition, at: 1))
        }
        for i in ask { holdersKnown[table.name, default: [:]][n, default: [:]][tuples[i]!] = out[i]! }
        return out
    }

    var readsAhead: Bool { true }

    func expectWrites(of table: TableSchema, rows: [(key: [SQLValue], values: [SQLValue])]) throws {
        guard let definition = definitions[table.name], !definition.uniqueIndexes.isEmpty, !rows.isEmpty else {
            return
        }
        // What the table holds once its buffered rows are written: the hint is read against it.
        try flushRows(only: table.name)
        for (n, index) in definition.uniqueIndexes.enumerated() {
            guard let parts = Self.indexParts(index, of: table, definition, rows: rows) else { continue }
            let candidates = rows.indices.filter { i in !parts.contains { $0.value(i) == .null } }
            var start = 0
            while start < candidates.count {
                let end = min(start + Self.chunk, candidates.count)
                _ = try holders(of: table, definition, index: n, parts: parts, rows: Array(candidates[start..<end]))
                start = end
            }
        }
    }

    func deleteRow(_ table: TableSchema, key: [SQLValue]) throws {
        let definition = try definition(table)
        let pk = PrimaryKeyCoding.encode(key)
        if !definition.uniqueIndexes.isEmpty { notePending(table, definition, pk: pk, key: key, values: nil) }
        pendingRows[table.name, default: PendingRows()].set(pk, key: key, values: nil)
    }

    /// Keeps ``pendingHolders`` in step with a buffered write of row `pk` (nil values: a delete).
    private func notePending(
        _ table: TableSchema, _ definition: PostgresTableDefinition, pk: [UInt8], key: [SQLValue],
        values: [SQLValue]?
    ) {
        let before = pendingRows[table.name]?.writes[pk]?.values
        for (n, index) in definition.uniqueIndexes.enumerated() {
            if let before,
                let old = Self.indexTuple(
                    Self.indexValues(index, of: table, key: key, values: before), definition.types(of: index, in: table)
                ),
                pendingHolders[table.name]?[n]?[old] == pk
            {
                pendingHolders[table.name]?[n]?[old] = nil
            }
            if let values,
                let new = Self.indexTuple(
                    Self.indexValues(index, of: table, key: key, values: values), definition.types(of: index, in: table)
                )
            {
                pendingHolders[table.name, default: [:]][n, default: [:]][new] = pk
            }
        }
    }

    /// A row's values of UNIQUE index `index`.
    private static func indexValues(_ index: [String], of table: TableSchema, key: [SQLValue], values: [SQLValue])
        -> [SQLValue]
    {
        index.map { name in
            if let k = table.primaryKey.firstIndex(where: { $0.name == name }) { return key[k] }
            if let c = table.columns.firstIndex(where: { $0.name == name }) { return values[c] }
            return .null
        }
    }

    /// Index values as PostgreSQL's UNIQUE index tells them apart, as bytes: each as its column
    /// keeps it, a real zero without its sign (0.0 = -0.0), text byte for byte; nil when one is
    /// NULL (NULLs never collide).
    private static func indexTuple(_ values: [SQLValue], _ types: [PostgresColumnType]) -> [UInt8]? {
        var stored: [SQLValue] = []
        for (value, type) in zip(values, types) {
            var value = type.affinity.stored(value)
            switch value {
            case .null: return nil
            case .real(let r) where r == 0: value = .real(0)
            case .real(let r) where type == .numeric && r.rounded() == r && abs(r) < 9.2e18: value = .integer(Int64(r))
            default: break
            }
            stored.append(value)
        }
        return PrimaryKeyCoding.encode(stored)
    }

    // MARK: - Bookkeeping of rows

    func writeHead(_ head: HeadWrite) throws {
        pendingHeads.append(head)
    }

    func moveVersion(of table: TableSchema, key: [SQLValue], to version: UInt64) throws {
        try flushHeads()
        var statement = PostgresStatement()
        let sql = """
            UPDATE kotasync.rows SET version = \(statement.bind(Int64(bitPattern: version))) \
            WHERE tbl = \(statement.bind(table.name)) AND pk = \(statement.bind(PostgresStatement.bytes(PrimaryKeyCoding.encode(key))))
            """
        try run(statement, sql)
    }

    func appendHistory(_ entry: HistoryEntry) throws {
        pendingHistory.append(entry)
    }

    func valuesAtLastDeletion(of table: TableSchema, key: [SQLValue]) throws -> [(Int, SQLValue)]? {
        // Buffered entries are newer than every written one.
        let pk = PrimaryKeyCoding.encode(key)
        if let entry = pendingHistory.last(where: {
            $0.operation == .delete && $0.table == table.name && PrimaryKeyCoding.encode($0.key) == pk
        }) {
            return entry.old
        }
        var statement = PostgresStatement()
        let sql = """
            SELECT old FROM kotasync.history WHERE tbl = \(statement.bind(table.name)) \
            AND pk = \(statement.bind(PostgresStatement.bytes(pk))) AND op = 3 ORDER BY version DESC LIMIT 1
            """
        guard let row = try run(statement, sql).first else { return nil }
        return try HistoryCoding.decode(Self.bytes(row.makeRandomAccess()[0]))
    }

    func firstReplaced(of table: TableSchema, key: [SQLValue], column: Int, after version: UInt64) throws -> SQLValue? {
        let pk = PrimaryKeyCoding.encode(key)
        if let known = historyKnown[RowID(table: table.name, pk: pk)], known.after <= version {
            for entry in known.entries where entry.version > version {
                if let value = entry.old.first(where: { $0.0 == column })?.1 { return value }
            }
            return pendingReplaced(table, pk: pk, column: column, after: version)
        }
        var statement = PostgresStatement()
        let sql = """
            SELECT old FROM kotasync.history WHERE tbl = \(statement.bind(table.name)) \
            AND pk = \(statement.bind(PostgresStatement.bytes(pk))) AND version > \(statement.bind(Int64(bitPattern: version))) \
            ORDER BY version
            """
        for row in try run(statement, sql) {
            if let hit = try HistoryCoding.decode(Self.bytes(row.makeRandomAccess()[0])).first(where: { $0.0 == column }
            ) {
                return hit.1
            }
        }
        return pendingReplaced(table, pk: pk, column: column, after: version)
    }

    /// ``firstReplaced(of:key:column:after:)`` among the buffered entries, which are newer than
    /// every written one, and in version order.
    private func pendingReplaced(_ table: TableSchema, pk: [UInt8], column: Int, after version: UInt64) -> SQLValue? {
        for entry in pendingHistory
        where entry.version > version && entry.table == table.name && PrimaryKeyCoding.encode(entry.key) == pk {
            if let value = entry.old.first(where: { $0.0 == column })?.1 { return value }
        }
        return nil
    }

    func expectHistoryReads(of table: TableSchema, keys: [(key: [SQLValue], after: UInt64)]) throws {
        guard !keys.isEmpty else { return }
        // One window's per table: what an earlier window read of the table is not asked for again.
        historyKnown = historyKnown.filter { $0.key.table != table.name }
        // Every entry is written before the read, so the read and the buffer together are the history.
        try flushHistory()
        var after: [[UInt8]: UInt64] = [:]
        for (key, version) in keys {
            let pk = PrimaryKeyCoding.encode(key)
            after[pk] = min(after[pk] ?? version, version)
        }
        let asked = Array(after)
        var start = 0
        while start < asked.count {
            let end = min(start + Self.chunk, asked.count)
            var statement = PostgresStatement()
            let name = statement.bind(table.name)
            let pks = statement.bind(asked[start..<end].map { PostgresStatement.bytes($0.key) })
            let versions = statement.bind(asked[start..<end].map { Int64(bitPattern: $0.value) })
            for (pk, version) in asked[start..<end] {
                historyKnown[RowID(table: table.name, pk: pk)] = KnownHistory(after: version)
            }
            for row in try run(
                statement,
                """
                SELECT h.pk, h.version, h.old FROM unnest(\(pks)::bytea[], \(versions)::bigint[]) AS k(pk, base) \
                JOIN kotasync.history h ON h.tbl = \(name) AND h.pk = k.pk AND h.version > k.base \
                ORDER BY h.pk, h.version
                """)
            {
                let cells = row.makeRandomAccess()
                let id = RowID(table: table.name, pk: try Self.bytes(cells[0]))
                historyKnown[id]?.entries.append(
                    (
                        UInt64(bitPattern: try cells[1].decode(Int64.self)),
                        try HistoryCoding.decode(Self.bytes(cells[2]))
                    ))
            }
            start = end
        }
    }

    // MARK: - Additive columns

    func additiveWrite(of table: TableSchema, key: [SQLValue], column: String, writer: Int64) throws -> (
        version: UInt64, value: SQLValue
    )? {
        let pk = PrimaryKeyCoding.encode(key)
        let id = AdditiveID(table: table.name, pk: pk, column: column, writer: writer)
        if let pending = pendingAdditive[id] { return (pending.version, pending.value) }
        if let known = additiveKnown[RowID(table: table.name, pk: pk)] {
            return known[id].map { ($0.version, $0.value) }
        }
        var statement = PostgresStatement()
        let sql = """
            SELECT version, \(PostgresColumnType.value.select("value").joined(separator: ", ")) FROM kotasync.additive \
            WHERE tbl = \(statement.bind(table.name)) AND pk = \(statement.bind(PostgresStatement.bytes(PrimaryKeyCoding.encode(key)))) \
            AND col = \(statement.bind(column)) AND writer = \(statement.bind(writer))
            """
        guard let row = try run(statement, sql).first else { return nil }
        let cells = row.makeRandomAccess()
        return (UInt64(bitPattern: try cells[0].decode(Int64.self)), try PostgresColumnType.value.decode(cells, at: 1))
    }

    func rememberAdditive(
        of table: TableSchema, key: [SQLValue], column: String, writer: Int64, version: UInt64, value: SQLValue
    ) throws {
        let pk = PrimaryKeyCoding.encode(key)
        let id = AdditiveID(table: table.name, pk: pk, column: column, writer: writer)
        // Bound now: a value the column cannot keep is refused with this row.
        var check = PostgresBindings()
        try PostgresColumnType.value.bind(value, to: &check)
        let entry = AdditiveEntry(version: version, value: value)
        pendingAdditive[id] = entry
        additiveKnown[RowID(table: table.name, pk: pk)]?[id] = entry
    }

    /// Reads every additive entry of the rows `pks` of `table` into ``additiveKnown``.
    private func readAdditive(_ table: TableSchema, pks: [[UInt8]]) throws {
        try flushAdditive()
        var statement = PostgresStatement()
        let name = statement.bind(table.name)
        let list = statement.bind(pks.map(PostgresStatement.bytes))
        for pk in pks { additiveKnown[RowID(table: table.name, pk: pk)] = [:] }
        for row in try run(
            statement,
            """
            SELECT pk, col, writer, version, \(PostgresColumnType.value.select("value").joined(separator: ", "))
            FROM kotasync.additive WHERE tbl = \(name) AND pk = ANY(\(list))
            """)
        {
            let cells = row.makeRandomAccess()
            let pk = try Self.bytes(cells[0])
            let id = AdditiveID(
                table: table.name, pk: pk, column: try cells[1].decode(String.self),
                writer: try cells[2].decode(Int64.self))
            additiveKnown[RowID(table: table.name, pk: pk), default: [:]][id] = AdditiveEntry(
                version: UInt64(bitPattern: try cells[3].decode(Int64.self)),
                value: try PostgresColumnType.value.decode(cells, at: 4))
        }
    }

    // MARK: - Conflict records

    func anyBlockingRecord() throws -> Bool {
        try flushRecords()
        let rows = try run(
            PostgresStatement(), "SELECT EXISTS (SELECT 1 FROM kotasync.conflicts c WHERE \(Self.blocking))")
        return try rows.first?.decode(Bool.self) ?? false
    }

    func insertRecord(_ record: StoredConflict) throws -> Int64 {
        let id: Int64
        if let next = nextRecordID {
            id = next
        } else {
            try flushRecords()
            let rows = try run(PostgresStatement(), "SELECT coalesce(max(id), 0) FROM kotasync.conflicts")
            id = (try rows.first?.decode(Int64.self) ?? 0) + 1
        }
        nextRecordID = id + 1
        var record = record
        record.id = id
        pendingRecords.append(record)
        if record.status == .held, let related = record.related {
            let row = RowID(table: related.table, pk: PrimaryKeyCoding.encode(related.primaryKey))
            waitingKnown[row]?.append(record)
        }
        return id
    }

    /// Drops record `id` from the records known to wait (it no longer stands as it was).
    private func forgetWaiting(_ id: Int64) {
        guard !waitingKnown.isEmpty else { return }
        for (row, records) in waitingKnown where records.contains(where: { $0.id == id }) {
            waitingKnown[row] = records.filter { $0.id != id }
        }
    }

    func record(_ id: Int64) throws -> StoredConflict? {
        try flushRecords()
        var statement = PostgresStatement()
        let clause = "c.id = \(statement.bind(id))"
        return try conflicts(statement, where: clause, order: false).first
    }

    func supersedeRecord(_ id: Int64) throws {
        pendingSupersede.append(id)
        forgetWaiting(id)
    }

    func repointRecord(_ id: Int64, kind: ConflictReport.Kind, winner: Head, winnerValue: SQLValue?) throws {
        // Bound now: a value that cannot be kept is refused with this row, not at the flush.
        var check = PostgresBindings()
        try PostgresColumnType.value.bind(winnerValue ?? .null, to: &check)
        pendingRepoints[id] = Repoint(
            kind: kind, writer: winner.writer.number, stamp: Int64(bitPattern: winner.stamp.rawValue),
            value: winnerValue)
    }

    func closeRecord(_ id: Int64, resolution: Resolution) throws {
        waitingKnown.removeAll()
        try flushRecords()
        var statement = PostgresStatement()
        let text = String(decoding: try ProtocolJSON.encoder().encode(resolution), as: UTF8.self)
        let sql =
            "UPDATE kotasync.conflicts SET status = 'resolved', resolution = \(statement.bind(text)) WHERE id = \(statement.bind(id))"
        try run(statement, sql)
    }

    func reopenRecord(_ id: Int64, reason: String) throws {
        waitingKnown.removeAll()
        try flushRecords()
        var statement = PostgresStatement()
        let sql = """
            UPDATE kotasync.conflicts SET status = 'open', resolution = NULL, reason = \(statement.bind(reason)) \
            WHERE id = \(statement.bind(id))
            """
        try run(statement, sql)
    }

    func recordsWaiting(for row: RowReference) throws -> [StoredConflict] {
        if let known = waitingKnown[RowID(table: row.table, pk: PrimaryKeyCoding.encode(row.primaryKey))] {
            return known
        }
        try flushRecords()
        var statement = PostgresStatement()
        let clause = """
            c.related_tbl = \(statement.bind(row.table)) \
            AND c.related_pk = \(statement.bind(PostgresStatement.bytes(PrimaryKeyCoding.encode(row.primaryKey)))) \
            AND c.status = 'held'
            """
        return try conflicts(statement, where: clause)
    }

    func blockingRecords(of table: TableSchema, key: [SQLValue]) throws -> [StoredConflict] {
        try flushRecords()
        var statement = PostgresStatement()
        let clause = """
            \(Self.blocking) AND c.tbl = \(statement.bind(table.name)) \
            AND c.pk = \(statement.bind(PostgresStatement.bytes(PrimaryKeyCoding.encode(key))))
            """
        return try conflicts(statement, where: clause)
    }

    func referringRecords(to row: RowReference, in table: String, status: [ConflictReport.Status]) throws
        -> [StoredConflict]
    {
        try flushRecords()
        var statement = PostgresStatement()
        let clause = """
            c.related_tbl = \(statement.bind(row.table)) \
            AND c.related_pk = \(statement.bind(PostgresStatement.bytes(PrimaryKeyCoding.encode(row.primaryKey)))) \
            AND c.tbl = \(statement.bind(table)) AND c.kind = 'foreign_key' \
            AND c.status = ANY(\(statement.bind(status.map(\.rawValue))))
            """
        return try conflicts(statement, where: clause)
    }

    func rewriteHeld(_ id: Int64, held: String, related: RowReference, status: ConflictReport.Status) throws {
        waitingKnown.removeAll()
        try flushRecords()
        var statement = PostgresStatement()
        let sql = """
            UPDATE kotasync.conflicts SET held = \(statement.bind(held)), related_tbl = \(statement.bind(related.table)), \
            related_pk = \(statement.bind(PostgresStatement.bytes(PrimaryKeyCoding.encode(related.primaryKey)))), \
            status = \(statement.bind(status.rawValue)) WHERE id = \(statement.bind(id))
            """
        try run(statement, sql)
    }

    func reopenReferrers(of row: RowReference, reason: String) throws {
        waitingKnown.removeAll()
        try flushRecords()
        var statement = PostgresStatement()
        let sql = """
            UPDATE kotasync.conflicts SET status = 'open', reason = \(statement.bind(reason)) \
            WHERE related_tbl = \(statement.bind(row.table)) \
            AND related_pk = \(statement.bind(PostgresStatement.bytes(PrimaryKeyCoding.encode(row.primaryKey)))) \
            AND status = 'held' AND kind = 'foreign_key'
            """
        try run(statement, sql)
    }

    // MARK: - Writers

    func opd(ofWriter writer: Int64) -> String { describe(writer) }
}

extension PostgresTableDefinition {
    /// The types of the columns `names` (key or not), in that order.
    fileprivate func types(of names: [String], in table: TableSchema) -> [PostgresColumnType] {
        names.map { name in
            if let k = table.primaryKey.firstIndex(where: { $0.name == name }) { return keyTypes[k] }
            if let c = table.columns.firstIndex(where: { $0.name == name }) { return columnTypes[c] }
            return .value
        }
    }
}
