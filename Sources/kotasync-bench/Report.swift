import Foundation

/// One line of the results: a measured figure, what it is compared with, and its target.
struct Figure: Codable {
    var id: String
    var name: String
    var value: Double
    var unit: String
    /// The baseline measured in the same run, if the figure has one.
    var baseline: Double?
    var baselineName: String?
    /// value ÷ baseline (or its inverse where lower is better, so that > 1 is always "ahead").
    var ratio: Double?
    var target: String?
    var met: Bool?
    var note: String?

    /// This figure with `other` (the same figure in the same run on the SQLite master) as its
    /// baseline: the ratio is value ÷ baseline, or its inverse when `lowerIsBetter`, so that
    /// above 1 is always ahead of the SQLite master.
    func compared(with other: Figure, lowerIsBetter: Bool = false) -> Figure {
        var figure = self
        figure.baseline = other.value
        figure.baselineName = "SQLite master (figure \(other.id))"
        figure.ratio = lowerIsBetter ? other.value / value : value / other.value
        return figure
    }
}

/// Everything one benchmark run measured.
struct Report: Codable {
    var machine: String
    var command: String
    var shape: [String: Int]
    var figures: [Figure] = []
    var checks: [String: Bool] = [:]

    mutating func add(_ figure: Figure) { figures.append(figure) }

    var markdown: String {
        var lines = [
            "Machine: \(machine)",
            "Command: `\(command)`",
            "Workload: " + shape.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "),
            "",
            "| # | figure | KotaSync | baseline (same run) | ratio | target | met |",
            "|---|---|---:|---:|---:|---|---|",
        ]
        for f in figures {
            let baseline = f.baseline.map { "\(format($0)) \(f.unit) (\(f.baselineName ?? ""))" } ?? ""
            lines.append(
                "| \(f.id) | \(f.name) | \(format(f.value)) \(f.unit) | \(baseline) | \(f.ratio.map { String(format: "%.2f×", $0) } ?? "") | \(f.target ?? "") | \(f.met.map { $0 ? "yes" : "**no**" } ?? "") |"
            )
        }
        let notes = figures.compactMap { f in f.note.map { "- \(f.id): \($0)" } }
        if !notes.isEmpty { lines += [""] + notes }
        lines += [
            "",
            "Checks: "
                + checks.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value ? "ok" : "FAILED")" }.joined(
                    separator: ", "),
        ]
        return lines.joined(separator: "\n")
    }

    private func format(_ v: Double) -> String {
        if v >= 100 { return String(format: "%.0f", v) }
        if v >= 1 { return String(format: "%.2f", v) }
        return String(format: "%.4f", v)
    }
}

/// A description of the machine for the report.
func machineDescription() -> String {
    let cpu =
        (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?.split(separator: "\n")
        .first { $0.hasPrefix("model name") }?.split(separator: ":").last?.trimmingCharacters(in: .whitespaces)
        ?? "unknown CPU"
    return
        "\(ProcessInfo.processInfo.activeProcessorCount) cores, \(cpu), \(ProcessInfo.processInfo.physicalMemory >> 30) GiB"
}
