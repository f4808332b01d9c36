import Foundation
import Hummingbird
import KotaSyncCore

/// Staff logins (`POST /v1/login`, `POST /v1/logout`): a staff account's name and password give a
/// short-lived session token with the account's role, which opens the review and admin routes as
/// a staff token does. Failed logins are limited per name and per client address.
struct SessionAPI {
    let store: any MasterStore
    let config: ServerConfig
    let authenticator: Authenticator
    let limits: RequestLimits

    /// A login body is a name and a password.
    static let maxBodyBytes = 16 << 10

    func register(on router: Router<ServerRequestContext>) {
        router.post("/v1/login") { request, context in
            RequestAudit.note(action: "login")
            let body = try await request.body.collect(upTo: Self.maxBodyBytes)
            guard let login = try? ProtocolJSON.decoder().decode(LoginRequest.self, from: Data(body.readableBytesView))
            else {
                throw SyncError(.badRequest, "The body must be JSON {\"name\": …, \"password\": …}.")
            }
            let name = String(login.name.prefix(100))
            let address = ClientAddress.of(
                peer: context.peer, forwardedFor: request.headers[.xForwardedFor], trusted: config.trustedProxies)
            // Who tried, for the audit log: the account's name, or `?` for a name no account has
            // (people type their password into the name field; that must not reach the log).
            let known = try await store.users().contains { $0.name == login.name }
            RequestAudit.current?.state.withLock { state in
                state.actor = known ? name : "?"
                state.actorKind = "user"
            }
            try limits.checkLogin(name: name, address: address)
            guard
                let session = try await store.login(
                    name: login.name, password: login.password, minutes: config.limits.sessionMinutes)
            else {
                limits.loginFailed(name: name, address: address)
                throw SyncError(.unauthorized, "The name or the password is wrong.")
            }
            limits.loginSucceeded(name: name)
            RequestAudit.note(["session": session.id, "role": session.role.rawValue])
            return try json(
                IssuedTokenDocument(
                    token: session.token, id: session.id, kind: "session", role: session.role.rawValue, opd: nil,
                    name: session.name, expiresAt: session.expiresAt.map(Timestamp.string)))
        }
        router.post("/v1/logout") { request, _ in
            RequestAudit.note(action: "logout")
            let credential = try await authenticator.authenticate(request)
            guard credential.session else {
                throw SyncError(
                    .forbidden,
                    "Only a login's session token logs out; other tokens are revoked with `kotasync-server token revoke ID`."
                )
            }
            _ = try await store.revokeToken(id: credential.tokenID)
            return Response(status: .noContent)
        }
    }
}
