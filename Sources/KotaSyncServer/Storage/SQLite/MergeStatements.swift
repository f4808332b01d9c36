import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite

/// The merge's port (``MergeStore``) on the SQLite master, inside the GRDB write transaction the
/// store opened: a group commit's transaction (or a push's savepoint in it), or a reviewer's
/// decision.
///
/// Set-based reads: ``rows(of:keys:blocking:)`` reads the bookkeeping heads, current values,
/// standing records and blocking records of up to ``chunk`` keys with one statement each.
/// Buffered writes: history entries, bookkeeping heads, new conflict records and their
/// supersessions and re-pointings are buffered and written out, one row per statement step
/// (``flush()``), before anything reads those tables or writes them otherwise, before a
/// savepoint starts or ends, and when the merge ends. New records take their ids from a counter read once (SQLite's own choice for an
/// `INTEGER PRIMARY KEY`: the largest plus one), so a buffered record's id is known at once.
///
/// Per-row statements are taken from the connection's statement cache once per merge
/// (`db.cachedStatement(sql:)` hashes the SQL text on every call) and run through the C API
/// (`Statement.run`, `forEachRow`) rather than GRDB's `Row` and `StatementArguments`, which box
/// every value. Every SQLite constraint error a write meets leaves as a
/// ``MergeStoreConstraintViolation``; a UNIQUE collision with another row as
/// ``RowWriteOutcome/uniqueViolation(with:column:message:)``.
final class SQLiteMergeStore: MergeStore {
    /// Keys per set-based read.
    static let chunk = 500

    private let db: Database
    private let sql: [String: TableSQL]
    private let uniqueIndexes: [String: [[String]]]
    private let describe: (Int64) -> String
    private var tables: [String: TableStatements] = [:]

    private let history: Statement
    private let writeHeadStatement: Statement
    private let insertRecordStatement: Statement
    private let supersede: Statement
    private let repoint: Statement

    // Buffered writes, in the order they were made (each table's own order is kept; the tables
    // do not depend on each other).
    private var pendingRecords: [StoredConflict] = []
    private var pendingRecordUpdates: [RecordUpdate] = []
    private var pendingHeads: [HeadWrite] = []
    private var pendingHistory: [HistoryEntry] = []
    private var nextRecordID: Int64?

    private enum RecordUpdate {
        case supersede(Int64)
        case repoint(Int64, kind: ConflictReport.Kind, winner: Head, value: SQLValue?)
    }

    init(
        db: Database, statements: [String: TableSQL], uniqueIndexes: [String: [[String]]],
        describe: @escaping (Int64) -> String
    ) throws {
        self.db = db
        sql = statements
        self.uniqueIndexes = uniqueIndexes
        self.describe = describe
        // An upsert, not INSERT OR REPLACE: an existing entry is updated in place instead of
        // being deleted and inserted again (in the table and in its version index).
        writeHeadStatement = try db.cachedStatement(sql: Self.writeHeadSQL)
        history = try db.cachedStatement(sql: Self.historySQL)
        insertRecordStatement = try db.cachedStatement(sql: Self.insertRecordSQL)
        supersede = try db.cachedStatement(sql: "UPDATE _ks_conflicts SET status = 'superseded' WHERE id = ?")
        repoint = try db.cachedStatement(
            sql: """
                UPDATE _ks_conflicts SET kind = ?, winner_writer = ?, winner_stamp = ?, winner_value = ?,
                    winner_has_value = ? WHERE id = ?
                """)
    }

    // MARK: - SQL

    private static let writeHeadSQL = """
        INSERT INTO _ks_rows(tbl, pk, version, deleted, open_conflicts, clocks, scope, gone_for)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (tbl, pk) DO UPDATE SET version = excluded.version, deleted = excluded.deleted,
            open_conflicts = excluded.open_conflicts, clocks = excluded.clocks, scope = excluded.scope,
            gone_for = excluded.gone_for
        """

    private static let historySQL = """
        INSERT OR REPLACE INTO _ks_history(tbl, pk, version, writer, stamp, op, old, clamped)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        """

    private static let insertRecordSQL = """
        INSERT INTO _ks_conflicts(id, tbl, pk, col, kind, policy, status, base_version, base_value, has_base,
            winner_writer, winner_stamp, winner_value, winner_has_value, loser_writer, loser_stamp,
            loser_version, loser_insert, loser_value, loser_has_value, changeset, decided_at, loser_delete,
            reason, held, related_tbl, related_pk)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """

