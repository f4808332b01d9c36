import Foundation
import Hummingbird
import KotaSyncCore

/// Staff logins over the API (`POST /v1/login`, `POST /v1/logout`): a staff account's name and
/// password give a short-lived session token with the account's role, which opens the review and
/// admin routes as a staff token does. ``StaffLogins`` checks, limits and audits the attempts.
struct SessionAPI {
    let store: any CredentialStore
    let config: ServerConfig
    let authenticator: Authenticator
    let logins: StaffLogins

    /// A login body is a name and a password.
    static let maxBodyBytes = 16 << 10

    func register(on router: Router<ServerRequestContext>) {
        router.post("/v1/login") { request, context in
            // StaffLogins writes the attempt's audit entry itself (the dashboard's form too).
            RequestAudit.skip()
            let body = try await request.body.collect(upTo: Self.maxBodyBytes)
            guard let login = try? ProtocolJSON.decoder().decode(LoginRequest.self, from: Data(body.readableBytesView))
            else {
                throw SyncError(.badRequest, "The body must be JSON {\"name\": …, \"password\": …}.")
            }
            let address = ClientAddress.of(
                peer: context.peer, forwardedFor: request.headers[.xForwardedFor], trusted: config.trustedProxies)
            switch try await logins.login(name: login.name, password: login.password, address: address) {
            case .session(let session):
                return try json(
                    IssuedTokenDocument(
                        token: session.token, id: session.id, kind: "session", role: session.role.rawValue, opd: nil,
                        name: session.name, expiresAt: session.expiresAt.map(Timestamp.string)))
            case .wrongCredentials:
                throw SyncError(.unauthorized, "The name or the password is wrong.")
            case .limited(let wait):
                throw SyncError(
                    .rateLimited, "Too many failed logins for this name or from this address. Try again in \(wait) s.",
                    retryAfterSeconds: wait)
            }
        }
        router.guarded(.any, authenticator: authenticator).on(.post, "/v1/logout", audit: "logout", to: "log out") {
            _, _, credential in
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
