import GRDB
import KotaSyncCore
import KotaSyncSQLite

/// The replica's change log: SQLite triggers that record every local write, and the rules that
/// turn the log into the rows of a push.
///
/// The triggers use only built-in SQL, so a write by any program — the OPD's own app, the
/// sqlite3 shell, a Python script — is captured. Each write appends one entry to `_ks_log`:
/// the table, the operation, the key, a bitmask of the changed columns (updates) and the wall
/// clock at capture. Writes made while `_ks_applying` has a row (our own application of pulled
/// changes, inside its transaction) are not captured.
package enum ChangeLog {
    /// Log operations. (Op 0 marks the last acknowledged sequence number; it is not a change.)
    package enum Op: Int64, Sendable {
        case insert = 1
        case update = 2
        case delete = 3
    }

    /// One entry of `_ks_log`.
    package struct Entry: Sendable, Equatable {
        package var sequence: Int64
        package var table: String
        package var op: Op
        package var mask: Int64
        package var capturedAt: Int64
        package var key: [SQLValue]

        package init(sequence: Int64, table: String, op: Op, mask: Int64, capturedAt: Int64, key: [SQLValue]) {
            self.sequence = sequence
            self.table = table
            self.op = op
            self.mask = mask
            self.capturedAt = capturedAt
            self.key = key
        }
    }

    /// Everything the log says about one row since the last acknowledged push.
    package struct PendingRow: Sendable, Equatable {
        package var table: String
        package var key: [SQLValue]
        /// The first logged operation was an insert.
        package var startsWithInsert: Bool
        /// An insert or a delete happened: the row as a whole is the replica's.
        package var replacedWhole: Bool
        /// Columns updated (bit i: column i of the table's non-key columns).
        package var mask: Int64
        package var lastSequence: Int64
        package var lastCapturedAt: Int64
    }

    /// Folds log entries (in sequence order) into one pending row per key, ordered by each row's
    /// last entry.
    package static func coalesce(_ entries: [Entry]) -> [PendingRow] {
        var rows: [RowKey: PendingRow] = [:]
        for e in entries {
            let k = RowKey(table: e.table, key: e.key)
            if var row = rows[k] {
                row.replacedWhole = row.replacedWhole || e.op != .update
                row.mask |= e.mask
                row.lastSequence = e.sequence
                row.lastCapturedAt = max(row.lastCapturedAt, e.capturedAt)
                rows[k] = row
            } else {
                rows[k] = PendingRow(
                    table: e.table, key: e.key, startsWithInsert: e.op == .insert, replacedWhole: e.op != .update,
                    mask: e.mask, lastSequence: e.sequence, lastCapturedAt: e.capturedAt)
            }
        }
        return rows.values.sorted { $0.lastSequence < $1.lastSequence }
    }

    /// The order of tables in a push: each table after the tables its foreign keys refer to, and
    /// otherwise in `tables`' order (the schema's). Where tables refer to each other in a circle,
    /// the first of them in schema order goes first; a reference of a table to itself is ignored.
    ///
    /// - Parameters:
    ///   - tables: the replicated tables, in schema order.
    ///   - parents: each table's referenced tables.
    /// - Returns: each table's rank; a lower rank is sent first.
    package static func pushRanks(tables: [String], parents: [String: [String]]) -> [String: Int] {
        var ranks: [String: Int] = [:]
        var waiting = tables
        while !waiting.isEmpty {
            let ready = waiting.firstIndex { table in
                (parents[table] ?? []).allSatisfy { $0 == table || !waiting.contains($0) }
            }
            // When nothing is ready, tables refer to each other in a circle: the first of them goes.
            let next = waiting.remove(
                at: ready ?? waiting.firstIndex { refersBack(to: $0, parents: parents, among: waiting) } ?? 0)
            ranks[next] = ranks.count
        }
        return ranks
    }

    /// Whether following `table`'s references through the `waiting` tables leads back to it.
    private static func refersBack(to table: String, parents: [String: [String]], among waiting: [String]) -> Bool {
        var next = (parents[table] ?? []).filter { $0 != table }
        var seen: Set<String> = []
        while let t = next.popLast() {
            if t == table { return true }
            guard waiting.contains(t), seen.insert(t).inserted else { continue }
            next += parents[t] ?? []
        }
        return false
    }

    /// Puts a push's rows in order: grouped by table in `ranks` order (parents before children, so
    /// a child created with its parent is not held waiting for it), and within a table in order of
    /// each row's last log entry. Grouping also puts alike rows side by side, which zlib
    /// compresses better than rows of alternating tables.
    ///
    /// - Parameter place: a row's table and the sequence number of its last log entry.
    package static func pushOrder<Row>(
        _ rows: [Row], ranks: [String: Int], by place: (Row) -> (table: String, lastSequence: Int64)
    ) -> [Row] {
        // Each row's rank is looked up once, not in every comparison.
        rows.map { row in
            let (table, lastSequence) = place(row)
            return (rank: ranks[table] ?? Int.max, lastSequence: lastSequence, row: row)
        }
        .sorted { ($0.rank, $0.lastSequence) < ($1.rank, $1.lastSequence) }
        .map(\.row)
    }

    /// What a pending row becomes in a push.
    package enum Outcome: Equatable {
        /// Send every column.
        case upsert
        /// Send the masked columns.
        case update
        case delete
        /// Nothing to send: a row created and deleted again before the server saw it.
        case nothing
    }

    /// Decides a pending row's push operation from whether the row exists locally now and whether
    /// the server is known to have it.
    package static func outcome(of row: PendingRow, existsNow: Bool, serverHasRow: Bool) -> Outcome {
        if existsNow {
            if row.replacedWhole || !serverHasRow { return .upsert }
            return row.mask == 0 ? .nothing : .update
        }
        if serverHasRow || !row.startsWithInsert { return .delete }
        return .nothing
    }

    /// The columns set in `mask`.
    package static func columns(in mask: Int64, count: Int) -> [Int] {
        (0..<count).filter { mask & (1 << Int64($0)) != 0 }
    }

    // MARK: - SQL

    /// Removes the entries up to `sequence` (acknowledged, or cancelled out) and leaves the marker
    /// that keeps later sequence numbers above it.
    static func truncate(_ db: Database, through sequence: Int64) throws {
        try db.execute(sql: "DELETE FROM _ks_log WHERE seq <= ?", arguments: [sequence])
        try db.execute(
            sql: "INSERT OR IGNORE INTO _ks_log (seq, tbl, op, mask, at) VALUES (?, '', 0, 0, 0)", arguments: [sequence]
        )
    }

    /// The wall clock in Unix milliseconds, in built-in SQL.
    static let nowSQL = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"

    /// The bookkeeping tables of a replica.
    static let tableStatements = [
        "CREATE TABLE IF NOT EXISTS _ks_state (key TEXT PRIMARY KEY, value) WITHOUT ROWID",
        // `seq` is the rowid, so capture is one append. Sequence numbers must never be reused
        // (the server orders a replica's changesets by them); AUTOINCREMENT would guarantee that
        // at the price of a second write per capture, so instead an acknowledgement leaves a
        // marker entry (op 0) at the last acknowledged number, which keeps the next rowid above it.
        """
        CREATE TABLE IF NOT EXISTS _ks_log (
            seq INTEGER PRIMARY KEY, tbl TEXT NOT NULL, op INTEGER NOT NULL,
            mask INTEGER NOT NULL, at INTEGER NOT NULL, k0, k1, k2, k3
        )
        """,
        "CREATE TABLE IF NOT EXISTS _ks_applying (x)",
        """
        CREATE TABLE IF NOT EXISTS _ks_rows (
            tbl TEXT NOT NULL, pk BLOB NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (tbl, pk)
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE IF NOT EXISTS _ks_colbase (
            tbl TEXT NOT NULL, pk BLOB NOT NULL, col TEXT NOT NULL, base INTEGER NOT NULL,
            PRIMARY KEY (tbl, pk, col)
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE IF NOT EXISTS _ks_outbox (
            id TEXT PRIMARY KEY, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, rows INTEGER NOT NULL,
            body BLOB NOT NULL, created_at TEXT NOT NULL
        )
        """,
        "CREATE TABLE IF NOT EXISTS _ks_conflicts (id INTEGER PRIMARY KEY, report TEXT NOT NULL)",
        displacedStatement,
        rejectedStatement,
    ]

    /// Rows the server refused for this device (out of scope, read-only table).
    static let rejectedStatement = """
        CREATE TABLE IF NOT EXISTS _ks_rejected (
            tbl TEXT NOT NULL, pk BLOB NOT NULL, code TEXT NOT NULL, message TEXT NOT NULL, action TEXT NOT NULL,
            rejected_at TEXT NOT NULL, PRIMARY KEY (tbl, pk)
        ) WITHOUT ROWID
        """

    /// Local rows removed because a pulled row took their place on a UNIQUE column (kept as JSON).
    static let displacedStatement = """
        CREATE TABLE IF NOT EXISTS _ks_displaced (
            tbl TEXT NOT NULL, pk BLOB NOT NULL, row TEXT NOT NULL, displaced_at TEXT NOT NULL, PRIMARY KEY (tbl, pk)
        ) WITHOUT ROWID
        """

    /// The capture triggers of one table.
    static func triggerStatements(for table: TableSchema) -> [String] {
        let t = SQL.quote(table.name)
        let name = SQL.literal(table.name)
        let keySlots = (0..<table.primaryKey.count).map { "k\($0)" }.joined(separator: ", ")
        func keys(_ row: String) -> String {
            table.primaryKey.map { "\(row).\(SQL.quote($0.name))" }.joined(separator: ", ")
        }
        func changed(_ column: String) -> String {
            let c = SQL.quote(column)
            return "(OLD.\(c) IS NOT NEW.\(c) COLLATE BINARY OR typeof(OLD.\(c)) <> typeof(NEW.\(c)))"
        }
        let keyChanged = table.primaryKey.map { changed($0.name) }.joined(separator: " OR ")
        let mask =
            table.columns.isEmpty
            ? "0"
            : table.columns.enumerated().map { i, c in
                "(CASE WHEN \(changed(c.name)) THEN \(Int64(1) << Int64(i)) ELSE 0 END)"
            }
            .joined(separator: " | ")
        let when = "WHEN NOT EXISTS (SELECT 1 FROM _ks_applying)"
        let insertInto = "INSERT INTO _ks_log (tbl, op, mask, at, \(keySlots))"
        return [
            """
            CREATE TRIGGER IF NOT EXISTS \(SQL.quote("_ks_capture_\(table.name)_insert")) AFTER INSERT ON \(t) \(when)
            BEGIN
              \(insertInto) VALUES (\(name), 1, 0, \(nowSQL), \(keys("NEW")));
            END
            """,
            """
            CREATE TRIGGER IF NOT EXISTS \(SQL.quote("_ks_capture_\(table.name)_delete")) AFTER DELETE ON \(t) \(when)
            BEGIN
              \(insertInto) VALUES (\(name), 3, 0, \(nowSQL), \(keys("OLD")));
            END
            """,
            // A changed key is the old row deleted and a new row inserted.
            """
            CREATE TRIGGER IF NOT EXISTS \(SQL.quote("_ks_capture_\(table.name)_update")) AFTER UPDATE ON \(t) \(when)
            BEGIN
              \(insertInto) SELECT \(name), 3, 0, \(nowSQL), \(keys("OLD")) WHERE \(keyChanged);
              \(insertInto) SELECT \(name), 1, 0, \(nowSQL), \(keys("NEW")) WHERE \(keyChanged);
              \(insertInto) SELECT \(name), 2, m, \(nowSQL), \(keys("NEW"))
                FROM (SELECT \(mask) AS m) WHERE m <> 0 AND NOT (\(keyChanged));
            END
            """,
        ]
    }
}

/// A row's identity: its table and key.
package struct RowKey: Hashable, Sendable {
    package var table: String
    package var key: [SQLValue]

    package init(table: String, key: [SQLValue]) {
        self.table = table
        self.key = key
    }
}
