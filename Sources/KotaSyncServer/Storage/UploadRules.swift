import Foundation
import KotaSyncCore

/// What every ``PartialUploads`` decides alike, wherever the uploads live: the refusals (their
/// codes and texts) and the admission of a new upload under the limits per token and in all.
/// Pure; the stores do the I/O.
enum UploadRules {
    /// Any id that names no live upload of the OPD: another OPD's, an expired one, none at all.
    static func notFound(_ id: String) -> SyncError {
        SyncError(
            .uploadNotFound,
            "There is no upload \(id) for this OPD (it may have expired). Start a new one with POST /v1/uploads.")
    }

    /// An upload found expired, and discarded, on access.
    static func expired(_ id: String, expiry: TimeInterval) -> SyncError {
        SyncError(
            .uploadNotFound,
            "Upload \(id) expired after \(Int(expiry)) seconds without a chunk and was discarded. Start a new one with POST /v1/uploads."
        )
    }

    /// A chunk that is empty or goes past the announced length.
    static func badChunk(count: Int, offset: Int, length: Int) -> SyncError {
        SyncError(
            .badRequest,
            "The chunk is \(count) bytes at offset \(offset); the upload is \(length) bytes. Send between 1 byte and what is left."
        )
    }

    /// A chunk whose bytes do not match its SHA-256.
    static func chunkCorrupt(offset: Int) -> SyncError {
        SyncError(
            .chunkCorrupt,
            "The chunk at offset \(offset) does not match its \(UploadHeaders.chunkSHA256): it was damaged on the way. Send it again."
        )
    }

    /// A complete upload whose bytes do not match the announced SHA-256 (it is discarded).
    static let uploadCorrupt = SyncError(
        .uploadCorrupt,
        "The assembled changeset does not match the SHA-256 announced for it; the upload was discarded. Start it again."
    )

    /// Unfinished uploads, as admission counts them: how many, and when the least recently
    /// touched of them was last touched.
    struct Held {
        var count: Int
        var oldest: Date?
    }

    /// The refusal of a new upload of a token that holds `own` unfinished uploads, when the
    /// server holds `all` of all tokens: nil when it is admitted; otherwise `429
    /// too_many_uploads` with the seconds until the oldest of those in the way expires (or is
    /// finished sooner).
    static func admission(own: Held, all: Held, maxPerToken: Int, maxInAll: Int, expiry: TimeInterval, now: Date)
        -> SyncError?
    {
        let (full, limit, holder) =
            own.count >= maxPerToken ? (own, maxPerToken, "This token has") : (all, maxInAll, "The server holds")
        guard full.count >= limit else { return nil }
        let oldest = full.oldest ?? now
        let wait = max(1, Int((expiry - now.timeIntervalSince(oldest)).rounded(.up)))
        return SyncError(
            .tooManyUploads,
            "\(holder) \(full.count) unfinished uploads, the most allowed (\(limit)). Finish or delete one (DELETE /v1/uploads/{id}), or try again in \(wait) s.",
            retryAfterSeconds: wait)
    }
}
