import Foundation
import KotaSyncCore

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

/// The master's sync role: what devices do through `POST /v1/push`, `GET /v1/pull`, their
/// conflicts and chunked uploads.
///
/// A push is merged in one transaction and durable before it returns; the same changeset twice
/// is merged once (the second push gets the stored reply).
public protocol SyncStore: Sendable {
    /// Merges a validated push changeset from a device of `device.opd` in one transaction.
    func push(_ changeset: Changeset, from device: Device) async throws -> PushOutcome
    /// Merges a push that was checked without keeping its rows (a request body or a committed
    /// upload), reading its rows again one at a time; otherwise as the push of a decoded changeset.
    func push(_ checked: CheckedPush, from device: Device) async throws -> PushOutcome
    /// The merged rows whose version is above `cursor` that a device of `opd` may see (all of
    /// them when nil), at most `limit` of them; rows it no longer sees come as deletes.
    func pull(after cursor: UInt64, limit: Int, opd: String?) async throws -> PullPage
    /// Conflicts in which `replica` took part, after conflict id `after`. The replica must belong
    /// to `device`'s OPD.
    func conflicts(involving replica: UUID, of device: Device, after: Int64, limit: Int) async throws -> ConflictList
    /// Keeps what a device said about itself on a request, for the overview (it may be written
    /// with a later batch, and is written before the overview is next read).
    func record(_ report: DeviceReport, pulled: Bool) async throws
    /// Where this master keeps chunked uploads in progress, with the chunk size, expiry and
    /// limits of `limits`. Every server of one master must see the same uploads, so that an
    /// upload started through one can be resumed through another.
    func partialUploads(limits: ServerConfig.Limits) throws -> any PartialUploads
}