    /// The columns of `_ks_conflicts` a ``StoredConflict`` is read from, in the order
    /// ``conflict(_:)`` reads them.
    static let recordColumns = """
        id, tbl, pk, col, kind, policy, status, base_version, has_base, base_value, winner_writer, winner_stamp,
        winner_has_value, winner_value, loser_writer, loser_stamp, loser_version, loser_insert, loser_delete,
        loser_has_value, loser_value, changeset, decided_at, reason, held, related_tbl, related_pk, resolution
        """

    /// Records that keep a row's later changes waiting.
    static let blocking = "kind IN ('unique', 'foreign_key', 'queued') AND status IN ('open', 'held')"
    /// Records that are heads that lost: the merge engine's input.
    static let standing =
        "status IN ('open', 'auto') AND kind IN ('update_update', 'insert_insert', 'delete_update') AND policy <> 'additive'"

    private static func conflict(_ r: ColumnReader) throws -> StoredConflict {
        func text(_ i: Int32) -> String? { r.isNull(i) ? nil : r.text(i) }
        func value(_ flag: Int32) -> SQLValue? { r.int64(flag) == 1 ? r.value(flag + 1) : nil }
        var related: RowReference?
        if let table = text(25), !r.isNull(26) {
            related = RowReference(table: table, primaryKey: try PrimaryKeyCoding.decode(r.bytes(26)))
        }
        return StoredConflict(
            id: r.int64(0), table: r.text(1), key: try PrimaryKeyCoding.decode(r.bytes(2)), column: text(3),
            kind: ConflictReport.Kind(rawValue: r.text(4)) ?? .updateUpdate, policy: r.text(5),
            status: ConflictReport.Status(rawValue: r.text(6)) ?? .superseded,
            baseVersion: UInt64(bitPattern: r.int64(7)), base: value(8), winnerWriter: r.int64(10),
            winnerStamp: HLC(rawValue: UInt64(bitPattern: r.int64(11))), winnerValue: value(12),
            loserWriter: r.int64(14), loserStamp: HLC(rawValue: UInt64(bitPattern: r.int64(15))),
            loserVersion: UInt64(bitPattern: r.int64(16)), loserInsert: r.int64(17) != 0,
            loserDelete: r.int64(18) != 0, loserValue: value(19), changeset: UUID(bytes: r.bytes(21)),
            decidedAt: r.text(22), reason: text(23), held: text(24), related: related, resolution: text(27))
    }

    private func conflicts(_ sql: String, _ values: [SQLValue]) throws -> [StoredConflict] {
        var out: [StoredConflict] = []
        try db.cachedStatement(sql: sql).forEachRow(values) { r in
            out.append(try Self.conflict(r))
            return true
        }
        return out
    }

    private func statements(for table: TableSchema) throws -> TableStatements {
        if let statements = tables[table.name] { return statements }
        guard let sql = sql[table.name] else {
            throw SyncError(.internalError, "Table \(table.name) has no statements on this master.")
        }
        let statements = try TableStatements(sql, db: db)
        tables[table.name] = statements
        return statements
    }

