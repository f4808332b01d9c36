import Foundation
import KotaSyncCore

/// The master's audit role: the hash-chained log of who did what (requests, refusals, reviewers'
/// decisions, administration commands). Entries name ids and addresses, never a token, a NIK or
/// a value.
public protocol AuditStore: Sendable {
    /// Queues an audit entry; it is written, hash-chained, within about a second (batched with
    /// the others), and at the latest by ``flushAudit()``.
    func recordAudit(_ entry: AuditEntry)
    /// Writes every queued audit entry and token use now.
    func flushAudit() async throws
    /// Audit entries in id order: since a time, of an OPD, after an id, at most `limit`.
    func auditEntries(since: Date?, opd: String?, after: Int64, limit: Int) async throws -> [AuditEntry]
    /// Recomputes the audit log's hash chain; the first problem found, or nil when intact, and
    /// the number of entries checked.
    func verifyAudit() async throws -> (checked: Int, problem: AuditChainCheck.Problem?)
}
