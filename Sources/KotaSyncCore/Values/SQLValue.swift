import Foundation

/// A value exactly as SQLite stores it, tagged with its storage class.
///
/// KotaSync never converts between storage classes: the integer `1`, the real `1.0`, the text
/// `"1"` and the blob `x'31'` are four different values, and each travels through capture,
/// the wire, the merge and the pull unchanged. Reals compare by bit pattern, so `-0.0` and
/// `0.0` are different values too.
public enum SQLValue: Sendable, Hashable, CustomStringConvertible {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])

    /// The SQLite storage class name, as `typeof()` reports it.
    public var storageClass: StorageClass {
        switch self {
        case .null: .null
        case .integer: .integer
        case .real: .real
        case .text: .text
        case .blob: .blob
        }
    }

    public static func == (lhs: SQLValue, rhs: SQLValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): true
        case let (.integer(a), .integer(b)): a == b
        case let (.real(a), .real(b)): a.bitPattern == b.bitPattern
        case let (.text(a), .text(b)): a.utf8.elementsEqual(b.utf8)
        case let (.blob(a), .blob(b)): a == b
        default: false
        }
    }

    public func hash(into hasher: inout Hasher) {
        switch self {
        case .null: hasher.combine(0)
        case .integer(let v):
            hasher.combine(1)
            hasher.combine(v)
        case .real(let v):
            hasher.combine(2)
            hasher.combine(v.bitPattern)
        case .text(let v):
            hasher.combine(3)
            hasher.combine(v)
        case .blob(let v):
            hasher.combine(4)
            hasher.combine(v)
        }
    }

    public var description: String {
        switch self {
        case .null: "NULL"
        case .integer(let v): String(v)
        case .real(let v): String(v)
        case .text(let v): "'" + v.replacingOccurrences(of: "'", with: "''") + "'"
        case .blob(let v): "x'" + v.hexString + "'"
        }
    }
}

/// The five SQLite storage classes.
public enum StorageClass: String, Sendable, Codable, CaseIterable {
    case null = "null"
    case integer = "integer"
    case real = "real"
    case text = "text"
    case blob = "blob"
}
