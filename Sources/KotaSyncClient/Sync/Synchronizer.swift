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

/// What a sync did: both halves, each with the error that stopped it, if any.
///
/// An upload problem never stops downloads: the pull runs whatever became of the push.
public struct SyncReport: Sendable {
    /// What the push did before it finished or failed.
    public var push = PushSummary()
    /// What the pull did before it finished or failed.
    public var pull = PullSummary()
    /// Why the push stopped early; nil when everything pending was acknowledged.
    public var pushError: ReplicaError?
    /// Why the pull stopped early; nil when the replica caught up.
    public var pullError: ReplicaError?
}

/// Runs the sync protocol between a replica and its server, over a link that may fail.
///
/// Transient failures are retried as ``retry`` says: the same request again (for a push, the
/// same bytes; for a pull, the same cursor) after a growing, jittered wait; a try that made
/// progress (an acknowledged chunk, an applied page) starts the count again, so a transfer keeps
/// going through drops as long as bytes get through between them. With a ``deadline`` it keeps
/// going through any transient failure until the deadline. Pushes larger than the link's current
/// chunk size (``LinkMeter/sizing``, which starts small and adapts to the drops) go up as chunked
/// uploads that resume from the last chunk the server acknowledged, also after a restart; pull
/// pages are sized from the same budget. A drop therefore costs at most the one chunk or page in
/// flight. Permanent failures are reported at once.
public struct Synchronizer: Sendable {
    public let replica: Replica
    public let client: SyncClient
    /// When and how long to wait before trying a failed request again.
    public var retry: RetryPolicy = .standard
    /// With a deadline, transient failures are retried however many there are in a row, as long
    /// as the next try starts before it; nil: at most ``RetryPolicy/maxAttempts`` in a row.
    public var deadline: ContinuousClock.Instant?
    /// Waits between tries; a test can replace the clock.
    public var sleep: @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }
    /// A number drawn uniformly from [0, 1) for each wait's jitter; a test can make it repeatable.
    public var jitter: @Sendable () -> Double = { Double.random(in: 0..<1) }

    /// What the requests moved and what the drops cost; holds the adaptive chunk size.
    public var meter: LinkMeter { client.meter }

    public init(replica: Replica, client: SyncClient) {
        self.replica = replica
        var client = client
        if client.deviceHeaders.isEmpty { client.deviceHeaders = (try? replica.deviceHeaders()) ?? [:] }
        self.client = client
    }

    /// A synchronizer for `replica` with the server and token stored at `init`, over `transport`.
    public init(replica: Replica, transport: HTTPTransport = .shared) throws {
        self.init(
            replica: replica,
            client: SyncClient(baseURL: replica.serverURL, token: try replica.token(), transport: transport))
    }

    /// Creates a replica at `path` from the server's schema and downloads the current rows.
    ///
    /// A download cut off part way resumes from the last page applied, with smaller pages; with a
    /// `deadline` it keeps trying through any transient failure until then.
    public static func initialize(
        path: String, serverURL: URL, token: String, pageSize: Int? = nil, transport: HTTPTransport = .shared,
        meter: LinkMeter = LinkMeter(), deadline: ContinuousClock.Instant? = nil,
        progress: @Sendable (PullSummary) -> Void = { _ in }
    ) async throws -> (replica: Replica, adopted: Int, pulled: PullSummary) {
        let client = SyncClient(baseURL: serverURL, token: token, transport: transport, meter: meter)
        let schema = try await Retrier(policy: .standard, deadline: deadline).run { try await client.schema() }
        guard schema.protocolVersion == kotaSyncProtocolVersion else {
            throw ReplicaError(
                .invalidResponse,
                "The server speaks protocol version \(schema.protocolVersion); this client speaks \(kotaSyncProtocolVersion). Update kotasync."
            )
        }
        let adopted = try Replica.create(at: path, schema: schema, serverURL: serverURL, token: token)
        let replica = try Replica(path: path)
        var sync = Synchronizer(replica: replica, client: client)
        sync.deadline = deadline
        let pulled = try await sync.pull(pageSize: pageSize, progress: progress)
        return (replica, adopted, pulled)
    }

    /// Sends every pending change, one changeset at a time, each acknowledged before the next.
    ///
    /// A changeset whose reply is lost stays in the outbox and is sent again, byte for byte;
    /// the server recognises its id and replies as before. A changeset the server refuses for
    /// good (bad data) is dropped from the outbox, its changes stay in the log, and the error is
    /// thrown for the operator.
    public func push(progress: @Sendable (PushSummary) -> Void = { _ in }) async throws -> PushSummary {
        var summary = PushSummary()
        try await push(into: &summary, progress: progress)
        return summary
    }

    private func push(
        into summary: inout PushSummary, progress: @Sendable (PushSummary) -> Void = { _ in }
    ) async throws {
        while let outbound = try replica.nextOutbound() {
            do {
                let (reply, replayed) = try await deliver(outbound)
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
                    let upload = try replica.upload(of: outbound)
                    try replica.discard(outbound)
                    // The server would discard it after its expiry anyway; this only frees it sooner.
                    if let upload { try? await client.cancelUpload(id: upload.id) }
                }
                throw error
            }
        }
    }

    /// Sends one changeset: in one request while it fits in a chunk, else (or once a drop made
    /// the chunks smaller than it) as a chunked upload.
    private func deliver(_ outbound: OutboundChangeset) async throws -> (reply: PushReply, replayed: Bool) {
        var failures = 0
        while outbound.body.count <= meter.sizing.bytes, outbound.upload == nil {
            do {
                meter.count { $0.largestChunk = max($0.largestChunk, outbound.body.count) }
                return try await client.push(outbound.body)
            } catch let error as ReplicaError {
                failures += 1
                linkFailed(error)
                try await pause(after: error, failures: failures)
            }
        }
        return try await upload(outbound)
    }

    /// A chunked upload of `outbound`, resumed from where the server's copy ends.
    ///
    /// Every try starts by asking the server how much it holds (announcing the changeset, which
    /// returns the same upload if there is one), so a chunk whose acknowledgement was lost is not
    /// sent again. A chunk cut off by a drop is the most that is sent twice.
    private func upload(_ outbound: OutboundChangeset) async throws -> (reply: PushReply, replayed: Bool) {
        let body = outbound.body
        let announcement = UploadRequest(changesetId: outbound.id, length: body.count, sha256: sha256Hex(body))
        var progress = outbound.upload
        var known: UploadStatus?
        var failures = 0
        // Where a chunk that failed started: the server keeps what arrived of a streamed chunk,
        // and those bytes are not sent again.
        var failedChunkStart: Int?
        while true {
            do {
                guard let current = progress, let status = known else {
                    known =
                        if let current = progress {
                            try await client.uploadStatus(id: current.id)
                        } else {
                            try await client.startUpload(announcement)
                        }
                    if let start = failedChunkStart, known!.id == progress?.id, known!.offset > start {
                        let kept = known!.offset - start
                        meter.count { $0.bytesResent = max(0, $0.bytesResent - kept) }
                    }
                    failedChunkStart = nil
                    progress = UploadProgress(id: known!.id, offset: known!.offset)
                    try replica.recordUpload(progress!, of: outbound)
                    continue
                }
                guard current.offset >= body.count else {
                    let size = max(1, min(meter.sizing.bytes, status.maxChunkBytes))
                    let end = min(body.count, current.offset + size)
                    meter.count { $0.largestChunk = max($0.largestChunk, end - current.offset) }
                    failedChunkStart = current.offset
                    known = try await client.sendChunk(
                        upload: current.id, offset: current.offset, body[current.offset..<end])
                    let carried = max(0, known!.offset - current.offset)
                    meter.update { stats, sizing in
                        stats.chunks += 1
                        sizing.succeeded(carried: carried)
                    }
                    failedChunkStart = nil
                    progress = UploadProgress(id: current.id, offset: known!.offset)
                    try replica.recordUpload(progress!, of: outbound)
                    failures = 0
                    continue
                }
                return try await client.commitUpload(id: current.id)
            } catch let error as ReplicaError {
                // Whatever failed, the next try first learns where the server's copy ends.
                known = nil
                // Only a chunk the link cut off can have left bytes behind (counted as sent again).
                if error.server != nil { failedChunkStart = nil }
                failures += 1
                linkFailed(error)
                switch error.server?.code {
                case .uploadNotFound?, .uploadCorrupt?:
                    // Gone (expired) or discarded as damaged: announce it again.
                    progress = nil
                    if failures < retrier.attempts { continue }
                case .uploadOffsetMismatch?, .uploadIncomplete?:
                    if failures < retrier.attempts { continue }
                default: break
                }
                try await pause(after: error, failures: failures)
            }
        }
    }

    /// Applies every merged change after the replica's cursor, page by page; each page is applied
    /// atomically with its cursor, so an interrupted pull resumes where it stopped. A page that
    /// does not arrive whole is asked for again, smaller (``PullPaging``).
    public func pull(pageSize: Int? = nil, progress: @Sendable (PullSummary) -> Void = { _ in }) async throws
        -> PullSummary
    {
        var summary = PullSummary()
        try await pull(into: &summary, pageSize: pageSize, progress: progress)
        return summary
    }

    private func pull(
        into summary: inout PullSummary, pageSize: Int?, progress: @Sendable (PullSummary) -> Void
    ) async throws {
        summary.cursor = try replica.cursor()
        // What the replica tells the server about itself, as it is now (after a push).
        var client = self.client
        if let headers = try? replica.deviceHeaders() { client.deviceHeaders = headers }
        var paging = PullPaging(requested: pageSize)
        let meter = self.meter
        var failures = 0
        // The next page is asked for as soon as this one's end is known, so the server reads,
        // encodes and sends it while this one is applied; pages are still applied in order, each
        // with its cursor.
        var prefetched: Task<(page: Changeset, hasMore: Bool, bytes: Int), any Error>?
        defer { prefetched?.cancel() }
        while true {
            let page: Changeset
            let hasMore: Bool
            do {
                let bytes: Int
                if let next = prefetched {
                    prefetched = nil
                    (page, hasMore, bytes) = try await next.value
                } else {
                    (page, hasMore, bytes) = try await client.pullPage(
                        after: summary.cursor, limit: paging.limit(budget: meter.sizing.bytes))
                }
                paging.arrived(rows: page.rows.count, bytes: bytes)
                meter.update { _, sizing in sizing.succeeded(carried: bytes) }
                failures = 0
            } catch let cut as PageCut {
                // What arrived of the page bounds its rows' size from below, so the next page,
                // asked for with the smaller budget, is small enough even before any page came
                // whole.
                paging.cut(received: cut.received, limit: cut.limit)
                failures += 1
                linkFailed(cut.error)
                try await pause(after: cut.error, failures: failures)
                continue
            } catch let error as ReplicaError {
                failures += 1
                linkFailed(error)
                try await pause(after: error, failures: failures)
                continue
            }
            // A page may be empty yet not the last (rows of tables no longer replicated are
            // passed over); stop only when the server says so, or when the cursor stands still.
            let last = !hasMore || (page.rows.isEmpty && page.lastSequence == page.firstSequence)
            if !last {
                prefetched = Task { [client, limit = paging.limit(budget: meter.sizing.bytes)] in
                    try await client.pullPage(after: page.lastSequence, limit: limit)
                }
            }
            let applied = try replica.apply(page: page)
            summary.pages += 1
            summary.rows += page.rows.count
            summary.applied += applied.applied
            summary.keptLocal += applied.keptLocal
            summary.cursor = page.lastSequence
            progress(summary)
            if last { break }
        }
        var after = try replica.conflictsAfter()
        while true {
            let list = try await retrying { [after] in try await client.conflicts(replica: replica.id, after: after) }
            try replica.record(conflicts: list.conflicts)
            summary.conflicts += list.conflicts
            guard let next = list.next else { break }
            after = next
        }
    }

    /// Push, then pull, whatever became of the push; each half's error is in the report.
    /// Only a failure of the local database is thrown.
    public func syncReport(
        pushProgress: @Sendable (PushSummary) -> Void = { _ in },
        pullProgress: @Sendable (PullSummary) -> Void = { _ in }
    ) async throws -> SyncReport {
        var report = SyncReport()
        do {
            try await push(into: &report.push, progress: pushProgress)
        } catch let error as ReplicaError {
            report.pushError = error
        }
        do {
            try await pull(into: &report.pull, pageSize: nil, progress: pullProgress)
        } catch let error as ReplicaError {
            report.pullError = error
        }
        return report
    }

    /// Push, then pull. The pull runs even when the push failed; then the push's error is
    /// thrown, its message saying what the pull did. The callbacks see each half's progress.
    public func sync(
        pushProgress: @Sendable (PushSummary) -> Void = { _ in },
        pullProgress: @Sendable (PullSummary) -> Void = { _ in }
    ) async throws -> (push: PushSummary, pull: PullSummary) {
        let report = try await syncReport(pushProgress: pushProgress, pullProgress: pullProgress)
        if var error = report.pushError {
            if let pullError = report.pullError {
                error.message += " The pull failed too: \(pullError.message)"
            } else {
                error.message +=
                    " Downloads went on: pulled \(report.pull.rows) row(s) in \(report.pull.pages) page(s), cursor \(report.pull.cursor)."
            }
            throw error
        }
        if let error = report.pullError { throw error }
        return (report.push, report.pull)
    }

    /// Retries with this synchronizer's policy, deadline, clock and jitter.
    private var retrier: Retrier { Retrier(policy: retry, deadline: deadline, sleep: sleep, jitter: jitter) }

    private func retrying<T>(_ operation: () async throws -> T) async throws -> T {
        try await retrier.run(operation)
    }

    /// Counts a failed transfer as resumed when it will be tried again, and shrinks the chunk
    /// size when the link itself failed (a drop, a stall, a reply cut short), not the server.
    private func linkFailed(_ error: ReplicaError) {
        guard RetryPolicy.isTransient(error) else { return }
        let drop = error.server == nil
        meter.update { stats, sizing in
            stats.resumes += 1
            if drop { sizing.failed() }
        }
    }

    private func pause(after error: ReplicaError, failures: Int) async throws {
        // The first failure after progress, on a link that dropped (not a server that answered):
        // resume at once, after a jitter of up to 0.1 s. On a link that cuts every 30 s the
        // backoff would otherwise idle it for a further half second per cut; a second failure in
        // a row backs off as the policy says.
        if failures == 1, error.code == .serverUnreachable, error.server == nil, retrier.attempts > 1 {
            try await sleep(.milliseconds(Int64(jitter() * 100)))
            return
        }
        try await retrier.pause(after: error, failures: failures)
    }
}
