import Foundation
import HTTPTypes
import Hummingbird
import KotaSyncCore
import Logging

/// Writes an audit entry for every request that carried a credential or was refused one (401,
/// 403, 429), and every login: who, from which address, what, and the outcome. `GET /v1/health`
/// and unauthenticated requests for unknown paths are not recorded.
///
/// Requests refused for want of a valid credential (401) are limited per client address: beyond
/// `limits.refused_per_minute` in a minute they are answered `429 rate_limited` and recorded as
/// one summary entry per address and minute (``RefusedRequests``), so that a flood of garbage
/// tokens cannot grow the audit log by an entry per request.
struct AuditMiddleware: RouterMiddleware {
    typealias Context = ServerRequestContext
    let store: any AuditStore
    let trustedProxies: [String]
    let refusals: RefusedRequests

    init(store: any AuditStore, trustedProxies: [String], refusedPerMinute: Int = 60) {
        self.store = store
        self.trustedProxies = trustedProxies
        refusals = RefusedRequests(store: store, perMinute: refusedPerMinute, action: "refused")
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        let audit = RequestAudit()
        do {
            let response = try await RequestAudit.$current.withValue(audit) { try await next(request, context) }
            record(audit, request, context, status: Int(response.status.code), code: nil)
            return response
        } catch let error as APIError {
            let anonymous = audit.state.withLock { $0.actor == nil && !$0.skipped }
            if error.status.code == 401, anonymous, let wait = refusals.refuse(address: address(request, context)) {
                throw APIError(
                    error: SyncError(
                        .rateLimited,
                        "Too many requests without a valid token from this address this minute. Try again in \(wait) s, with a valid token.",
                        retryAfterSeconds: wait))
            }
            record(audit, request, context, status: Int(error.status.code), code: error.error.code.rawValue)
            throw error
        } catch {
            record(audit, request, context, status: 500, code: SyncError.Code.internalError.rawValue)
            throw error
        }
    }

    private func record(_ audit: RequestAudit, _ request: Request, _ context: Context, status: Int, code: String?) {
        let state = audit.state.withLock { $0 }
        let path = request.uri.path
        if path == "/v1/health" || state.skipped { return }
        let denied = [401, 403, 429].contains(status)
        guard state.actor != nil || state.action != nil || denied else { return }
        let address = address(request, context)
        store.recordAudit(
            AuditEntry(
                actor: state.actor ?? "-", actorKind: state.actorKind ?? "anonymous", opd: state.opd,
                replica: state.replica, address: address,
                action: state.action ?? "\(request.method.rawValue) \(path)", status: status, code: code,
                detail: state.detail))
    }
}

extension AuditMiddleware {
    /// The client's address (see `trusted_proxies`).
    fileprivate func address(_ request: Request, _ context: Context) -> String? {
        ClientAddress.of(peer: context.peer, forwardedFor: request.headers[.xForwardedFor], trusted: trustedProxies)
    }
}

extension HTTPField.Name {
    static let xForwardedFor = Self("X-Forwarded-For")!
    static let retryAfter = Self("Retry-After")!
}
