import HTTPTypes
import Hummingbird
import KotaSyncCore

/// Opens a route only for a credential its group requires, and puts that credential in the
/// request context (``ServerRequestContext/credential``) for the handler: authentication as
/// middleware, after hummingbird-auth's `AuthRequestContext` and `IsAuthenticatedMiddleware`.
///
/// It names the request's audit action before it checks anything, so that a refused request is
/// audited under the route's action (`pull`, `review.list`) as an accepted one is.
struct CredentialMiddleware: RouterMiddleware {
    typealias Context = ServerRequestContext
    let authenticator: Authenticator
    let requirement: CredentialRequirement
    /// The audit entry's action; nil leaves it to the request's method and path.
    let action: String?
    /// What the route does, for a refusal's message ("push changes").
    let purpose: String
    /// Adds what the audit entry should say of the request beyond its action (a replica, a
    /// record id), from the request alone.
    let note: @Sendable (Request, Context) -> Void

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        RequestAudit.note(action: action)
        note(request, context)
        var context = context
        context.credential = try await authenticator.admit(request, as: requirement, to: purpose)
        return try await next(request, context)
    }
}

/// The routes that open with one kind of credential: the device routes, or the staff routes of
/// one role and above. Each route is registered behind a ``CredentialMiddleware`` of the group's
/// requirement, and its handler is given the credential that opened it.
struct GuardedRoutes {
    let router: Router<ServerRequestContext>
    let authenticator: Authenticator
    let requirement: CredentialRequirement

    /// A handler of a guarded route: the request, its context, and the credential that opened it.
    typealias Handler = @Sendable (Request, ServerRequestContext, Device) async throws -> Response

    /// Registers `handler` for `method` on `path`: audited as `action`, refused (with `purpose`
    /// in the message) unless the request's credential meets the group's requirement.
    @discardableResult
    func on(
        _ method: HTTPRequest.Method, _ path: RouterPath, audit action: String?, to purpose: String,
        noting note: @escaping @Sendable (Request, ServerRequestContext) -> Void = { _, _ in },
        use handler: @escaping Handler
    ) -> Self {
        router.group()
            .add(
                middleware: CredentialMiddleware(
                    authenticator: authenticator, requirement: requirement, action: action, purpose: purpose,
                    note: note)
            )
            .on(path, method: method) { request, context in
                guard let credential = context.credential else {
                    throw SyncError(.internalError, "A guarded route ran without a credential.")
                }
                return try await handler(request, context, credential)
            }
        return self
    }
}

extension Router<ServerRequestContext> {
    /// The routes of this router that open with a credential meeting `requirement`.
    func guarded(_ requirement: CredentialRequirement, authenticator: Authenticator) -> GuardedRoutes {
        GuardedRoutes(router: self, authenticator: authenticator, requirement: requirement)
    }
}
