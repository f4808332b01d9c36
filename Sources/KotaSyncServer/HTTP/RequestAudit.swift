import Synchronization

/// What the routes learn about a request for its audit entry (who, which replica, counts), kept
/// while it runs and written by ``AuditMiddleware`` when it ends.
///
/// Reached through a task-local, so the authenticator and the handlers fill it without passing
/// it along every call.
final class RequestAudit: Sendable {
    @TaskLocal static var current: RequestAudit?

    struct State: Sendable {
        var actor: String?
        var actorKind: String?
        var opd: String?
        var replica: String?
        var action: String?
        var detail: [String: String] = [:]
        /// The request's entry is written by someone else (``StaffLogins``).
        var skipped = false
    }

    let state = Mutex(State())

    /// Records the credential that opened the request.
    static func credential(_ device: Device) {
        current?.state.withLock { state in
            state.actor = device.tokenID
            state.actorKind = device.kind
            state.opd = device.opd.isEmpty ? nil : device.opd
        }
    }

    /// Leaves the request out of the middleware's entries: its handler records its own.
    static func skip() {
        current?.state.withLock { $0.skipped = true }
    }

    /// Names the action (`push`, `review.resolve`, …) and adds counts or ids to the entry: never a
    /// token, a password or a field value.
    static func note(action: String? = nil, replica: String? = nil, _ detail: [String: String] = [:]) {
        current?.state.withLock { state in
            if let action { state.action = action }
            if let replica { state.replica = replica }
            state.detail.merge(detail) { _, new in new }
        }
    }
}
