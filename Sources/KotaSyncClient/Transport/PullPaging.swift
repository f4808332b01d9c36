/// The page size for pulling over an unreliable link.
///
/// A page is applied only once it has arrived whole, so a page cut off mid-transfer is simply
/// asked for again from the same cursor. On a link that cannot carry a large page between two
/// drops, asking again for the same page would never finish: each failure halves the page, and
/// each page that arrives doubles it back towards what was asked for.
public struct PullPaging: Sendable, Equatable {
    /// The `limit` to ask for; nil asks for the server's default page.
    public private(set) var limit: Int?
    /// What the caller asked for (nil: the server's default); never exceeded.
    public let requested: Int?

    /// The page size assumed for the server's default page when a first one fails.
    public static let assumedDefault = 1024
    /// Pages are not halved below this many rows (nor below what was asked for).
    public static let smallest = 16

    /// Paging that starts with `requested` rows per page (nil: the server's default).
    public init(requested: Int?) {
        self.requested = requested
        self.limit = requested
    }

    /// A page did not arrive.
    public mutating func failed() {
        let floor = min(Self.smallest, requested ?? Self.smallest)
        limit = max(floor, (limit ?? min(requested ?? Self.assumedDefault, Self.assumedDefault)) / 2)
    }

    /// A page arrived.
    public mutating func succeeded() {
        guard let current = limit else { return }
        let doubled = current * 2
        if let requested {
            limit = min(requested, doubled)
        } else {
            limit = doubled >= Self.assumedDefault ? nil : doubled
        }
    }
}
