/// The page size for pulling over an unreliable link, in rows, from a byte budget.
///
/// A page is applied only once it has arrived whole, so a page cut off mid-transfer is asked for
/// again from the same cursor: what a drop costs is the part of the one page in flight. Pages are
/// therefore sized like upload chunks (``ChunkSizing``): the budget in bytes that the link's drops
/// allow, turned into rows with the bytes per row of the pages seen so far. Pages shrink after a
/// drop and grow while they arrive, never past what the caller asked for.
public struct PullPaging: Sendable, Equatable {
    /// What the caller asked for (nil: the server's default); never exceeded.
    public let requested: Int?
    /// Encoded bytes per row, as the last page with rows measured it (nil before the first).
    public private(set) var bytesPerRow: Double?

    /// Rows assumed to cost this many bytes before a page has been measured.
    public static let assumedBytesPerRow = 64.0
    /// Pages are not made smaller than this many rows (nor than what was asked for).
    public static let smallest = 4
    /// The largest page asked for when the caller leaves it to the server (whose `max_pull_page`
    /// lowers it further).
    public static let largest = 10_000

    /// Paging of at most `requested` rows per page (nil: as the server allows).
    public init(requested: Int?) {
        self.requested = requested
    }

    /// The `limit` to ask for when `budget` bytes may be in flight; nil asks for the server's
    /// default page (only when the budget allows more than the largest page).
    public func limit(budget: Int) -> Int? {
        let rows = Int((Double(budget) / (bytesPerRow ?? Self.assumedBytesPerRow)).rounded(.down))
        let cap = requested ?? Self.largest
        let limit = min(cap, max(min(Self.smallest, cap), rows))
        return requested == nil && limit >= Self.largest ? nil : limit
    }

    /// A page of `rows` rows arrived in `bytes` bytes.
    public mutating func arrived(rows: Int, bytes: Int) {
        guard rows > 0, bytes > 0 else { return }
        bytesPerRow = max(1, Double(bytes) / Double(rows))
    }

    /// A page asked for with `limit` rows (nil: the server's default) was cut off after
    /// `received` bytes: its rows are at least `received ÷ limit` bytes each. Without this, a link
    /// that never lets a first page through whole would never learn that its rows are large.
    public mutating func cut(received: Int, limit: Int?) {
        guard received > 0 else { return }
        let rows = Double(limit ?? Self.largest)
        bytesPerRow = max(bytesPerRow ?? 1, Double(received) / rows)
    }
}
