import GRDB

/// The master database's own bookkeeping tables, beside the replicated tables.
///
/// Value columns (`winner_value`, ...) are declared without a type so SQLite stores every value
/// in its original storage class.
enum MasterSchema {
    static let statements = [
        "CREATE TABLE IF NOT EXISTS _ks_server (key TEXT PRIMARY KEY, value) WITHOUT ROWID",
        rowsTable(named: "_ks_rows"),
        // Every prior value: for each change, the values it replaced. `clamped` marks a change
        // whose device stamp was too far ahead and was replaced by the server's bound.
        """
        CREATE TABLE IF NOT EXISTS _ks_history (
            tbl TEXT NOT NULL, pk BLOB NOT NULL, version INTEGER NOT NULL, writer INTEGER NOT NULL,
            stamp INTEGER NOT NULL, op INTEGER NOT NULL, old BLOB NOT NULL, clamped INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (tbl, pk, version)
        ) WITHOUT ROWID
        """,
        // The overview's changes per day read a window of stamps with the writer, from this
        // index alone (see `SQLiteMasterStore.changesPerDay`).
        "CREATE INDEX IF NOT EXISTS _ks_history_stamp ON _ks_history(stamp, writer)",
        """
        CREATE TABLE IF NOT EXISTS _ks_replicas (
            number INTEGER PRIMARY KEY, uuid BLOB NOT NULL UNIQUE, opd TEXT NOT NULL,
            last_sequence INTEGER NOT NULL DEFAULT 0, first_seen_at TEXT NOT NULL, last_push_at TEXT
        )
        """,
        """
        CREATE TABLE IF NOT EXISTS _ks_changesets (
            id BLOB PRIMARY KEY, replica INTEGER NOT NULL, first_sequence INTEGER NOT NULL,
            last_sequence INTEGER NOT NULL, rows INTEGER NOT NULL, received_at TEXT NOT NULL, reply BLOB NOT NULL
        ) WITHOUT ROWID
        """,
        // The overview counts each device's changesets; without it, once per replica over all.
        "CREATE INDEX IF NOT EXISTS _ks_changesets_replica ON _ks_changesets(replica, rows)",
        """
        CREATE TABLE IF NOT EXISTS _ks_conflicts (
            id INTEGER PRIMARY KEY, tbl TEXT NOT NULL, pk BLOB NOT NULL, col TEXT, kind TEXT NOT NULL,
            policy TEXT NOT NULL, status TEXT NOT NULL, base_version INTEGER NOT NULL, base_value, has_base INTEGER NOT NULL,
            winner_writer INTEGER NOT NULL, winner_stamp INTEGER NOT NULL, winner_value, winner_has_value INTEGER NOT NULL,
            loser_writer INTEGER NOT NULL, loser_stamp INTEGER NOT NULL, loser_version INTEGER NOT NULL,
            loser_insert INTEGER NOT NULL, loser_value, loser_has_value INTEGER NOT NULL,
            changeset BLOB NOT NULL, decided_at TEXT NOT NULL
        )
        """,
        // Conflict-record columns added for policies and the review queue (see `migrations`).
        "CREATE INDEX IF NOT EXISTS _ks_conflicts_status ON _ks_conflicts(status, id)",
        "CREATE INDEX IF NOT EXISTS _ks_conflicts_row ON _ks_conflicts(tbl, pk)",
        "CREATE INDEX IF NOT EXISTS _ks_conflicts_loser ON _ks_conflicts(loser_writer)",
        "CREATE INDEX IF NOT EXISTS _ks_conflicts_winner ON _ks_conflicts(winner_writer)",
        // The overview's conflicts per day (see `SQLiteMasterStore.conflictsPerDay`).
        "CREATE INDEX IF NOT EXISTS _ks_conflicts_decided ON _ks_conflicts(decided_at)",
        // For `additive` columns: what each writer last wrote, and the version it was merged at,
        // so that its next change counts as a delta from what it saw.
        """
        CREATE TABLE IF NOT EXISTS _ks_additive (
            tbl TEXT NOT NULL, pk BLOB NOT NULL, col TEXT NOT NULL, writer INTEGER NOT NULL, version INTEGER NOT NULL,
            value, PRIMARY KEY (tbl, pk, col, writer)
        ) WITHOUT ROWID
        """,
        // What each device said about itself at its last request (headers `KotaSync-*`).
        """
        CREATE TABLE IF NOT EXISTS _ks_devices (
            replica INTEGER PRIMARY KEY, client TEXT, pending INTEGER, last_error TEXT, cursor INTEGER,
            last_pull_at TEXT, last_seen_at TEXT NOT NULL, refused INTEGER NOT NULL DEFAULT 0
        )
        """,
        """
        CREATE TABLE IF NOT EXISTS _ks_tokens (
            id TEXT PRIMARY KEY, opd TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL,
            expires_at TEXT, revoked_at TEXT
        )
        """,

        // MARK: Credentials and audit (issue 5, branch `creds`): staff accounts, login sessions
        // (rows of _ks_tokens) and the audit log, kept together apart from the sync bookkeeping.
        // Staff accounts. The password is kept as its scrypt hash with the parameters and salt it
        // was made with (`password_kdf`: `scrypt`, `password_params`: `N=…,r=…,p=…`), so the cost
        // can be raised later without invalidating stored passwords.
        """
        CREATE TABLE IF NOT EXISTS _ks_users (
            name TEXT PRIMARY KEY, role TEXT NOT NULL, password_kdf TEXT NOT NULL, password_params TEXT NOT NULL,
            password_salt BLOB NOT NULL, password_hash BLOB NOT NULL, created_at TEXT NOT NULL, changed_at TEXT NOT NULL
        )
        """,
        // Append-only, hash-chained: `hash` is SHA-256 over `prev_hash` and the entry's canonical
        // text (`AuditEntry.canonicalText`); `kotasync-server audit verify` recomputes the chain.
        """
        CREATE TABLE IF NOT EXISTS _ks_audit (
            id INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, actor_kind TEXT NOT NULL, opd TEXT,
            replica TEXT, address TEXT, action TEXT NOT NULL, status INTEGER NOT NULL, code TEXT, detail TEXT,
            prev_hash TEXT NOT NULL, hash TEXT NOT NULL
        )
        """,
        "CREATE INDEX IF NOT EXISTS _ks_audit_at ON _ks_audit(at)",
        // Each schema migration step the master took (issue 16), and when.
        """
        CREATE TABLE IF NOT EXISTS _ks_migrations (
            version INTEGER NOT NULL, step INTEGER NOT NULL, description TEXT NOT NULL, applied_at TEXT NOT NULL,
            PRIMARY KEY (version, step)
        )
        """,
    ]

