import Foundation
import KotaSyncCore

/// A device credential, as the server knows it after checking a bearer token.
public struct Device: Sendable, Equatable {
    /// The token's id (not the secret).
    public var tokenID: String
    /// The OPD the token belongs to.
    public var opd: String

    public init(tokenID: String, opd: String) {
        self.tokenID = tokenID
        self.opd = opd
    }
}

/// A newly created device token. The secret is shown once; only its hash is stored.
public struct IssuedToken: Sendable, Equatable {
    public var id: String
    public var opd: String
    /// The bearer token to give to the device.
    public var token: String
    public var expiresAt: Date?
}

/// One page of merged changes for a pull.
public struct PullPage: Sendable {
    /// The encoded pull changeset.
    public var body: [UInt8]
    public var rows: Int
    /// The cursor to ask from next.
    public var nextCursor: UInt64
    public var hasMore: Bool
}

/// The result of a push.
public struct PushOutcome: Sendable {
    /// The JSON reply body.
    public var reply: Data
    /// True when the changeset had been applied before and `reply` is the stored reply.
    public var replayed: Bool
}

/// Everything the server keeps in its master database.
///
/// All master-database SQL lives behind this protocol, so a second backend (PostgreSQL, for a
/// city that outgrows one machine) is a second implementation of it. Every method is durable on
/// return: a push that returns has been committed with a full sync.
public protocol MasterStore: Sendable {
    /// Merges a validated push changeset from a device of `device.opd` in one transaction.
    func push(_ changeset: Changeset, from device: Device) async throws -> PushOutcome
    /// The merged rows whose version is above `cursor`, at most `limit` of them.
    func pull(after cursor: UInt64, limit: Int) async throws -> PullPage
    /// Conflicts in which `replica` took part, after conflict id `after`. The replica must belong
    /// to `device`'s OPD.
    func conflicts(involving replica: UUID, of device: Device, after: Int64, limit: Int) async throws -> ConflictList
    /// The device a bearer token belongs to, or nil if the token is unknown, revoked or expired.
    func authenticate(token: String) async throws -> Device?
    /// Creates a device token for an OPD.
    func createToken(opd: String, expiresAt: Date?) async throws -> IssuedToken
}