    /// Runs a write, turning SQLite's constraint errors into the port's.
    private func constrained<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
            throw MergeStoreConstraintViolation(message: error.message ?? "constraint failed")
        }
    }

    // MARK: - Versions and transactions

    func latestVersion() throws -> UInt64 {
        try flush()
        return try UInt64.fetchOne(db, sql: "SELECT max(version) FROM _ks_rows") ?? 0
    }

    func inSavepoint(_ body: () throws -> Void) throws {
        try flush()
        let nextID = nextRecordID
        do {
            try constrained {
                try db.inSavepoint {
                    try body()
                    try flush()
                    return .commit
                }
            }
        } catch {
            // Rolled back: what it buffered never happened.
            pendingRecords.removeAll()
            pendingRecordUpdates.removeAll()
            pendingHeads.removeAll()
            pendingHistory.removeAll()
            nextRecordID = nextID
            throw error
        }
    }

    func flush() throws {
        try constrained {
            try flushRecords()
            for update in pendingRecordUpdates {
                switch update {
                case .supersede(let id):
                    try supersede.run { p in p.bind(id) }
                case .repoint(let id, let kind, let winner, let value):
                    try repoint.run { p in
                        p.bind(.text(kind.rawValue))
                        p.bind(winner.writer.number)
                        p.bind(Int64(bitPattern: winner.stamp.rawValue))
                        p.bind(value ?? .null)
                        p.bind(value == nil ? 0 : 1)
                        p.bind(id)
                    }
                }
            }
            pendingRecordUpdates.removeAll(keepingCapacity: true)
            try flushHeads()
            try flushHistory()
        }
    }

    /// Writes `items`, one statement step per item. Not multi-row statements: SQLite runs a
    /// statement that writes several rows in a statement transaction of its own, copying every
    /// page the statement touches to a sub-journal first (a temporary file, once it passes
    /// 64 KiB) so that a failure halfway can be undone; one row a step needs none, and a
    /// step through the C API costs little.
    private func write<T>(_ items: [T], single: Statement, bind: (inout StatementParameters, T) -> Void) throws {
        for item in items { try single.run { p in bind(&p, item) } }
    }

    private func flushRecords() throws {
        try write(pendingRecords, single: insertRecordStatement) { p, r in
            p.bind(r.id)
            p.bind(.text(r.table))
            p.bind(blob: PrimaryKeyCoding.encode(r.key))
            p.bind(r.column.map(SQLValue.text) ?? .null)
            p.bind(.text(r.kind.rawValue))
            p.bind(.text(r.policy))
            p.bind(.text(r.status.rawValue))
            p.bind(Int64(r.baseVersion))
            p.bind(r.base ?? .null)
            p.bind(r.base == nil ? 0 : 1)
            p.bind(r.winnerWriter)
            p.bind(Int64(bitPattern: r.winnerStamp.rawValue))
            p.bind(r.winnerValue ?? .null)
            p.bind(r.winnerValue == nil ? 0 : 1)
            p.bind(r.loserWriter)
            p.bind(Int64(bitPattern: r.loserStamp.rawValue))
            p.bind(Int64(r.loserVersion))
            p.bind(r.loserInsert ? 1 : 0)
            p.bind(r.loserValue ?? .null)
            p.bind(r.loserValue == nil ? 0 : 1)
            p.bind(blob: r.changeset.bytes)
            p.bind(.text(r.decidedAt))
            p.bind(r.loserDelete ? 1 : 0)
            p.bind(r.reason.map(SQLValue.text) ?? .null)
            p.bind(r.held.map(SQLValue.text) ?? .null)
            p.bind(r.related.map { SQLValue.text($0.table) } ?? .null)
            p.bind(r.related.map { SQLValue.blob(PrimaryKeyCoding.encode($0.primaryKey)) } ?? .null)
        }
        pendingRecords.removeAll(keepingCapacity: true)
    }

    private func flushHeads() throws {
        try write(pendingHeads, single: writeHeadStatement) { p, head in
            p.bind(.text(head.table))
            p.bind(blob: PrimaryKeyCoding.encode(head.key))
            p.bind(Int64(head.version))
            p.bind(head.deleted ? 1 : 0)
            p.bind(Int64(head.openConflicts))
            p.bind(blob: head.clocks)
            p.bind(head.scope)
            p.bind(head.goneFor.map(SQLValue.text) ?? .null)
        }
        pendingHeads.removeAll(keepingCapacity: true)
    }

    private func flushHistory() throws {
        try write(pendingHistory, single: history) { p, entry in
            p.bind(.text(entry.table))
            p.bind(blob: PrimaryKeyCoding.encode(entry.key))
            p.bind(Int64(entry.version))
            p.bind(entry.writer)
            p.bind(Int64(bitPattern: entry.stamp.rawValue))
            p.bind(Int64(entry.operation.rawValue))
            p.bind(blob: HistoryCoding.encode(entry.old))
            p.bind(entry.clamped ? 1 : 0)
        }
        pendingHistory.removeAll(keepingCapacity: true)
    }

    // MARK: - Rows, read set-based

    func rows(of table: TableSchema, keys: [[SQLValue]], blocking: Bool) throws -> [RowState] {
        try flush()
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
        let pks = range.map { PrimaryKeyCoding.encode(keys[$0]) }
        var position: [[UInt8]: [Int]] = [:]
        for (i, pk) in zip(range, pks) { position[pk, default: []].append(i) }
        let list = Array(repeating: "?", count: pks.count).joined(separator: ", ")
        let pkValues = [SQLValue.text(table.name)] + pks.map(SQLValue.blob)

        // The bookkeeping heads.
        var withRecords: [[UInt8]] = []
        try db.cachedStatement(
            sql: """
                SELECT pk, version, deleted, open_conflicts, clocks, scope, gone_for FROM _ks_rows
                WHERE tbl = ? AND pk IN (\(list))
                """
        ).forEachRow(pkValues) { r in
            let pk = r.bytes(0)
            let head = StoredHead(
                version: UInt64(bitPattern: r.int64(1)), deleted: r.int64(2) != 0, openConflicts: r.int64(3),
                clocks: r.bytes(4), scope: r.value(5), goneFor: r.isNull(6) ? nil : r.text(6))
            if head.openConflicts > 0 { withRecords.append(pk) }
            for i in position[pk] ?? [] { states[i].head = head }
            return true
        }

        // The current values, matched to the keys asked for by position: the table compares a
        // key with its column's affinity, as a single read by key would.
        let keyNames = table.primaryKey.map { SQL.quote($0.name) }
        let keyAliases = table.primaryKey.indices.map { "k\($0)" }
        let row = Array(repeating: "?", count: table.primaryKey.count + 1).joined(separator: ", ")
        let selected =
            table.columns.isEmpty ? "1" : table.columns.map { "t.\(SQL.quote($0.name))" }.joined(separator: ", ")
        let join = zip(keyNames, keyAliases).map { "t.\($0) = k.\($1)" }.joined(separator: " AND ")
        var keyValues: [SQLValue] = []
        keyValues.reserveCapacity(range.count * (table.primaryKey.count + 1))
        for i in range {
            keyValues.append(.integer(Int64(i)))
            keyValues.append(contentsOf: keys[i])
        }
        try db.cachedStatement(
            sql: """
                WITH k(i, \(keyAliases.joined(separator: ", "))) AS (VALUES \(Array(repeating: "(\(row))", count: range.count).joined(separator: ", ")))
                SELECT k.i, \(selected) FROM k CROSS JOIN \(SQL.quote(table.name)) AS t ON \(join)
                """
        ).forEachRow(keyValues) { r in
            let i = Int(r.int64(0))
            states[i].values = table.columns.isEmpty ? [] : (1...Int32(table.columns.count)).map { r.value($0) }
            return true
        }

        if !withRecords.isEmpty {
            let list = Array(repeating: "?", count: withRecords.count).joined(separator: ", ")
            for record in try conflicts(
                """
                SELECT \(Self.recordColumns) FROM _ks_conflicts
                WHERE tbl = ? AND pk IN (\(list)) AND \(Self.standing)
                """, [.text(table.name)] + withRecords.map(SQLValue.blob))
            {
                for i in position[PrimaryKeyCoding.encode(record.key)] ?? [] { states[i].standing.append(record) }
            }
        }
        if blocking {
            for record in try conflicts(
                """
                SELECT \(Self.recordColumns) FROM _ks_conflicts
                WHERE tbl = ? AND pk IN (\(list)) AND \(Self.blocking) ORDER BY id
                """, pkValues)
            {
                for i in position[PrimaryKeyCoding.encode(record.key)] ?? [] where states[i].firstBlocking == nil {
                    states[i].firstBlocking = record
                }
            }
        }
    }

    func keys(of table: TableSchema, where columns: [String], equal values: [SQLValue]) throws -> [[SQLValue]] {
        let predicate = columns.map { "\(SQL.quote($0)) = ?" }.joined(separator: " AND ")
        let keys = table.primaryKey.map { SQL.quote($0.name) }.joined(separator: ", ")
        var out: [[SQLValue]] = []
        try db.makeStatement(sql: "SELECT \(keys) FROM \(SQL.quote(table.name)) WHERE \(predicate)")
            .forEachRow(values) { r in
                out.append(r.values)
                return true
            }
        return out
    }

    // MARK: - Rows, written

    func writeRow(_ table: TableSchema, key: [SQLValue], values: [SQLValue]) throws -> RowWriteOutcome {
        do {
            try statements(for: table).upsert(key: key, values: values)
            return .written
        } catch let error as DatabaseError
            where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE
            || (error.resultCode == .SQLITE_CONSTRAINT && (error.message ?? "").contains("UNIQUE"))
        {
            let message = error.message ?? "UNIQUE constraint failed"
            if let collision = try uniqueCollisions(of: table, rows: [(key, values)])[0] {
                return .uniqueViolation(with: collision.key, column: collision.column, message: message)
            }
            // The constraint is not one we can attribute to a row.
            throw MergeStoreConstraintViolation(message: message)
        } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
            throw MergeStoreConstraintViolation(message: error.message ?? "constraint failed")
        }
    }

    func uniqueCollisions(of table: TableSchema, rows: [(key: [SQLValue], values: [SQLValue])]) throws
        -> [UniqueCollision?]
    {
        let indexes = uniqueIndexes[table.name] ?? []
        let keys = table.primaryKey.map { SQL.quote($0.name) }.joined(separator: ", ")
        let lookups = try indexes.map { index in
            let predicate = index.map { "\(SQL.quote($0)) IS ?" }.joined(separator: " AND ")
            return try db.cachedStatement(
                sql: "SELECT \(keys) FROM \(SQL.quote(table.name)) WHERE \(predicate) LIMIT 1")
        }
        return try rows.map { row in
            var named: [String: SQLValue] = [:]
            for (column, value) in zip(table.primaryKey, row.key) { named[column.name] = value }
            for (column, value) in zip(table.columns, row.values) { named[column.name] = value }
            for (index, lookup) in zip(indexes, lookups) {
                // (The row itself holds its own values: no collision.)
                guard let other = try lookup.firstRow(index.map { named[$0] ?? .null }), other != row.key else {
                    continue
                }
                let column = index.first { name in table.columns.contains { $0.name == name } }
                return UniqueCollision(key: other, index: index, column: column)
            }
            return nil
        }
    }

    func deleteRow(_ table: TableSchema, key: [SQLValue]) throws {
        try constrained { try statements(for: table).delete(key: key) }
    }

    // MARK: - Bookkeeping of rows

    func writeHead(_ head: HeadWrite) throws {
        pendingHeads.append(head)
    }

    func moveVersion(of table: TableSchema, key: [SQLValue], to version: UInt64) throws {
        try flush()
        try constrained {
            try db.cachedStatement(sql: "UPDATE _ks_rows SET version = ? WHERE tbl = ? AND pk = ?").run([
                .integer(Int64(version)), .text(table.name), .blob(PrimaryKeyCoding.encode(key)),
            ])
        }
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
        guard
            let old = try db.cachedStatement(
                sql: "SELECT old FROM _ks_history WHERE tbl = ? AND pk = ? AND op = 3 ORDER BY version DESC LIMIT 1"
            ).firstRow([.text(table.name), .blob(pk)])?.first
        else { return nil }
        guard case .blob(let bytes) = old else { return [] }
        return try HistoryCoding.decode(bytes)
    }

    func firstReplaced(of table: TableSchema, key: [SQLValue], column: Int, after version: UInt64) throws -> SQLValue? {
        var hit: SQLValue?
        try db.cachedStatement(
            sql: "SELECT old FROM _ks_history WHERE tbl = ? AND pk = ? AND version > ? ORDER BY version"
        ).forEachRow(
            binding: { p in
                p.bind(.text(table.name))
                p.bind(blob: PrimaryKeyCoding.encode(key))
                p.bind(Int64(version))
            },
            { row in
                hit = try HistoryCoding.decode(row.bytes(0)).first { $0.0 == column }?.1
                return hit == nil
            })
        if let hit { return hit }
        // Buffered entries are newer than every written one, and in version order.
        let pk = PrimaryKeyCoding.encode(key)
        for entry in pendingHistory
        where entry.version > version && entry.table == table.name && PrimaryKeyCoding.encode(entry.key) == pk {
            if let value = entry.old.first(where: { $0.0 == column })?.1 { return value }
        }
        return nil
    }

    // MARK: - Additive columns

    func additiveWrite(of table: TableSchema, key: [SQLValue], column: String, writer: Int64) throws -> (
        version: UInt64, value: SQLValue
    )? {
        try db.cachedStatement(
            sql: "SELECT version, value FROM _ks_additive WHERE tbl = ? AND pk = ? AND col = ? AND writer = ?"
        ).firstRow([.text(table.name), .blob(PrimaryKeyCoding.encode(key)), .text(column), .integer(writer)]).map {
            row in
            guard case .integer(let version) = row[0] else { return (0, row[1]) }
            return (UInt64(bitPattern: version), row[1])
        }
    }

    func rememberAdditive(
        of table: TableSchema, key: [SQLValue], column: String, writer: Int64, version: UInt64, value: SQLValue
    ) throws {
        try constrained {
            try db.cachedStatement(
                sql:
                    "INSERT OR REPLACE INTO _ks_additive(tbl, pk, col, writer, version, value) VALUES (?, ?, ?, ?, ?, ?)"
            ).run([
                .text(table.name), .blob(PrimaryKeyCoding.encode(key)), .text(column), .integer(writer),
                .integer(Int64(version)), value,
            ])
        }
    }

    // MARK: - Conflict records

    func anyBlockingRecord() throws -> Bool {
        try flush()
        return try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM _ks_conflicts WHERE \(Self.blocking))")
            ?? false
    }

    func insertRecord(_ record: StoredConflict) throws -> Int64 {
        let id: Int64
        if let next = nextRecordID {
            id = next
        } else {
            try flush()
            id = (try Int64.fetchOne(db, sql: "SELECT max(id) FROM _ks_conflicts") ?? 0) + 1
        }
        nextRecordID = id + 1
        var record = record
        record.id = id
        pendingRecords.append(record)
        return id
    }

    func record(_ id: Int64) throws -> StoredConflict? {
        try flush()
        return try conflicts("SELECT \(Self.recordColumns) FROM _ks_conflicts WHERE id = ?", [.integer(id)]).first
    }

    func supersedeRecord(_ id: Int64) throws {
        pendingRecordUpdates.append(.supersede(id))
    }

    func repointRecord(_ id: Int64, kind: ConflictReport.Kind, winner: Head, winnerValue: SQLValue?) throws {
        pendingRecordUpdates.append(.repoint(id, kind: kind, winner: winner, value: winnerValue))
    }

    func closeRecord(_ id: Int64, resolution: Resolution) throws {
        try flush()
        try constrained {
            try db.execute(
                sql: "UPDATE _ks_conflicts SET status = 'resolved', resolution = ? WHERE id = ?",
                arguments: [String(decoding: try ProtocolJSON.encoder().encode(resolution), as: UTF8.self), id])
        }
    }

    func reopenRecord(_ id: Int64, reason: String) throws {
        try flush()
        try constrained {
            try db.execute(
                sql: "UPDATE _ks_conflicts SET status = 'open', resolution = NULL, reason = ? WHERE id = ?",
                arguments: [reason, id])
        }
    }

    func recordsWaiting(for row: RowReference) throws -> [StoredConflict] {
        try flush()
        return try conflicts(
            """
            SELECT \(Self.recordColumns) FROM _ks_conflicts
            WHERE related_tbl = ? AND related_pk = ? AND status = 'held' ORDER BY id
            """, [.text(row.table), .blob(PrimaryKeyCoding.encode(row.primaryKey))])
    }

    func blockingRecords(of table: TableSchema, key: [SQLValue]) throws -> [StoredConflict] {
        try flush()
        return try conflicts(
            """
            SELECT \(Self.recordColumns) FROM _ks_conflicts WHERE \(Self.blocking) AND tbl = ? AND pk = ? ORDER BY id
            """, [.text(table.name), .blob(PrimaryKeyCoding.encode(key))])
    }

    func referringRecords(to row: RowReference, in table: String, status: [ConflictReport.Status]) throws
        -> [StoredConflict]
    {
        try flush()
        let list = Array(repeating: "?", count: status.count).joined(separator: ", ")
        return try conflicts(
            """
            SELECT \(Self.recordColumns) FROM _ks_conflicts WHERE related_tbl = ? AND related_pk = ? AND tbl = ?
                AND kind = 'foreign_key' AND status IN (\(list)) ORDER BY id
            """,
            [.text(row.table), .blob(PrimaryKeyCoding.encode(row.primaryKey)), .text(table)]
                + status.map { .text($0.rawValue) })
    }

    func rewriteHeld(_ id: Int64, held: String, related: RowReference, status: ConflictReport.Status) throws {
        try flush()
        try constrained {
            try db.execute(
                sql: "UPDATE _ks_conflicts SET held = ?, related_tbl = ?, related_pk = ?, status = ? WHERE id = ?",
                arguments: [
                    held, related.table, Data(PrimaryKeyCoding.encode(related.primaryKey)), status.rawValue, id,
                ])
        }
    }

    func reopenReferrers(of row: RowReference, reason: String) throws {
        try flush()
        try constrained {
            try db.execute(
                sql: """
                    UPDATE _ks_conflicts SET status = 'open', reason = ?
                    WHERE related_tbl = ? AND related_pk = ? AND status = 'held' AND kind = 'foreign_key'
                    """, arguments: [reason, row.table, Data(PrimaryKeyCoding.encode(row.primaryKey))])
        }
    }

    // MARK: - Writers

    func opd(ofWriter writer: Int64) -> String { describe(writer) }
}