    /// Columns added after the first release, as (table, column, definition). Added to an
    /// existing master when missing, so old master files open.
    static let addedColumns: [(table: String, column: String, definition: String)] = [
        // The losing head was a delete (an `update-wins` record) or a write (a `delete-wins` record).
        ("_ks_conflicts", "loser_delete", "INTEGER NOT NULL DEFAULT 0"),
        ("_ks_conflicts", "reason", "TEXT"),
        // JSON of the held change (`HeldChange`) for unique / foreign_key / queued records.
        ("_ks_conflicts", "held", "TEXT"),
        // The related row: the row a quarantined row collided with, the parent a held row needs.
        ("_ks_conflicts", "related_tbl", "TEXT"),
        ("_ks_conflicts", "related_pk", "BLOB"),
        // JSON of `Resolution`.
        ("_ks_conflicts", "resolution", "TEXT"),
        // Who holds the token: `device` tokens push and pull for their OPD; staff tokens
        // (`viewer`, `reviewer`, `admin`) open the review API.
        ("_ks_tokens", "role", "TEXT NOT NULL DEFAULT 'device'"),
        ("_ks_tokens", "name", "TEXT"),
        // The row's scope value (the OPD it belongs to), and the OPDs that saw it before and no
        // longer do (`,a,b,`): pulls filter by the first and send removals to the second.
        ("_ks_rows", "scope", ""),
        ("_ks_rows", "gone_for", "TEXT"),
        // Credentials (branch `creds`): when a token was last used (written in batches, at most
        // about once a second for all tokens together), and, for a login session, the staff
        // account it belongs to.
        ("_ks_tokens", "last_used_at", "TEXT"),
        ("_ks_tokens", "user_name", "TEXT"),
    ]

