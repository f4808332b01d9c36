import Foundation

/// `POST /v1/uploads`: announces a changeset that will be sent in chunks.
///
/// The server derives the upload's id from the caller's OPD and these three fields, so asking
/// again (a lost reply, a restarted client) gives the same upload and how much of it arrived.
public struct UploadRequest: Codable, Sendable, Equatable {
    /// The id in the changeset's header.
    public var changesetId: UUID
    /// The changeset's size in bytes, envelope included.
    public var length: Int
    /// SHA-256 of the whole changeset, 64 lower-case hex digits.
    public var sha256: String

    /// The announcement of a changeset of `length` bytes whose SHA-256 is `sha256` (hex).
    public init(changesetId: UUID, length: Int, sha256: String) {
        self.changesetId = changesetId
        self.length = length
        self.sha256 = sha256
    }
}

/// The state of a chunked upload, as every upload route answers it.
public struct UploadStatus: Codable, Sendable, Equatable {
    /// The upload's id, for the other upload routes.
    public var id: String
    public var changesetId: UUID
    /// The changeset's size in bytes.
    public var length: Int
    /// SHA-256 of the whole changeset, as announced.
    public var sha256: String
    /// How many bytes the server holds durably: the next chunk starts here.
    public var offset: Int
    /// The largest chunk the server accepts in one `PATCH`.
    public var maxChunkBytes: Int
    /// When the server discards the upload if nothing more arrives (ISO 8601, UTC).
    public var expiresAt: String
    /// True once the assembled changeset was pushed; committing again returns the stored reply.
    public var committed: Bool

    /// An upload's state, as the server reports it.
    public init(
        id: String, changesetId: UUID, length: Int, sha256: String, offset: Int, maxChunkBytes: Int,
        expiresAt: String, committed: Bool
    ) {
        self.id = id
        self.changesetId = changesetId
        self.length = length
        self.sha256 = sha256
        self.offset = offset
        self.maxChunkBytes = maxChunkBytes
        self.expiresAt = expiresAt
        self.committed = committed
    }
}

/// Header names of the upload routes (`Protocol/http-api.md`, "Chunked uploads").
public enum UploadHeaders {
    /// On `PATCH`: where the chunk starts. On replies: how many bytes the server holds.
    public static let offset = "Upload-Offset"
    /// On `PATCH`: SHA-256 of the chunk's bytes, 64 hex digits.
    public static let chunkSHA256 = "KotaSync-Chunk-SHA256"
    /// The media type of a chunk body.
    public static let chunkMediaType = "application/offset+octet-stream"
}
