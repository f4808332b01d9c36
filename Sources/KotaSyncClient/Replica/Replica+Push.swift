import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite

/// A changeset waiting in the replica's outbox for the server's acknowledgement.
public struct OutboundChangeset: Sendable, Equatable {
    public var id: UUID
    public var firstSequence: UInt64
    public var lastSequence: UInt64
    public var rows: Int
    /// The encoded changeset, sent byte for byte the same on every retry.
    public var body: [UInt8]
    /// The chunked upload carrying it, if one was started: resumed after a restart.
    public var upload: UploadProgress?
}

/// How far a chunked upload of the outbox's changeset got, as the server last acknowledged it.
public struct UploadProgress: Sendable, Equatable {
    /// The server's upload id.
    public var id: String
    /// Bytes the server acknowledged.
    public var offset: Int

    /// The progress of upload `id`: `offset` bytes acknowledged.
    public init(id: String, offset: Int) {
        self.id = id
        self.offset = offset
    }
}

extension Replica {
    /// The most log entries one push changeset covers; a longer log goes up in several pushes.
    static let maxEntriesPerChangeset = 50_000

    /// The changeset to push next: the one already in the outbox (an earlier push whose reply
    /// never arrived), or a new one built from the change log. Nil when nothing is pending.
    public func nextOutbound(now: Date = Date()) throws -> OutboundChangeset? {
        // The outbox is the one write of ours that must be on disk before the network sees it: a
        // changeset sent and applied, then lost here by a power cut, would be rebuilt under a new
        // id over the same sequence numbers and refused for ever (sequence_conflict).
        try dbQueue.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
            defer { try? db.execute(sql: "PRAGMA synchronous = NORMAL") }
            var result: OutboundChangeset?
            try db.inTransaction {
                try db.execute(sql: Self.uploadTable)
                result = try self.outbound(db, now: now)
                return .commit
            }
            return result
        }
    }

    /// The changeset in the outbox, or a new one built from the log.
    private func outbound(_ db: Database, now: Date) throws -> OutboundChangeset? {
        if let row = try Row.fetchOne(db, sql: "SELECT id, first_seq, last_seq, rows, body FROM _ks_outbox LIMIT 1") {
            let body = [UInt8](row["body"] as Data)
            // Bytes damaged on this disk would be refused for ever; the log still holds their
            // changes, so such a changeset is dropped and built again.
            let limits = DecodeLimits(maxUncompressedBytes: .max, maxCompressionRatio: .max)
            if (try? ChangesetCodec.decode(body, limits: limits)) != nil {
                let upload = try Row.fetchOne(
                    db, sql: "SELECT upload_id, offset FROM _ks_upload WHERE changeset_id = ?",
                    arguments: [row["id"] as String]
                ).map { UploadProgress(id: $0["upload_id"], offset: $0["offset"]) }
                return OutboundChangeset(
                    id: UUID(uuidString: row["id"])!, firstSequence: UInt64(row["first_seq"] as Int64),
                    lastSequence: UInt64(row["last_seq"] as Int64), rows: row["rows"], body: body, upload: upload)
            }
            try db.execute(sql: "DELETE FROM _ks_outbox WHERE id = ?", arguments: [row["id"] as String])
            try db.execute(sql: "DELETE FROM _ks_upload WHERE changeset_id = ?", arguments: [row["id"] as String])
        }
        return try build(db, now: now)
    }

    /// Builds the next changeset and puts it in the outbox. A changeset larger than the server
    /// accepts (its published limits) is built again from half as many log entries.
    private func build(_ db: Database, now: Date) throws -> OutboundChangeset? {
        let limits = schema.limits
        var entryLimit = min(Self.maxEntriesPerChangeset, limits?.maxRows ?? .max)
        while true {
            guard let (changeset, clock, cancelledUpTo) = try compose(db, entryLimit: entryLimit) else { return nil }
            guard let changeset else {
                // These entries cancelled out (rows created and deleted again offline); go on
                // with the entries after them.
                try ChangeLog.truncate(db, through: cancelledUpTo)
                continue
            }
            let body = ChangesetCodec.encode(changeset)
            let payload = try ChangesetCodec.decodeHeader(
                body, limits: DecodeLimits(maxUncompressedBytes: .max, maxCompressionRatio: .max)
            )
            .uncompressedLength
            if let limits, entryLimit > 1, body.count > limits.maxBodyBytes || payload > limits.maxUncompressedBytes {
                entryLimit /= 2
                continue
            }
            let outbound = OutboundChangeset(
                id: changeset.id, firstSequence: changeset.firstSequence, lastSequence: changeset.lastSequence,
                rows: changeset.rows.count, body: body)
            try db.execute(
                sql:
                    "INSERT INTO _ks_outbox(id, first_seq, last_seq, rows, body, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                arguments: [
                    outbound.id.uuidString, Int64(outbound.firstSequence), Int64(outbound.lastSequence), outbound.rows,
                    Data(body), now.iso8601,
                ])
            try Self.setState(db, StateKey.clock, Int64(bitPattern: clock.last.rawValue))
            return outbound
        }
    }

    /// The changeset for the first `entryLimit` log entries and the clock after stamping it; a nil
    /// changeset when those entries cancel out (with the last sequence they cover); nil when the
    /// log is empty.
    private func compose(_ db: Database, entryLimit: Int) throws -> (Changeset?, HybridClock, Int64)? {
        let entries = try readLog(db, limit: entryLimit)
        guard let first = entries.first, let last = entries.last else { return nil }
        var clock = HybridClock(last: HLC(rawValue: UInt64(bitPattern: try Self.state(db, StateKey.clock) ?? 0)))
        // Stamps are ticked in the order of the changes, each from its row's capture time, so a
        // row's stamp is not raised by the rows of other tables sent ahead of it.
        var sent: [(table: String, lastSequence: Int64, row: Changeset.Row)] = []
        for pending in ChangeLog.coalesce(entries) {
            guard let table = tables[pending.table] else { continue }
            let pk = Data(PrimaryKeyCoding.encode(pending.key))
            let values = try statements[table.name]!.values(db, key: pending.key)
            let known = try Int64.fetchOne(
                db.cachedStatement(sql: "SELECT version FROM _ks_rows WHERE tbl = ? AND pk = ?"),
                arguments: [table.name, pk])
            let outcome = ChangeLog.outcome(of: pending, existsNow: values != nil, serverHasRow: known != nil)
            let columns: [Int]
            let operation: Changeset.Operation
            switch outcome {
            case .nothing: continue
            case .delete:
                operation = .delete
                columns = []
            case .upsert:
                operation = .upsert
                columns = Array(table.columns.indices)
            case .update:
                operation = .update
                columns = ChangeLog.columns(in: pending.mask, count: table.columns.count)
            }
            var overrides: [String: UInt64] = [:]
            for row in try Row.fetchAll(
                db.cachedStatement(sql: "SELECT col, base FROM _ks_colbase WHERE tbl = ? AND pk = ?"),
                arguments: [table.name, pk])
            {
                overrides[row["col"]] = UInt64(row["base"] as Int64)
            }
            let stamp = clock.tick(wallMilliseconds: UInt64(max(pending.lastCapturedAt, 0)))
            let row = Changeset.Row(
                table: 0, operation: operation, version: UInt64(known ?? 0), stamp: stamp,
                primaryKey: pending.key,
                columns: columns.map { c in
                    Changeset.ColumnValue(
                        column: c, value: values?[c] ?? .null, baseVersion: overrides[table.columns[c].name])
                })
            sent.append((table.name, pending.lastSequence, row))
        }
        guard !sent.isEmpty else { return (nil, clock, last.sequence) }
        var tablesUsed: [String] = []
        let rows = ChangeLog.pushOrder(sent, ranks: pushRanks) { ($0.table, $0.lastSequence) }.map { entry in
            var row = entry.row
            row.table = tablesUsed.firstIndex(of: entry.table) ?? tablesUsed.count
            if row.table == tablesUsed.count { tablesUsed.append(entry.table) }
            return row
        }
        let changeset = Changeset(
            kind: .push, id: UUID(), replicaID: id, firstSequence: UInt64(first.sequence),
            lastSequence: UInt64(last.sequence), tables: tablesUsed.map { tables[$0]!.changesetTable }, rows: rows)
        return (changeset, clock, last.sequence)
    }

    func readLog(_ db: Database, limit: Int? = nil) throws -> [ChangeLog.Entry] {
        let sql =
            "SELECT seq, tbl, op, mask, at, k0, k1, k2, k3 FROM _ks_log WHERE op <> 0 ORDER BY seq"
            + (limit.map { " LIMIT \($0)" } ?? "")
        var entries: [ChangeLog.Entry] = []
        let cursor = try Row.fetchCursor(db, sql: sql)
        while let row = try cursor.next() {
            let tableName: String = row["tbl"]
            let keyCount = tables[tableName]?.primaryKey.count ?? 1
            entries.append(
                ChangeLog.Entry(
                    sequence: row["seq"], table: tableName, op: ChangeLog.Op(rawValue: row["op"]) ?? .update,
                    mask: row["mask"], capturedAt: row["at"],
                    key: (0..<keyCount).map { SQLValue(row[5 + $0] as DatabaseValue) }))
        }
        return entries
    }

    /// The server acknowledged `outbound`: its log entries leave the log, and the conflicts the
    /// server reported are kept for `status`.
    public func acknowledge(_ outbound: OutboundChangeset, reply: PushReply, now: Date = Date()) throws {
        let changeset = try ChangesetCodec.decode(outbound.body)
        try dbQueue.write { db in
            try ChangeLog.truncate(db, through: Int64(outbound.lastSequence))
            try db.execute(sql: "DELETE FROM _ks_outbox WHERE id = ?", arguments: [outbound.id.uuidString])
            try Self.forgetUpload(of: outbound, db)
            for row in changeset.rows {
                let table = changeset.tables[row.table].name
                let pk = Data(PrimaryKeyCoding.encode(row.primaryKey))
                // The server has the row now; later local edits are based on it.
                if row.operation != .delete {
                    try db.cachedStatement(sql: "INSERT OR IGNORE INTO _ks_rows(tbl, pk, version) VALUES (?, ?, 0)")
                        .execute(arguments: [table, pk])
                }
                try db.cachedStatement(sql: "DELETE FROM _ks_colbase WHERE tbl = ? AND pk = ?").execute(arguments: [
                    table, pk,
                ])
            }
            try self.store(reply.conflicts, db)
            try self.apply(rejected: reply.rejected ?? [], db, now: now)
            try self.rememberAcknowledged(changeset, db, now: now)
            try Self.setState(db, StateKey.lastPushAt, now.iso8601)
        }
    }

    /// Rows the server refused (outside this OPD's scope, or a read-only table) are kept in
    /// `_ks_rejected` for `status`. A row the server holds none of that this device may see
    /// (`discard`) is removed here, without capture; the others come back with the next pull.
    func apply(rejected: [RejectedRow], _ db: Database, now: Date) throws {
        guard !rejected.isEmpty else { return }
        try db.execute(sql: ChangeLog.rejectedStatement)
        try db.execute(sql: "INSERT INTO _ks_applying(x) VALUES (1)")
        for row in rejected {
            let pk = Data(PrimaryKeyCoding.encode(row.primaryKey))
            try db.execute(
                sql: """
                    INSERT OR REPLACE INTO _ks_rejected(tbl, pk, code, message, action, rejected_at)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """, arguments: [row.table, pk, row.code, row.message, row.action, now.iso8601])
            if row.action == "discard", let sql = statements[row.table] {
                try sql.delete(db, key: row.primaryKey)
                try db.execute(sql: "DELETE FROM _ks_rows WHERE tbl = ? AND pk = ?", arguments: [row.table, pk])
            }
        }
        try db.execute(sql: "DELETE FROM _ks_applying")
    }

    /// The server refused `outbound` for good: drop it so the next push is rebuilt from the log,
    /// which still holds every change (corrected rows included).
    public func discard(_ outbound: OutboundChangeset) throws {
        try dbQueue.write { db in
            try db.execute(sql: "DELETE FROM _ks_outbox WHERE id = ?", arguments: [outbound.id.uuidString])
            try Self.forgetUpload(of: outbound, db)
        }
    }

    /// The chunked upload carrying `outbound`, as far as the server acknowledged it (nil when
    /// none was started).
    public func upload(of outbound: OutboundChangeset) throws -> UploadProgress? {
        try dbQueue.read { db in
            guard try db.tableExists("_ks_upload") else { return nil }
            return try Row.fetchOne(
                db, sql: "SELECT upload_id, offset FROM _ks_upload WHERE changeset_id = ?",
                arguments: [outbound.id.uuidString]
            ).map { UploadProgress(id: $0["upload_id"], offset: $0["offset"]) }
        }
    }

    /// Remembers how far the chunked upload of `outbound` got, so a restarted client resumes it
    /// rather than starting over. Losing this write costs nothing but a question to the server:
    /// announcing the same changeset again returns the same upload.
    public func recordUpload(_ progress: UploadProgress, of outbound: OutboundChangeset) throws {
        try dbQueue.write { db in
            try db.execute(sql: Self.uploadTable)
            try db.execute(
                sql: "INSERT OR REPLACE INTO _ks_upload(changeset_id, upload_id, offset) VALUES (?, ?, ?)",
                arguments: [outbound.id.uuidString, progress.id, progress.offset])
        }
    }

    /// The outbox's upload state: which server upload carries which changeset and how far it got.
    /// Made when first needed, so replicas made before chunked uploads get it too.
    static let uploadTable = """
        CREATE TABLE IF NOT EXISTS _ks_upload (
          changeset_id TEXT PRIMARY KEY,
          upload_id    TEXT NOT NULL,
          offset       INTEGER NOT NULL
        ) WITHOUT ROWID
        """

    private static func forgetUpload(of outbound: OutboundChangeset, _ db: Database) throws {
        guard try db.tableExists("_ks_upload") else { return }
        try db.execute(sql: "DELETE FROM _ks_upload WHERE changeset_id = ?", arguments: [outbound.id.uuidString])
    }

    func store(_ conflicts: [ConflictReport], _ db: Database) throws {
        let encoder = ProtocolJSON.encoder()
        for conflict in conflicts {
            try db.execute(
                sql: "INSERT OR REPLACE INTO _ks_conflicts(id, report) VALUES (?, ?)",
                arguments: [conflict.id, String(decoding: try encoder.encode(conflict), as: UTF8.self)])
        }
    }
}
