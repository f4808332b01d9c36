import Synchronization

/// What a sync moved over the link, and what the link's failures cost.
public struct LinkStats: Codable, Sendable, Equatable {
    /// Request body bytes handed to the connection (pushes, chunks, announcements).
    public var bytesSent = 0
    /// Answer body bytes received (pull pages, replies).
    public var bytesReceived = 0
    /// Of those sent or received, the bytes of requests that failed part way: they are sent (or
    /// asked for) again. At most one chunk or page per drop.
    public var bytesResent = 0
    /// Requests made.
    public var requests = 0
    /// Upload chunks the server acknowledged.
    public var chunks = 0
    /// Transfers that failed on the way (a drop, a stall, a refused connection, a `5xx`) and were
    /// resumed or tried again.
    public var resumes = 0
    /// The largest upload chunk (or single-request push) sent, in bytes: what one drop can cost.
    public var largestChunk = 0
    /// The most bytes of one pull page received, whole or cut off: what one drop can cost.
    public var largestPage = 0

    /// Nothing moved yet.
    public init() {}
}

/// Counts what a ``Synchronizer``'s requests move, and keeps the link's learned ``ChunkSizing``
/// across its pushes and pulls. Shared by the copies of a synchronizer (and its client), read by
/// the command line to draw progress.
public final class LinkMeter: Sendable {
    private let state: Mutex<(stats: LinkStats, sizing: ChunkSizing)>

    /// A meter with nothing counted, whose sizing starts as `sizing`.
    public init(sizing: ChunkSizing = ChunkSizing()) {
        state = Mutex((LinkStats(), sizing))
    }

    /// What moved so far.
    public var stats: LinkStats { state.withLock { $0.stats } }

    /// The link's current chunk sizing.
    public var sizing: ChunkSizing { state.withLock { $0.sizing } }

    func update<T>(_ body: (inout LinkStats, inout ChunkSizing) -> T) -> T {
        state.withLock { body(&$0.stats, &$0.sizing) }
    }

    func count(_ body: (inout LinkStats) -> Void) {
        state.withLock { body(&$0.stats) }
    }
}
