import Foundation
import KotaSyncCore

/// What a push did.
public struct PushSummary: Codable, Sendable, Equatable {
    /// Changesets the server acknowledged.
    public var changesets = 0
    /// Rows in them.
    public var rows = 0
    /// Rows whose change reached the master.
    public var applied = 0
    /// Changesets the server had already applied (a retry after a lost reply).
    public var replayed = 0
    public var conflicts: [ConflictReport] = []
    /// Rows the server refused (outside this OPD's scope, or a read-only table).
    public var refused = 0
    /// Encoded bytes of the changesets acknowledged.
    public var bytes = 0

    /// Nothing pushed yet.
    public init() {}
}

/// What a pull did.
public struct PullSummary: Codable, Sendable, Equatable {
    public var pages = 0
    public var rows = 0
    public var applied = 0
    /// Pulled rows that kept a pending local change.
    public var keptLocal = 0
    public var cursor: UInt64 = 0
    /// Conflicts about this replica's changes learned while pulling.
    public var conflicts: [ConflictReport] = []

    /// Nothing pulled yet.
    public init() {}
}

/// Runs the sync protocol between a replica and its server.
public struct Synchronizer: Sendable {
    public let replica: Replica
    public let client: SyncClient

    public init(replica: Replica, client: SyncClient) {
        self.replica = replica
        self.client = client
    }

    /// A synchronizer for `replica` with the server and token stored at `init`.
    public init(replica: Replica) throws {
        self.init(replica: replica, client: SyncClient(baseURL: replica.serverURL, token: try replica.token()))
    }

    /// Creates a replica at `path` from the server's schema and downloads the current rows.
    public static func initialize(
        path: String, serverURL: URL, token: String, pageSize: Int? = nil,
        progress: @Sendable (PullSummary) -> Void = { _ in }
    ) async throws -> (replica: Replica, adopted: Int, pulled: PullSummary) {
        let client = SyncClient(baseURL: serverURL, token: token)
        let schema = try await client.schema()
        guard schema.protocolVersion == kotaSyncProtocolVersion else {
            throw ReplicaError(
                .invalidResponse,
                "The server speaks protocol version \(schema.protocolVersion); this client speaks \(kotaSyncProtocolVersion). Update kotasync."
            )
        }
        let adopted = try Replica.create(at: path, schema: schema, serverURL: serverURL, token: token)
        let replica = try Replica(path: path)
        let pulled = try await Synchronizer(replica: replica, client: client).pull(
            pageSize: pageSize, progress: progress)
        return (replica, adopted, pulled)
    }

    /// Sends every pending change, one changeset at a time, each acknowledged before the next.
    ///
    /// A changeset whose reply is lost stays in the outbox and is sent again, byte for byte, by
    /// the next push; the server recognises its id and replies as before. A changeset the server
    /// refuses for good (bad data) is dropped from the outbox, its changes stay in the log, and
    /// the error is thrown for the operator.
    public func push(progress: @Sendable (PushSummary) -> Void = { _ in }) async throws -> PushSummary {
        var summary = PushSummary()
        while let outbound = try replica.nextOutbound() {
            do {
                let (reply, replayed) = try await client.push(outbound.body)
                try replica.acknowledge(outbound, reply: reply)
                summary.bytes += outbound.body.count
                defer { progress(summary) }
                summary.changesets += 1
                summary.rows += reply.rows
                summary.applied += reply.applied
                summary.replayed += replayed ? 1 : 0
                summary.conflicts += reply.conflicts
                summary.refused += reply.rejected?.count ?? 0
            } catch let error as ReplicaError where error.code == .rejected {
                if let code = error.server?.code, !code.isRetryable, code != .sequenceConflict {
                    try replica.discard(outbound)
                }
                throw error
            }
        }
        return summary
    }

    /// Applies every merged change after the replica's cursor, page by page; each page is applied
    /// atomically with its cursor, so an interrupted pull resumes where it stopped.
    public func pull(pageSize: Int? = nil, progress: @Sendable (PullSummary) -> Void = { _ in }) async throws
        -> PullSummary
    {
        var summary = PullSummary()
        summary.cursor = try replica.cursor()
        while true {
            let (page, hasMore) = try await client.pull(after: summary.cursor, limit: pageSize)
            let applied = try replica.apply(page: page)
            summary.pages += 1
            summary.rows += page.rows.count
            summary.applied += applied.applied
            summary.keptLocal += applied.keptLocal
            summary.cursor = page.lastSequence
            progress(summary)
            // A page may be empty yet not the last (rows of tables no longer replicated are
            // passed over); stop only when the server says so, or when the cursor stands still.
            if !hasMore || (page.rows.isEmpty && page.lastSequence == page.firstSequence) { break }
        }
        var after = try replica.conflictsAfter()
        while true {
            let list = try await client.conflicts(replica: replica.id, after: after)
            try replica.record(conflicts: list.conflicts)
            summary.conflicts += list.conflicts
            guard let next = list.next else { break }
            after = next
        }
        return summary
    }

    /// Push, then pull; the callbacks see each step's progress.
    public func sync(
        pushProgress: @Sendable (PushSummary) -> Void = { _ in },
        pullProgress: @Sendable (PullSummary) -> Void = { _ in }
    ) async throws -> (push: PushSummary, pull: PullSummary) {
        let pushed = try await push(progress: pushProgress)
        let pulled = try await pull(progress: pullProgress)
        return (pushed, pulled)
    }
}
