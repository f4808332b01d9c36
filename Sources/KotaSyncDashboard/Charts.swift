/// Server-rendered SVG charts: no JavaScript, readable without colour (values are labelled).
enum Charts {
    static let palette = ["#12395b", "#2e7d32", "#c62828", "#ef6c00", "#6a1b9a", "#00838f", "#5d4037", "#455a64"]

    /// A stacked bar per day, one colour per series, with a legend.
    static func stackedBars(days: [String], series: [(name: String, values: [Int])], id: String) -> String {
        let width = max(300, days.count * 48 + 60)
        let height = 220
        let plotHeight = 150.0
        let totals = days.indices.map { d in series.reduce(0) { $0 + $1.values[d] } }
        let top = Double(max(totals.max() ?? 0, 1))
        var svg =
            "<svg id=\"\(id)\" xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height + 20 * ((series.count + 3) / 4))\" role=\"img\">"
        for (d, day) in days.enumerated() {
            let x = 40 + d * 48
            var y = 10 + plotHeight
            for (s, entry) in series.enumerated() where entry.values[d] > 0 {
                let h = Double(entry.values[d]) / top * plotHeight
                y -= h
                svg +=
                    "<rect x=\"\(x)\" y=\"\(fmt(y))\" width=\"36\" height=\"\(fmt(h))\" fill=\"\(palette[s % palette.count])\"><title>\(escape(entry.name)) \(escape(day)): \(entry.values[d])</title></rect>"
            }
            svg +=
                "<text x=\"\(x + 18)\" y=\"\(fmt(y - 3))\" font-size=\"10\" text-anchor=\"middle\">\(totals[d])</text>"
            svg +=
                "<text x=\"\(x + 18)\" y=\"\(Int(plotHeight) + 26)\" font-size=\"9\" text-anchor=\"middle\">\(escape(String(day.suffix(5))))</text>"
        }
        svg +=
            "<line x1=\"36\" y1=\"\(Int(plotHeight) + 10)\" x2=\"\(width - 10)\" y2=\"\(Int(plotHeight) + 10)\" stroke=\"#888\"/>"
        for (s, entry) in series.enumerated() {
            let x = 40 + (s % 4) * 160
            let y = height + 20 * (s / 4) - 4
            svg += "<rect x=\"\(x)\" y=\"\(y - 9)\" width=\"10\" height=\"10\" fill=\"\(palette[s % palette.count])\"/>"
            svg += "<text x=\"\(x + 14)\" y=\"\(y)\" font-size=\"11\">\(escape(entry.name))</text>"
        }
        return svg + "</svg>"
    }

    static func fmt(_ v: Double) -> String { String(format: "%.1f", v) }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
