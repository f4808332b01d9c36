import Foundation
import Hummingbird
import KotaSyncCore

/// Token and account administration for the dashboard (`/v1/admin/…`), for admins only: list,
/// create and revoke tokens, list staff accounts. The same as `kotasync-server token …` and
/// `user list` on the server machine.
struct AdminAPI {
    let store: any CredentialStore
    let authenticator: Authenticator

    static let maxBodyBytes = 16 << 10

    /// The longest a token may be issued for: 100 years, so that `expires_at` stays a date every
    /// RFC 3339 reader takes (years up to 9999) and the arithmetic on it cannot overflow.
    static let expiresDays = IntegerField("expires_days", 1...36_500)

    func register(on router: Router<ServerRequestContext>) {
        let admins = router.guarded(.staff(.admin), authenticator: authenticator)
        admins.on(.get, "/v1/admin/tokens", audit: "admin.tokens.list", to: "manage tokens") { _, _, _ in
            return try json(TokenList(tokens: try await store.tokens()))
        }
        admins.on(.post, "/v1/admin/tokens", audit: "token.create", to: "manage tokens") { request, _, _ in
            let body = try await request.body.collect(upTo: Self.maxBodyBytes)
            guard
                let create = try? ProtocolJSON.decoder().decode(
                    CreateTokenRequest.self, from: Data(body.readableBytesView))
            else {
                throw SyncError(
                    .badRequest,
                    "The body must be JSON {\"opd\": ID} for a device token or {\"staff\": NAME, \"role\": \"viewer\"|\"reviewer\"|\"admin\"}, with an optional \"expires_days\" (an integer from \(Self.expiresDays.range.lowerBound) to \(Self.expiresDays.range.upperBound))."
                )
            }
            // Checked as the text of the number, so that 0, a negative and a value beyond the
            // maximum each get their message; leave it out for no expiry.
            let days = try create.expiresDays.map { days throws(SyncError) in
                try Self.expiresDays.parse(String(days))
            }
            // A role that is not one is refused, not taken for "no role" (which reads as a device token).
            if let role = create.role, Device.Role(rawValue: role) == nil {
                throw SyncError(.badRequest, "`role` must be viewer, reviewer or admin.")
            }
            let expiry = days.map { Date().addingTimeInterval(TimeInterval($0) * 86_400) }
            let issued: IssuedToken
            switch (create.opd, create.staff, create.role.flatMap(Device.Role.init(rawValue:))) {
            case (let opd?, nil, nil):
                issued = try await store.createToken(opd: opd, expiresAt: expiry)
            case (nil, let staff?, let role?) where role != .device:
                issued = try await store.createStaffToken(name: staff, role: role, expiresAt: expiry)
            default:
                throw SyncError(
                    .badRequest, "Give either `opd`, or `staff` with `role` viewer, reviewer or admin.")
            }
            RequestAudit.note(["token": issued.id, "kind": issued.role == .device ? "device" : "staff"])
            let document = IssuedTokenDocument(
                token: issued.token, id: issued.id, kind: issued.role == .device ? "device" : "staff",
                role: issued.role.rawValue, opd: issued.opd.isEmpty ? nil : issued.opd, name: issued.name,
                expiresAt: issued.expiresAt.map(Timestamp.string))
            var response = try json(document)
            response.status = .created
            return response
        }
        let noteToken: @Sendable (Request, ServerRequestContext) -> Void = { _, context in
            RequestAudit.note(["token": Self.tokenID(context)])
        }
        admins.on(
            .post, "/v1/admin/tokens/:id/revoke", audit: "token.revoke", to: "manage tokens", noting: noteToken
        ) { _, context, _ in
            let id = Self.tokenID(context)
            return try json(try await store.revokeToken(id: id))
        }
        admins.on(.get, "/v1/admin/users", audit: "admin.users.list", to: "manage staff accounts") { _, _, _ in
            return try json(UserList(users: try await store.users()))
        }
    }

    /// The `{id}` path segment of a token route, cut to a token id's length.
    private static func tokenID(_ context: ServerRequestContext) -> String {
        String((context.parameters.get("id") ?? "").prefix(64))
    }
}
