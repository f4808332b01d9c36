import Foundation
import KotaSyncCore
import PostgresNIO

/// The audit role on PostgreSQL: what `SQLiteMasterStore+Audit` does, on `kotasync.audit`.
///
/// One chain whatever the number of servers: an append takes the transaction-scoped advisory
/// lock ``PostgresMaster/LockKey/audit`` before it reads the chain's last entry, and holds it to
/// commit, so appends from every process on the master follow one another. The chain's hashing
/// (`AuditEntry.chainedHash`) and checking (`AuditChainCheck`) are the SQLite backend's own.
extension PostgresMasterStore {
    /// How long an audit entry or a token use waits for others before they are written together
    /// (as on SQLite: one write per second instead of one per request).
    static let auditFlushDelay: Duration = .seconds(1)

    /// The most entries held before writing without waiting for the delay.
    static let auditFlushSize = 500

    public func recordAudit(_ entry: AuditEntry) {
        let now = auditBuffer.withLock { buffer in
            buffer.entries.append(entry)
            return buffer.entries.count >= Self.auditFlushSize
        }
        scheduleAuditFlush(now: now)
    }

    /// Remembers that a token was used; written with the next audit batch.
    func noteTokenUse(_ id: String) {
        auditBuffer.withLock { $0.tokenUses[id] = Date() }
        scheduleAuditFlush(now: false)
    }

    func scheduleAuditFlush(now: Bool) {
        let start = auditBuffer.withLock { buffer in
            if buffer.closed { return false }
            defer { buffer.scheduled = true }
            return !buffer.scheduled
        }
        guard start || (now && !auditBuffer.withLock(\.closed)) else { return }
        Task {
            if !now { try? await Task.sleep(for: Self.auditFlushDelay) }
            do {
                try await self.flushAudit()
            } catch {
                self.logger.error("audit write failed; will retry", metadata: ["error": "\(error)"])
            }
        }
    }

    public func flushAudit() async throws {
        let (entries, uses, reports) = auditBuffer.withLock { buffer in
            defer {
                buffer.entries = []
                buffer.tokenUses = [:]
                buffer.deviceReports = [:]
                buffer.scheduled = false
            }
            return (buffer.entries, buffer.tokenUses, buffer.deviceReports)
        }
        guard !entries.isEmpty || !uses.isEmpty || !reports.isEmpty else { return }
        do {
            try await master.transaction { connection in
                // Before the append, which holds the audit lock to commit.
                try await self.writeDeviceReports(reports, connection)
                try await Self.append(entries, connection)
                if !uses.isEmpty {
                    let ids = Array(uses.keys)
                    let times = ids.map { Timestamp.string(uses[$0]!) }
                    // Another server may have written a later use already: keep the later one
                    // (the timestamps are fixed-width ISO text, so they compare as text).
                    try await connection.query(
                        """
                        UPDATE kotasync.tokens t SET last_used_at = GREATEST(t.last_used_at, u.at)
                        FROM unnest(\(ids)::text[], \(times)::text[]) AS u(id, at) WHERE t.id = u.id
                        """, logger: logger)
                }
            }
        } catch {
            // Put them back in front of anything queued meanwhile, so nothing is lost or reordered.
            auditBuffer.withLock { buffer in
                buffer.entries = entries + buffer.entries
                buffer.tokenUses.merge(uses) { newer, _ in newer }
                buffer.deviceReports.merge(reports) { newer, older in older.followed(by: newer) }
            }
            scheduleAuditFlush(now: false)
            throw error
        }
    }

