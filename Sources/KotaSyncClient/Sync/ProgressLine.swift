/// The one-line progress report of a transfer: rows and bytes done, the rate, and the time left
/// when the total is known. Pure formatting; the command line draws it.
public struct ProgressLine: Sendable, Equatable {
    /// What is moving: "push", "pull", "download".
    public var label: String
    /// The rows the transfer will move in all, when known.
    public var totalRows: Int?

    public init(label: String, totalRows: Int? = nil) {
        self.label = label
        self.totalRows = totalRows
    }

    /// The line after `elapsed` seconds with `rows` rows and `bytes` bytes (0: not counted) done,
    /// and what the link did meanwhile (chunks, resumes, bytes moved again), if anything.
    public func render(rows: Int, bytes: Int, elapsed: Double, link: LinkStats? = nil) -> String {
        var parts: [String] = []
        if let totalRows, totalRows > 0 {
            let percent = min(100, rows * 100 / totalRows)
            parts.append("\(Self.count(rows))/\(Self.count(totalRows)) rows (\(percent)%)")
        } else {
            parts.append("\(Self.count(rows)) rows")
        }
        if bytes > 0 { parts.append(Self.size(Double(bytes))) }
        if elapsed >= 0.5 {
            let rate = Double(rows) / elapsed
            parts.append(
                "\(Self.count(Int(rate.rounded()))) rows/s"
                    + (bytes > 0 ? ", \(Self.size(Double(bytes) / elapsed))/s" : ""))
            if let totalRows, rate > 0, rows < totalRows {
                parts.append(Self.duration(Double(totalRows - rows) / rate) + " left")
            }
        }
        if let link {
            if link.chunks > 0 { parts.append("\(Self.count(link.chunks)) chunk(s)") }
            if link.resumes > 0 {
                parts.append("\(Self.count(link.resumes)) resume(s), \(Self.size(Double(link.bytesResent))) again")
            }
        }
        return "\(label): " + parts.joined(separator: ", ")
    }

    /// 12345 → "12,345".
    static func count(_ n: Int) -> String {
        let digits = Array(String(abs(n)))
        var out = ""
        for (i, d) in digits.enumerated() {
            if i > 0, (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(d)
        }
        return (n < 0 ? "-" : "") + out
    }

    /// Bytes in B, kB, MB or GB (powers of 1000), one decimal above bytes.
    public static func size(_ bytes: Double) -> String {
        let units = ["B", "kB", "MB", "GB"]
        var value = bytes
        var unit = 0
        while value >= 1000, unit < units.count - 1 {
            value /= 1000
            unit += 1
        }
        if unit == 0 { return "\(Int(value)) B" }
        let tenths = Int((value * 10).rounded())
        return "\(tenths / 10).\(tenths % 10) \(units[unit])"
    }

    /// Seconds as "42s", "3m05s" or "2h03m".
    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded(.up))
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m" + pad(s % 60) + "s" }
        return "\(s / 3600)h" + pad(s % 3600 / 60) + "m"
    }

    private static func pad(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
}
