import KotaSyncCore

/// An error on the OPD's side of sync: the replica, its server connection, or the server's answer.
public struct ReplicaError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A stable code for the kind of failure.
    public struct Code: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The database has no KotaSync replica yet; run `kotasync init`.
        public static let notInitialized = Code(rawValue: "not_initialized")
        /// `kotasync init` on a database that already is a replica.
        public static let alreadyInitialized = Code(rawValue: "already_initialized")
        /// An existing table does not match the server's schema.
        public static let schemaMismatch = Code(rawValue: "schema_mismatch")
        /// The server could not be reached; try again later.
        public static let serverUnreachable = Code(rawValue: "server_unreachable")
        /// The server refused the device token.
        public static let unauthorized = Code(rawValue: "unauthorized")
        /// The server refused the request; ``ReplicaError/server`` says why.
        public static let rejected = Code(rawValue: "rejected")
        /// The server answered with something that is not the protocol.
        public static let invalidResponse = Code(rawValue: "invalid_response")
        /// The local database failed.
        public static let database = Code(rawValue: "database_error")
        /// Another process is syncing this replica (it holds `<db>.lock`); try again when it is done.
        public static let locked = Code(rawValue: "replica_locked")
        /// A pulled page breaks a constraint of the local tables beside a change not yet pushed
        /// (nothing of it was applied); pushing first resolves it.
        public static let pullBlocked = Code(rawValue: "pull_blocked")
        /// A transfer file (`kotasync export` / `import`) is damaged, forged, or not for this replica.
        public static let invalidTransferFile = Code(rawValue: "invalid_transfer_file")

        /// The `kotasync` exit status for this code.
        public var exitCode: Int32 {
            switch self {
            case .notInitialized, .alreadyInitialized, .schemaMismatch: 2
            case .serverUnreachable: 3
            case .rejected, .invalidResponse: 4
            case .unauthorized: 5
            case .locked: 6
            case .invalidTransferFile: 7
            default: 1
            }
        }
    }

    public var code: Code
    public var message: String
    /// The server's error, when the server refused a request.
    public var server: SyncError?
    /// Seconds the server (or a proxy) asked the client to wait before trying again
    /// (`Retry-After` on a `429` or `503`).
    public var retryAfter: Double?

    public init(_ code: Code, _ message: String, server: SyncError? = nil, retryAfter: Double? = nil) {
        self.code = code
        self.message = message
        self.server = server
        self.retryAfter = retryAfter
    }

    public var description: String {
        if let server { return "\(message) [\(server.code)]" }
        return "\(message) [\(code)]"
    }
}