    /// One row per replicated row ever seen, live or tombstone: its version, merge clocks, scope
    /// and who stopped seeing it.
    ///
    /// Keyed by version (the rowid), with a unique index on (tbl, pk): a change moves its row's
    /// entry to the end of the table, where pulls walk it in version order. A master made before
    /// 2026-12 keyed the table by (tbl, pk), without rowid, with a unique index on version; there
    /// every change rewrote a 180-byte entry at a random place and moved its small version entry,
    /// where now it rewrites a 50-byte (tbl, pk) entry at a random place and moves the big one to
    /// the end — about a fifth fewer pages written per push (see ``migrateRowsToVersionKey(_:)``).
    static func rowsTable(named name: String) -> String {
        """
        CREATE TABLE IF NOT EXISTS \(name) (
            tbl TEXT NOT NULL, pk BLOB NOT NULL, version INTEGER PRIMARY KEY, deleted INTEGER NOT NULL,
            open_conflicts INTEGER NOT NULL DEFAULT 0, clocks BLOB NOT NULL, scope, gone_for TEXT
        )
        """
    }

    /// The index the merge and every lookup of a row's entry read.
    static let rowsKeyIndex = "CREATE UNIQUE INDEX IF NOT EXISTS _ks_rows_key ON _ks_rows(tbl, pk)"

    /// Rebuilds a `_ks_rows` made before 2026-12 (keyed by (tbl, pk), without rowid) keyed by
    /// version, in one pass over the old table in version order, inside the opening transaction.
    /// Every entry keeps every column; nothing else refers to the table.
    static func migrateRowsToVersionKey(_ db: Database) throws {
        guard
            let sql = try String.fetchOne(
                db, sql: "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = '_ks_rows'"),
            sql.uppercased().contains("WITHOUT ROWID")
        else { return }
        let columns = "tbl, pk, version, deleted, open_conflicts, clocks, scope, gone_for"
        try db.execute(sql: "DROP TABLE IF EXISTS _ks_rows_by_version")
        try db.execute(sql: rowsTable(named: "_ks_rows_by_version"))
        try db.execute(
            sql: "INSERT INTO _ks_rows_by_version(\(columns)) SELECT \(columns) FROM _ks_rows ORDER BY version")
        try db.execute(sql: "DROP TABLE _ks_rows")
        try db.execute(sql: "ALTER TABLE _ks_rows_by_version RENAME TO _ks_rows")
    }

    /// Creates the bookkeeping tables, adds missing columns, and migrates older layouts.
    static func create(_ db: Database) throws {
        for statement in statements { try db.execute(sql: statement) }
        for (table, column, definition) in addedColumns {
            let existing = try Row.fetchAll(db, sql: "PRAGMA table_info(\(table))").map { $0["name"] as String }
            if !existing.contains(column) {
                try db.execute(sql: "ALTER TABLE \(table) ADD COLUMN \(column) \(definition)")
                if column == "loser_delete" {
                    // Before delete-wins, every delete/update record's loser was the delete.
                    try db.execute(
                        sql: "UPDATE _ks_conflicts SET loser_delete = 1 WHERE kind = 'delete_update' AND col IS NULL")
                }
            }
        }
        try migrateRowsToVersionKey(db)
        try db.execute(sql: rowsKeyIndex)
        try db.execute(
            sql:
                "CREATE INDEX IF NOT EXISTS _ks_conflicts_related ON _ks_conflicts(related_tbl, related_pk) WHERE status = 'held' OR kind = 'queued'"
        )
    }
}
