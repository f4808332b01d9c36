import Foundation
import KotaSyncCore

/// The chunked uploads in progress (`Protocol/http-api.md`, "Chunked uploads"): what was
/// announced, the bytes received so far, and the reply of a committed one.
///
/// Where they live is the master's choice (``SyncStore/partialUploads(limits:)``): beside a SQLite
/// master in files (``UploadStore``); in a master that several servers share, in that master, so
/// an upload started through one server can be resumed and committed through another. The API
/// therefore names uploads by id and carries bytes and values, never files or paths.
///
/// Every implementation keeps these promises, which the HTTP API relies on:
/// - an upload's id is derived from its OPD and its announcement, so announcing the same
///   changeset again returns the same upload with its offset;
/// - a chunk is checked against its SHA-256 and durable before the offset moves past it;
/// - an upload is only ever visible to its own OPD: any other id, an upload of another OPD or
///   one expired is `upload_not_found`, alike;
/// - a chunk or commit that does not fit the offset throws ``OffsetMismatch`` with the offset
///   the client should go on from;
/// - unfinished uploads are bounded per token and in all (`too_many_uploads`), and those
///   untouched for longer than the expiry are discarded.
public protocol PartialUploads: Sendable {
    /// The largest chunk accepted, in bytes.
    var maxChunkBytes: Int { get }
    /// The upload for `request` from a device of `opd` with the token `token` (its id): the one
    /// already started for the same changeset, or a new, empty one; `created` tells which.
    func create(_ request: UploadRequest, opd: String, token: String) async throws -> (
        status: UploadStatus, created: Bool
    )
    /// The upload's state; `upload_not_found` unless it exists for `opd` and has not expired.
    func status(id: String, opd: String) async throws -> UploadStatus
    /// Appends `chunk` at `offset` after checking it against `sha256` (hex; nil for a streamed
    /// chunk or the part of one that arrived before a drop, whose bytes the commit's check of the
    /// whole covers); returns the new state once the chunk is durable.
    func append(id: String, opd: String, offset: Int, chunk: [UInt8], sha256: String?) async throws -> UploadStatus
    /// What a commit of the upload pushes: every byte of a complete upload, checked against the
    /// announced SHA-256, or the stored reply of one committed before. An upload whose bytes do
    /// not match is discarded (`upload_corrupt`); one that is not complete throws
    /// ``OffsetMismatch`` (with `incomplete` set) with its offset.
    func assembled(id: String, opd: String) async throws -> AssembledUpload
    /// Keeps `reply` as the upload's outcome and drops its bytes: a repeated commit (its reply
    /// was lost) gets the reply without the bytes.
    func committed(id: String, reply: Data) async throws
    /// Discards the upload (the client gave it up).
    func delete(id: String, opd: String) async throws
    /// Discards the uploads untouched for longer than the expiry, when that was not done for a
    /// while (the HTTP API calls it as new uploads arrive).
    func sweepIfDue() async throws
}

/// What the commit of an upload finds.
public enum AssembledUpload: Sendable {
    /// Every byte, checked against the announced SHA-256, to be pushed.
    case complete(UploadedBytes)
    /// The upload was committed before; its stored push reply.
    case committed(Data)
}

/// The bytes of a complete upload, read as the push goes (not loaded whole): they come from
/// wherever the uploads live.
public struct UploadedBytes: Sendable {
    /// The bytes, readable at any offset.
    package let source: any ChangesetSource

    package init(_ source: any ChangesetSource) {
        self.source = source
    }
}

/// A chunk or a commit that does not fit where the upload stands: the server's `offset` says
/// where to go on. Rendered as `409 upload_offset_mismatch` (or `upload_incomplete` for a commit)
/// with an `Upload-Offset` header.
struct OffsetMismatch: Error, Sendable {
    var offset: Int
    var incomplete = false
}
