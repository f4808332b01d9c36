import Foundation
import Hummingbird
import KotaSyncCore

/// Checks a request's bearer token and what its role allows: device tokens sync for their OPD,
/// staff tokens open the review API, and neither opens the other's routes.
struct Authenticator: Sendable {
    let store: any MasterStore
    /// The per-token request budget, shared by every route.
    let limits: RequestLimits

    /// The device behind the request's token, for a sync route (`push`, `pull`, `conflicts`):
    /// a staff token is refused with `forbidden`, so a reviewer's token can never write data as
    /// if it were an OPD's.
    func device(_ request: Request, to action: String) async throws -> Device {
        let credential = try await authenticate(request)
        guard credential.role == .device else {
            throw SyncError(
                .forbidden,
                "A staff token (role \(credential.role.rawValue)) cannot \(action); it opens the review API only. Sync with a device token of an OPD (`kotasync-server token create --opd ID`)."
            )
        }
        return credential
    }

    /// The staff member behind the request's token, whose role is `role` or above
    /// (viewer < reviewer < admin); device tokens and lower roles are refused with `forbidden`.
    func staff(_ request: Request, atLeast role: Device.Role, to action: String) async throws -> Device {
        let credential = try await authenticate(request)
        guard credential.role != .device else {
            throw SyncError(
                .forbidden,
                "This is a device token of OPD \(credential.opd); it cannot \(action). The review API needs a staff token (`kotasync-server token create --staff NAME --role viewer|reviewer|admin`)."
            )
        }
        guard credential.role.rank >= role.rank else {
            throw SyncError(
                .forbidden,
                "This \(credential.role.rawValue) token cannot \(action); that needs a \(role.rawValue) token or above."
            )
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

extension Device.Role {
    /// Staff roles in increasing power; a device is below every staff role and opens none of
    /// their routes (``Authenticator`` checks that separately).
    fileprivate var rank: Int {
        switch self {
        case .device: 0
        case .viewer: 1
        case .reviewer: 2
        case .admin: 3
        }
    }
}
