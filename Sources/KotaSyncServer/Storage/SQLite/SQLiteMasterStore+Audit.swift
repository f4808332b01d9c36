import Foundation
import GRDB
import KotaSyncCore
import Synchronization

/// Audit entries, token uses and device reports waiting to be written.
struct AuditBuffer: Sendable {
    var entries: [AuditEntry] = []
    /// Token id → the last time it authenticated a request, not yet written.
    var tokenUses: [String: Date] = [:]
    /// Replica and sender's OPD → what its devices said about themselves since the last write,
    /// folded together.
    var deviceReports: [DeviceReportKey: PendingDeviceReport] = [:]
    /// Whether a flush is already scheduled.
    var scheduled = false
}

extension SQLiteMasterStore {
    /// How long an audit entry, a token use or a device report waits for others before they are
    /// written together. A push's own transaction is not extended (its commit is the
    /// acknowledgement the client waits for); a 200-page bootstrap's pulls cost one write per
    /// second instead of 200, and many small pushes do not each pay a second commit.
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

    /// Remembers what a device said about itself on a request; written with the next audit
    /// batch, folded with the replica's other reports since the last one.
    func noteDeviceReport(_ report: DeviceReport, pulled: Bool, at date: Date) {
        auditBuffer.withLock { buffer in
            buffer.deviceReports[
                DeviceReportKey(replica: report.replicaId, opd: report.opd), default: PendingDeviceReport()
            ].fold(
                report, pulled: pulled, at: date)
        }
        scheduleAuditFlush(now: false)
    }

    private func scheduleAuditFlush(now: Bool) {
        let start = auditBuffer.withLock { buffer in
            defer { buffer.scheduled = true }
            return !buffer.scheduled
        }
        guard start || now else { return }
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
            // IMMEDIATE: the command line appends to the same chain from another process; taking
            // the write lock before reading the last entry keeps the chain a single line.
            try await pool.writeWithoutTransaction { db in
                try db.inTransaction(.immediate) {
                    try Self.append(entries, db: db)
                    for (id, date) in uses {
                        try db.execute(
                            sql: "UPDATE _ks_tokens SET last_used_at = ? WHERE id = ?",
                            arguments: [Timestamp.string(date), id])
                    }
                    try Self.write(reports, access: self.config.access, db: db)
                    return .commit
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

    /// Appends `entries` to the chain inside the caller's transaction, and moves the recorded head.
    static func append(_ entries: [AuditEntry], db: Database) throws {
        guard !entries.isEmpty else { return }
        let last = try Row.fetchOne(db, sql: "SELECT id, hash FROM _ks_audit ORDER BY id DESC LIMIT 1")
        var id: Int64 = last?["id"] ?? 0
        var previous: String = last?["hash"] ?? AuditEntry.genesis
        let insert = try db.makeStatement(
            sql: """
                INSERT INTO _ks_audit(id, at, actor, actor_kind, opd, replica, address, action, status, code, detail,
                    prev_hash, hash)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
        for var entry in entries {
            id += 1
            entry.id = id
            let hash = entry.chainedHash(after: previous)
            try insert.execute(arguments: [
                id, entry.at, entry.actor, entry.actorKind, entry.opd, entry.replica, entry.address, entry.action,
                entry.status, entry.code, entry.detail, previous, hash,
            ])
            previous = hash
        }
        try db.execute(
            sql: "INSERT OR REPLACE INTO _ks_server(key, value) VALUES ('audit_head', ?)",
            arguments: ["\(id):\(previous)"])
    }

    public func auditEntries(since: Date?, opd: String?, after: Int64, limit: Int) async throws -> [AuditEntry] {
        try await read { db in
            var conditions = ["id > ?"]
            var arguments: StatementArguments = [after]
            if let since {
                conditions.append("at >= ?")
                _ = arguments.append(contentsOf: [Timestamp.string(since)])
            }
            if let opd {
                conditions.append("opd = ?")
                _ = arguments.append(contentsOf: [opd])
            }
            _ = arguments.append(contentsOf: [limit])
            return try Row.fetchAll(
                db,
                sql:
                    "SELECT * FROM _ks_audit WHERE \(conditions.joined(separator: " AND ")) ORDER BY id LIMIT ?",
                arguments: arguments
            ).map(Self.entry)
        }
    }

    public func verifyAudit() async throws -> (checked: Int, problem: AuditChainCheck.Problem?) {
        try await read { db in
            var check = AuditChainCheck()
            let rows = try Row.fetchCursor(db, sql: "SELECT * FROM _ks_audit ORDER BY id")
            while let row = try rows.next() {
                if let problem = check.check(Self.entry(row), previous: row["prev_hash"], hash: row["hash"]) {
                    return (check.count, problem)
                }
            }
            let head = try String.fetchOne(db, sql: "SELECT value FROM _ks_server WHERE key = 'audit_head'")
            if let head, let colon = head.firstIndex(of: ":"), let id = Int64(head[..<colon]) {
                return (check.count, check.checkEnd(headID: id, headHash: String(head[head.index(after: colon)...])))
            }
            if check.count > 0 || head != nil {
                return (check.count, .init(id: check.head.id, message: "the recorded head of the log is missing"))
            }
            return (0, nil)
        }
    }

    static func entry(_ row: Row) -> AuditEntry {
        var entry = AuditEntry(actor: row["actor"], actorKind: row["actor_kind"], action: row["action"], status: 0)
        entry.id = row["id"]
        entry.at = row["at"]
        entry.opd = row["opd"]
        entry.replica = row["replica"]
        entry.address = row["address"]
        entry.status = row["status"]
        entry.code = row["code"]
        entry.detail = row["detail"]
        return entry
    }
}
