import Foundation
import KotaSyncCore
import Synchronization

/// Requests per token per minute, shared by every route. Kept in memory: a restart forgets the
/// counts, which costs an attacker a restart they cannot cause.
final class RequestLimits: Sendable {
    private let budget: Mutex<RequestBudget>
    private let perMinute: Int

    init(_ limits: ServerConfig.Limits) {
        perMinute = limits.requestsPerMinute
        budget = Mutex(RequestBudget(perMinute: limits.requestsPerMinute))
    }

    /// Counts a request of `tokenID`; `rate_limited` when the token used up its minute.
    func admit(tokenID: String, now: Date = Date()) throws {
        if let wait = budget.withLock({ $0.admit(tokenID, now: now) }) {
            throw SyncError(
                .rateLimited,
                "This token made more requests this minute than the server allows (\(perMinute)). Try again in \(wait) s.",
                retryAfterSeconds: wait)
        }
    }
}

/// Refused requests per client address (``RefusalTally``) with their audit entries: the first
/// `perMinute` of an address's minute are recorded one by one; beyond them each refusal is
/// answered `429 rate_limited` and counted, and one entry per address and minute says how many
/// there were, written once the minute is over. Never a token: the entries name the address.
final class RefusedRequests: Sendable {
    private let tally: Mutex<RefusalTally>
    /// Whether a task is waiting to write the summaries of the current minute.
    private let scheduled = Mutex(false)
    private let store: any AuditStore
    /// The action the summaries are recorded under (`refused`, `login`).
    private let action: String

    init(store: any AuditStore, perMinute: Int, action: String) {
        self.store = store
        self.action = action
        tally = Mutex(RefusalTally(perMinute: perMinute))
    }

    /// Counts a refusal from `address`: nil when it is to be audited one by one (the caller
    /// records it), otherwise the seconds until the address may be heard again, and the refusal
    /// is left to the minute's summary.
    func refuse(address: String?, now: Date = Date()) -> Int? {
        let (wait, ended) = tally.withLock { $0.refuse(address ?? "-", now: now) }
        if let ended { record([ended], now: now) }
        if wait != nil { scheduleSummaries(now: now) }
        return wait
    }

    /// Writes the summaries of the minutes that have ended.
    func flush(now: Date = Date()) {
        record(tally.withLock { $0.ended(now: now) }, now: now)
    }

    private func record(_ summaries: [RefusalTally.Summary], now: Date) {
        for s in summaries {
            store.recordAudit(
                AuditEntry(
                    at: now, actor: "-", actorKind: "anonymous", address: s.address == "-" ? nil : s.address,
                    action: "\(action).summary", status: 429, code: SyncError.Code.rateLimited.rawValue,
                    detail: [
                        "minute": Timestamp.string(s.minute), "refused": String(s.refused),
                        "unaudited": String(s.unaudited),
                    ]))
        }
    }

    /// One task at a time waits for the current minute to end and writes its summaries, so that
    /// the count of a flood that stopped is written too.
    private func scheduleSummaries(now: Date) {
        let start = scheduled.withLock { scheduled in
            defer { scheduled = true }
            return !scheduled
        }
        guard start else { return }
        let seconds = 60 - now.timeIntervalSince1970.truncatingRemainder(dividingBy: 60) + 1
        Task { [self] in
            try? await Task.sleep(for: .seconds(seconds))
            scheduled.withLock { $0 = false }
            flush()
            if tally.withLock({ $0.hasUnaudited }) { scheduleSummaries(now: Date()) }
        }
    }
}
