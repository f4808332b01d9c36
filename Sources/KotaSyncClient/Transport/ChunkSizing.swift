/// How many bytes to put in the next upload chunk (or pull page), learned from the link.
///
/// A chunk cut off by a drop is sent again whole, so a chunk should be small beside the bytes
/// the link carries between two drops; but every chunk costs a round trip, so it should not be
/// smaller than it must. The rule: start small, double after each chunk that arrives, and after a
/// drop cap the size at a quarter of what the link carried since the drop before (halve it when
/// the drop came before anything arrived). On a link that drops every 240 kB no chunk grows past
/// 60 kB, and a drop costs at most the one chunk in flight. A link that stops dropping earns its
/// size back: the cap doubles after every eight caps' worth of bytes carried without a drop.
///
/// A pure value: ``Synchronizer`` reports what happened and asks for the next size.
public struct ChunkSizing: Sendable, Equatable {
    /// The size of the next chunk, in bytes.
    public private(set) var bytes: Int
    /// The largest size the link's drops allow for now.
    public private(set) var ceiling: Int
    /// Bytes carried since the last drop (or since the start).
    public private(set) var run = 0
    /// Bytes carried since the ceiling last changed.
    private var sinceCeiling = 0
    /// Never smaller than this.
    public let minimum: Int
    /// Never larger than this.
    public let maximum: Int

    /// Sizing that starts at `start` bytes and stays within `minimum...maximum`.
    public init(start: Int = 16 * 1024, minimum: Int = 4 * 1024, maximum: Int = 1024 * 1024) {
        self.minimum = max(1, minimum)
        self.maximum = max(self.minimum, maximum)
        self.bytes = min(max(start, self.minimum), self.maximum)
        self.ceiling = self.maximum
    }

    /// A chunk (or page) of `carried` bytes arrived.
    public mutating func succeeded(carried: Int) {
        run += carried
        sinceCeiling += carried
        if ceiling < maximum, sinceCeiling >= 8 * ceiling {
            ceiling = min(maximum, ceiling * 2)
            sinceCeiling = 0
        }
        bytes = min(bytes * 2, ceiling)
    }

    /// The link dropped (a chunk or page did not arrive whole, or stood still too long).
    public mutating func failed() {
        let cap = run > 0 ? run / 4 : bytes / 2
        ceiling = min(maximum, max(minimum, cap))
        bytes = min(bytes, ceiling)
        run = 0
        sinceCeiling = 0
    }
}
