import Foundation
import Hummingbird
import KotaSyncCore

/// Checks a request's bearer token and what its role allows: device tokens sync for their OPD,
/// staff tokens open the review API, and neither opens the other's routes. The roles' ranking is
/// the access service's (``AccessPolicy/grants(_:_:)``); ``CredentialMiddleware`` asks this for
/// every route of a guarded group.
struct Authenticator: Sendable {
    let store: any CredentialStore
    /// The per-token request budget, shared by every route.
    let limits: RequestLimits

    /// The credential behind the request's token if it meets `requirement`; `purpose` says, in
    /// the refusal, what the route does. A staff token on a device route and a device token (or
    /// a lower role) on a staff route are refused with `forbidden`.
    func admit(_ request: Request, as requirement: CredentialRequirement, to purpose: String) async throws -> Device {
        let credential = try await authenticate(request)
        switch requirement {
        case .any:
            return credential
        case .device:
            // So that a reviewer's token can never write data as if it were an OPD's.
            guard AccessPolicy.isDevice(credential.role) else {
                throw SyncError(
                    .forbidden,
                    "A staff token (role \(credential.role.rawValue)) cannot \(purpose); it opens the review API only. Sync with a device token of an OPD (`kotasync-server token create --opd ID`)."
                )
            }
        case .staff(let role):
            guard !AccessPolicy.isDevice(credential.role) else {
                throw SyncError(
                    .forbidden,
                    "This is a device token of OPD \(credential.opd); it cannot \(purpose). The review API needs a staff token (`kotasync-server token create --staff NAME --role viewer|reviewer|admin`)."
                )
            }
            guard AccessPolicy.grants(credential.role, role) else {
                throw SyncError(
                    .forbidden,
                    "This \(credential.role.rawValue) token cannot \(purpose); that needs a \(role.rawValue) token or above."
                )
            }
        }
        return credential
    }

    /// Any valid token, device or staff, within its request budget. Revocation and expiry are
    /// checked against the master on every request, so they take effect on the next one.
    func authenticate(_ request: Request) async throws -> Device {
        // The scheme name is case-insensitive (RFC 9110 §11.1).
        guard let header = request.headers[.authorization], header.lowercased().hasPrefix("bearer ") else {
            throw SyncError(.unauthorized, "Send the token as `Authorization: Bearer <token>`.")
        }
        let token = String(header.dropFirst("bearer ".count)).trimmingCharacters(in: .whitespaces)
        guard let device = try await store.authenticate(token: token) else {
            throw SyncError(
                .unauthorized, "The token is unknown, revoked or expired. Ask the Command Center for a new one.")
        }
        RequestAudit.credential(device)
        try limits.admit(tokenID: device.tokenID)
        return device
    }
}

/// What a group of routes needs of a request's credential.
enum CredentialRequirement: Sendable, Equatable {
    /// Any valid token (logout).
    case any
    /// A device token of an OPD: the sync routes.
    case device
    /// A staff token of this role or above: the review and admin routes.
    case staff(Device.Role)
}
