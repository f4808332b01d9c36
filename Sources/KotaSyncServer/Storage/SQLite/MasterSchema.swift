import GRDB

/// The master database's own bookkeeping tables, beside the replicated tables.
///
/// Value columns (`winner_value`, ...) are declared without a type so SQLite stores every value
/// in its original storage class.
enum MasterSchema {
    static let statements = [
        "CREATE TABLE IF NOT EXISTS _ks_server (key TEXT PRIMARY KEY, value) WITHOUT ROWID",
        // One row per replicated row ever seen, live or tombstone: its version and merge clocks.
        """
        CREATE TABLE IF NOT EXISTS _ks_rows (
            tbl TEXT NOT NULL, pk BLOB NOT NULL, version INTEGER NOT NULL, deleted INTEGER NOT NULL,
            open_conflicts INTEGER NOT NULL DEFAULT 0, clocks BLOB NOT NULL, PRIMARY KEY (tbl, pk)
        ) WITHOUT ROWID
        """,
        "CREATE UNIQUE INDEX IF NOT EXISTS _ks_rows_version ON _ks_rows(version)",
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

    /// Creates the bookkeeping tables and adds missing columns.
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
        try db.execute(
            sql:
                "CREATE INDEX IF NOT EXISTS _ks_conflicts_related ON _ks_conflicts(related_tbl, related_pk) WHERE status = 'held' OR kind = 'queued'"
        )
    }
}
