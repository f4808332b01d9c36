import Foundation

/// An `application/x-www-form-urlencoded` body or query, as name → value (the last one wins).
struct Form {
    var fields: [String: String] = [:]

    init(_ text: String) {
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = Self.decode(String(parts[0]))
            let value = parts.count > 1 ? Self.decode(String(parts[1])) : ""
            if !name.isEmpty { fields[name] = value }
        }
    }

    subscript(_ name: String) -> String? { fields[name] }

    static func decode(_ s: String) -> String {
        s.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? s
    }
}