    /// Appends `entries` to the chain inside the caller's transaction, and moves the recorded
    /// head. Takes the audit lock first: the last entry read is the last entry at commit.
    static func append(_ entries: [AuditEntry], _ connection: PostgresConnection) async throws {
        guard !entries.isEmpty else { return }
        let logger = SQLiteMasterStore.quietLogger
        try await connection.query(
            "SELECT pg_advisory_xact_lock(\(PostgresMaster.LockKey.audit.rawValue))", logger: logger)
        var id: Int64 = 0
        var previous = AuditEntry.genesis
        let last = try await connection.query(
            "SELECT id, hash FROM kotasync.audit ORDER BY id DESC LIMIT 1", logger: logger)
        for try await (lastID, lastHash) in last.decode((Int64, String).self) {
            id = lastID
            previous = lastHash
        }
        // One statement per batch of rows (13 parameters a row, well under PostgreSQL's 65535).
        for batch in stride(from: 0, to: entries.count, by: 1000) {
            var bindings = PostgresBindings(capacity: 13 * min(1000, entries.count - batch))
            var rows: [String] = []
            for var entry in entries[batch..<min(batch + 1000, entries.count)] {
                id += 1
                entry.id = id
                let hash = entry.chainedHash(after: previous)
                let first = bindings.count + 1
                rows.append("(" + (first..<first + 13).map { "$\($0)" }.joined(separator: ", ") + ")")
                bindings.append(id)
                bindings.append(entry.at)
                bindings.append(entry.actor)
                bindings.append(entry.actorKind)
                bindings.append(entry.opd)
                bindings.append(entry.replica)
                bindings.append(entry.address)
                bindings.append(entry.action)
                bindings.append(Int64(entry.status))
                bindings.append(entry.code)
                bindings.append(entry.detail)
                bindings.append(previous)
                bindings.append(hash)
                previous = hash
            }
            try await connection.query(
                PostgresQuery(
                    unsafeSQL: """
                        INSERT INTO kotasync.audit(id, at, actor, actor_kind, opd, replica, address, action, status, code,
                            detail, prev_hash, hash)
                        VALUES \(rows.joined(separator: ", "))
                        """, binds: bindings), logger: logger)
        }
        try await connection.query(
            """
            INSERT INTO kotasync.server(key, value) VALUES ('audit_head', \("\(id):\(previous)"))
            ON CONFLICT (key) DO UPDATE SET value = excluded.value
            """, logger: logger)
    }

    public func auditEntries(since: Date?, opd: String?, after: Int64, limit: Int) async throws -> [AuditEntry] {
        var bindings = PostgresBindings()
        var conditions = ["id > $1"]
        bindings.append(after)
        if let since {
            bindings.append(Timestamp.string(since))
            conditions.append("at >= $\(bindings.count)")
        }
        if let opd {
            bindings.append(opd)
            conditions.append("opd = $\(bindings.count)")
        }
        bindings.append(Int64(max(limit, 0)))
        let rows = try await client.query(
            PostgresQuery(
                unsafeSQL: """
                    SELECT \(Self.auditColumns) FROM kotasync.audit
                    WHERE \(conditions.joined(separator: " AND ")) ORDER BY id LIMIT $\(bindings.count)
                    """, binds: bindings), logger: logger)
        var out: [AuditEntry] = []
        for try await row in rows { out.append(try Self.auditEntry(row).entry) }
        return out
    }

    public func verifyAudit() async throws -> (checked: Int, problem: AuditChainCheck.Problem?) {
        // One snapshot for the entries and the recorded head: appends committed meanwhile (by
        // this or another server) are not half seen.
        try await client.withConnection { connection in
            try await connection.query("START TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY", logger: logger)
            do {
                let result = try await Self.verify(connection)
                try await connection.query("COMMIT", logger: logger)
                return result
            } catch {
                _ = try? await connection.query("ROLLBACK", logger: logger)
                throw error
            }
        }
    }

    private static func verify(_ connection: PostgresConnection) async throws -> (
        checked: Int, problem: AuditChainCheck.Problem?
    ) {
        let logger = SQLiteMasterStore.quietLogger
        var check = AuditChainCheck()
        let rows = try await connection.query(
            "SELECT \(unescaped: auditColumns) FROM kotasync.audit ORDER BY id", logger: logger)
        var problem: AuditChainCheck.Problem?
        for try await row in rows {
            let (entry, previous, hash) = try auditEntry(row)
            problem = check.check(entry, previous: previous, hash: hash)
            if problem != nil { break }
        }
        if let problem { return (check.count, problem) }
        var head: String?
        for try await value in try await connection.query(
            "SELECT value FROM kotasync.server WHERE key = 'audit_head'", logger: logger
        ).decode(String?.self) {
            head = value
        }
        if let head, let colon = head.firstIndex(of: ":"), let id = Int64(head[..<colon]) {
            return (check.count, check.checkEnd(headID: id, headHash: String(head[head.index(after: colon)...])))
        }
        if check.count > 0 || head != nil {
            return (check.count, .init(id: check.head.id, message: "the recorded head of the log is missing"))
        }
        return (0, nil)
    }

    static let auditColumns =
        "id, at, actor, actor_kind, opd, replica, address, action, status, code, detail, prev_hash, hash"

    static func auditEntry(_ row: PostgresRow) throws -> (entry: AuditEntry, previous: String, hash: String) {
        let (id, at, actor, actorKind, opd, replica, address, action, status, code, detail, previous, hash) =
            try row.decode(
                (
                    Int64, String, String, String, String?, String?, String?, String, Int64, String?, String?, String,
                    String
                ).self)
        var entry = AuditEntry(actor: actor, actorKind: actorKind, action: action, status: Int(status))
        entry.id = id
        entry.at = at
        entry.opd = opd
        entry.replica = replica
        entry.address = address
        entry.code = code
        entry.detail = detail
        return (entry, previous, hash)
    }
}
