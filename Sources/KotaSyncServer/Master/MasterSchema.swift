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
        "CREATE INDEX IF NOT EXISTS _ks_conflicts_row ON _ks_conflicts(tbl, pk)",
        "CREATE INDEX IF NOT EXISTS _ks_conflicts_loser ON _ks_conflicts(loser_writer)",
        "CREATE INDEX IF NOT EXISTS _ks_conflicts_winner ON _ks_conflicts(winner_writer)",
        """
        CREATE TABLE IF NOT EXISTS _ks_tokens (
            id TEXT PRIMARY KEY, opd TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL,
            expires_at TEXT, revoked_at TEXT
        )
        """,
    ]
}
