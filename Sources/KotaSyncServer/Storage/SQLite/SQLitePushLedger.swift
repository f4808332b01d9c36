import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite

/// The push envelope's port (``PushLedger``) on the SQLite master, inside the GRDB transaction
/// the store opened: `_ks_changesets`, `_ks_replicas`, `_ks_devices`, and the scope reads of the
/// device view (`_ks_rows`, `_ks_conflicts`).
struct SQLitePushLedger: PushLedger {
    let db: Database

    func storedReply(of id: UUID) throws -> (reply: Data, opd: String)? {
        try Row.fetchOne(
            db.cachedStatement(
                sql: """
                    SELECT c.reply, r.opd FROM _ks_changesets c JOIN _ks_replicas r ON r.number = c.replica
                    WHERE c.id = ?
                    """), arguments: [Data(id.bytes)]
        ).map { ($0["reply"], $0["opd"]) }
    }

    func replica(_ id: UUID) throws -> LedgerReplica? {
        try Row.fetchOne(
            db.cachedStatement(sql: "SELECT number, opd, last_sequence FROM _ks_replicas WHERE uuid = ?"),
            arguments: [Data(id.bytes)]
        ).map { row in
            LedgerReplica(
                number: row["number"], opd: row["opd"], lastSequence: UInt64(max(0, row["last_sequence"] as Int64)))
        }
    }

    func registerReplica(_ id: UUID, opd: String, at time: String) throws -> Int64 {
        try db.execute(
            sql: "INSERT INTO _ks_replicas(uuid, opd, first_seen_at) VALUES (?, ?, ?)",
            arguments: [Data(id.bytes), opd, time])
        return db.lastInsertedRowID
    }

    func recordChangeset(_ changeset: Changeset, replica: Int64, rows: Int, at time: String, reply: Data) throws {
        try db.execute(
            sql: """
                INSERT INTO _ks_changesets(id, replica, first_sequence, last_sequence, rows, received_at, reply)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                Data(changeset.id.bytes), replica, Int64(changeset.firstSequence), Int64(changeset.lastSequence),
                rows, time, reply,
            ])
        try db.execute(
            sql: "UPDATE _ks_replicas SET last_sequence = ?, last_push_at = ? WHERE number = ?",
            arguments: [Int64(changeset.lastSequence), time, replica])
    }

    func countRefused(_ count: Int, replica: Int64, at time: String) throws {
        try db.execute(
            sql: """
                INSERT INTO _ks_devices(replica, last_seen_at, refused) VALUES (?1, ?2, ?3)
                ON CONFLICT(replica) DO UPDATE SET refused = refused + ?3
                """, arguments: [replica, time, count])
    }

    func storedScopes(of rows: Set<RowReference>) throws -> [RowReference: SQLValue] {
        // One cached statement per row: SQLite's statements are calls, not round trips.
        let statement = try db.cachedStatement(sql: "SELECT scope FROM _ks_rows WHERE tbl = ? AND pk = ?")
        var out: [RowReference: SQLValue] = [:]
        for row in rows {
            if let found = try Row.fetchOne(
                statement, arguments: [row.table, Data(PrimaryKeyCoding.encode(row.primaryKey))])
            {
                out[row] = SQLValue(found["scope"] as DatabaseValue)
            }
        }
        return out
    }

    func firstHeldChange(of table: String, key: [SQLValue]) throws -> String? {
        try String.fetchOne(
            db.cachedStatement(
                sql: """
                    SELECT held FROM _ks_conflicts
                    WHERE kind IN ('unique', 'foreign_key') AND status IN ('open', 'held') AND tbl = ? AND pk = ?
                    ORDER BY id LIMIT 1
                    """), arguments: [table, Data(PrimaryKeyCoding.encode(key))])
    }
}
