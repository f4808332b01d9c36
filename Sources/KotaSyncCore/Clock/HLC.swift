/// A hybrid logical clock stamp: 48 bits of Unix milliseconds and a 16-bit logical counter.
///
/// Stamps order changes that no causal link orders: the merge consults them only for edits
/// made concurrently (neither side had seen the other), and then the higher stamp wins, with the
/// replica id breaking ties. Stamps are compared as plain unsigned 64-bit integers.
public struct HLC: RawRepresentable, Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// A stamp from its parts.
    public init(milliseconds: UInt64, counter: UInt16) {
        rawValue = (milliseconds << 16) | UInt64(counter)
    }

    /// The zero stamp, older than every real one.
    public static let zero = HLC(rawValue: 0)

    /// Unix time in milliseconds.
    public var milliseconds: UInt64 { rawValue >> 16 }
    /// The logical counter.
    public var counter: UInt16 { UInt16(truncatingIfNeeded: rawValue) }

    public static func < (a: HLC, b: HLC) -> Bool { a.rawValue < b.rawValue }

    public var description: String { "\(milliseconds).\(counter)" }
}

/// The state machine of a hybrid logical clock (Kulkarni et al., 2014).
///
/// Pure: the caller passes the wall clock in, so every rule is testable without a real clock.
public struct HybridClock: Sendable, Equatable {
    /// The last stamp issued or received.
    public private(set) var last: HLC

    public init(last: HLC = .zero) { self.last = last }

    /// A stamp for a local event that happened at `wallMilliseconds`: never below the wall
    /// clock, always above every stamp issued or received before.
    public mutating func tick(wallMilliseconds: UInt64) -> HLC {
        let next: HLC
        if wallMilliseconds > last.milliseconds {
            next = HLC(milliseconds: wallMilliseconds, counter: 0)
        } else {
            next = last.successor
        }
        last = next
        return next
    }

    /// Takes in a stamp seen from elsewhere, so that later local stamps order after it.
    public mutating func receive(_ stamp: HLC) {
        if stamp > last { last = stamp }
    }
}

extension HLC {
    /// The next stamp: the counter plus one, carrying into the milliseconds on overflow. The
    /// largest stamp is its own successor rather than wrapping to zero (the server's clamp keeps
    /// real stamps far from it).
    public var successor: HLC { rawValue == .max ? self : HLC(rawValue: rawValue + 1) }
}

/// Bounds how far ahead of the server's own clock a device's stamp may be.
///
/// A device whose clock runs fast would otherwise win every concurrent edit for as long as its
/// clock stays ahead. A stamp beyond the bound is replaced by the server's wall clock at the
/// bound and the change is flagged, so the device's wall clock never decides alone.
public struct ClockSkewPolicy: Sendable, Equatable {
    /// How far ahead of the server a stamp may be, in milliseconds.
    public var maxAheadMilliseconds: UInt64

    public init(maxAheadMilliseconds: UInt64 = 5 * 60 * 1000) {
        self.maxAheadMilliseconds = maxAheadMilliseconds
    }

    /// The stamp the server uses for `stamp` when its own clock reads `serverMilliseconds`,
    /// and whether it had to clamp it.
    public func admit(_ stamp: HLC, serverMilliseconds: UInt64) -> (stamp: HLC, clamped: Bool) {
        let limit = serverMilliseconds + maxAheadMilliseconds
        guard stamp.milliseconds > limit else { return (stamp, false) }
        return (HLC(milliseconds: limit, counter: stamp.counter), true)
    }
}
