/// An error of the sync protocol: what the server answers when it refuses a request, and what
/// the codec throws on bad input.
///
/// The ``code`` is stable and machine-readable; it is the `error.code` field of every HTTP error
/// body and is listed, with its HTTP status, in `Protocol/http-api.md`. The ``message`` says what
/// went wrong and, where it can, what to do about it.
public struct SyncError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A stable error code.
    public struct Code: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// No, or an unknown, revoked or expired bearer token.
        public static let unauthorized = Code(rawValue: "unauthorized")
        /// The token is valid but may not do this (e.g. push for a replica registered to another OPD).
        public static let forbidden = Code(rawValue: "forbidden")
        /// The request is malformed (a query parameter, a header, a JSON body).
        public static let badRequest = Code(rawValue: "bad_request")
        /// The request body is larger than the server accepts.
        public static let bodyTooLarge = Code(rawValue: "body_too_large")
        /// The changeset is shorter than its header says.
        public static let changesetTruncated = Code(rawValue: "changeset_truncated")
        /// The changeset fails its checksum or does not inflate.
        public static let changesetCorrupt = Code(rawValue: "changeset_corrupt")
        /// The changeset's payload does not follow the layout in `Protocol/changeset.md`.
        public static let changesetMalformed = Code(rawValue: "changeset_malformed")
        /// The changeset declares more bytes or rows than the server accepts.
        public static let changesetTooLarge = Code(rawValue: "changeset_too_large")
        /// The changeset's magic or format version is not one this server reads.
        public static let unsupportedVersion = Code(rawValue: "unsupported_version")
        /// A row names a table that is not replicated.
        public static let unknownTable = Code(rawValue: "unknown_table")
        /// A row names a column that its table does not have.
        public static let unknownColumn = Code(rawValue: "unknown_column")
        /// A value's storage class is not one its column accepts.
        public static let typeMismatch = Code(rawValue: "type_mismatch")
        /// A row's primary key does not match its table's primary key.
        public static let invalidPrimaryKey = Code(rawValue: "invalid_primary_key")
        /// Applying a row would break a constraint of the master schema (NOT NULL, CHECK, ...).
        public static let constraintViolation = Code(rawValue: "constraint_violation")
        /// The changeset's sequence range overlaps changes the server already applied for this replica.
        public static let sequenceConflict = Code(rawValue: "sequence_conflict")
        /// No such resource.
        public static let notFound = Code(rawValue: "not_found")
        /// The path exists but does not take this method; the response's `Allow` header lists
        /// the methods it takes.
        public static let methodNotAllowed = Code(rawValue: "method_not_allowed")
        /// The conflict record was already resolved or superseded.
        public static let alreadyResolved = Code(rawValue: "already_resolved")
        /// A transfer file (`Protocol/transfer-files.md`) is damaged, fails its authentication,
        /// or is not for this master or replica.
        public static let invalidTransferFile = Code(rawValue: "invalid_transfer_file")
        /// The server failed; the request may be retried.
        public static let internalError = Code(rawValue: "internal_error")
        /// Too many requests for this token in the current minute, or too many failed logins for
        /// a name or an address; try again after the response's `Retry-After` seconds.
        public static let rateLimited = Code(rawValue: "rate_limited")
        /// The request ran longer than the server's `limits.request_timeout_seconds`. Retryable:
        /// a push that was merged meanwhile is answered from its stored reply on the resend.
        public static let requestTimeout = Code(rawValue: "request_timeout")

        // Chunked uploads (`POST /v1/uploads` and the routes under it).

        /// No such upload for this OPD: never created, discarded after expiring, or damaged.
        /// Start a new one (`POST /v1/uploads`); the same changeset gets the same upload back.
        public static let uploadNotFound = Code(rawValue: "upload_not_found")
        /// A chunk does not start where the server's copy ends; the reply's `Upload-Offset` says
        /// where it does. Continue from there.
        public static let uploadOffsetMismatch = Code(rawValue: "upload_offset_mismatch")
        /// Commit before every byte arrived; continue from `Upload-Offset`.
        public static let uploadIncomplete = Code(rawValue: "upload_incomplete")
        /// A chunk's bytes do not match its `KotaSync-Chunk-SHA256`: damaged on the way. Send
        /// the same chunk again.
        public static let chunkCorrupt = Code(rawValue: "chunk_corrupt")
        /// The assembled changeset does not match the announced SHA-256. The server discarded
        /// the upload; start it again from the outbox's intact copy.
        public static let uploadCorrupt = Code(rawValue: "upload_corrupt")
        /// The token, or all devices together, already have as many unfinished uploads as the
        /// server keeps (`limits.max_partial_uploads_per_token`, `limits.max_partial_uploads`).
        /// Finish or delete one, or try again after `Retry-After` seconds (when the oldest expires).
        public static let tooManyUploads = Code(rawValue: "too_many_uploads")

        /// The HTTP status the server answers with for this code.
        public var httpStatus: Int {
            switch self {
            case .unauthorized: 401
            case .forbidden: 403
            case .notFound, .uploadNotFound: 404
            case .methodNotAllowed: 405
            case .sequenceConflict, .alreadyResolved, .uploadOffsetMismatch, .uploadIncomplete: 409
            case .bodyTooLarge, .changesetTooLarge: 413
            case .unknownTable, .unknownColumn, .typeMismatch, .invalidPrimaryKey, .constraintViolation: 422
            case .rateLimited, .tooManyUploads: 429
            case .internalError: 500
            case .requestTimeout: 503
            default: 400
            }
        }

        /// Whether a client should keep its outbox and send the changeset again later: server
        /// failures, `429` (after `Retry-After`), bytes damaged on the way (the replica's stored
        /// copy is intact), and the upload codes, which say how to go on with a chunked upload
        /// rather than that the changeset is wrong. Every other 4xx is permanent for those bytes.
        public var isRetryable: Bool {
            switch self {
            case .changesetTruncated, .changesetCorrupt, .rateLimited, .uploadNotFound, .uploadOffsetMismatch,
                .uploadIncomplete, .chunkCorrupt, .uploadCorrupt, .tooManyUploads:
                true
            default: httpStatus >= 500
            }
        }
    }

    /// The stable code.
    public var code: Code
    /// A human-readable explanation that says what to do.
    public var message: String
    /// For ``Code/rateLimited``: the seconds to wait before trying again (the `Retry-After`
    /// header of the HTTP response).
    public var retryAfterSeconds: Int?

    public init(_ code: Code, _ message: String, retryAfterSeconds: Int? = nil) {
        self.code = code
        self.message = message
        self.retryAfterSeconds = retryAfterSeconds
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
