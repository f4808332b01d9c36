import Foundation
import KotaSyncCore

/// The review queue as a table for a terminal: one line per record.
struct ConflictTable {
    static let header = [
        "ID", "STATUS", "KIND", "TABLE", "KEY", "COLUMN", "POLICY", "WINNER (LOCAL)", "LOSER (REMOTE)", "DECIDED",
    ]
    /// Cells longer than this are cut, so that a long text value does not push the rest away.
    static let maxCell = 40

    let rows: [[String]]

    init(_ records: [ConflictReport]) {
        rows = records.map { r in
            [
                String(r.id), r.status, r.kind.rawValue, r.table, keyText(r.primaryKey), r.column ?? "-", r.policy,
                sideText(r.winner, r), sideText(r.loser, r), r.decidedAt,
            ]
        }
    }

    var rendered: String {
        let cells = ([Self.header] + rows).map { $0.map { Self.cut($0) } }
        let widths = Self.header.indices.map { column in cells.map { $0[column].count }.max() ?? 0 }
        return cells.map { row in
            zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ")
                .trimmingCharacters(in: .whitespaces)
        }.joined(separator: "\n")
    }

    private static func cut(_ text: String) -> String {
        text.count <= maxCell ? text : String(text.prefix(maxCell - 1)) + "…"
    }
}

/// One record in full, for `conflicts show` and after `conflicts resolve`.
struct ConflictDetail {
    let record: ConflictReport

    init(_ record: ConflictReport) { self.record = record }

    var rendered: String {
        let r = record
        var lines = [
            "Conflict \(r.id): \(r.kind.rawValue) on \(r.table)\(r.column.map { ".\($0)" } ?? "") [\(keyText(r.primaryKey))]",
            "  status:    \(r.status)",
            "  policy:    \(r.policy)",
            "  decided:   \(r.decidedAt)",
        ]
        if let reason = r.reason { lines.append("  reason:    \(reason)") }
        if r.column != nil { lines.append("  base:      \(r.base?.description ?? "(not kept)")") }
        // Staff are told both sides; only a device's view leaves one out.
        for (label, side) in [
            ("local  (winner, the master's value):", r.winner), ("remote (loser):                    ", r.loser),
        ] {
            guard let side else { continue }
            lines.append("  \(label) \(valueText(side.value))")
            lines.append("         \(sideOrigin(side))")
        }
        if let held = r.held {
            lines.append("  held row (not in the master): \(held.operation)")
            for (column, value) in held.values.sorted(by: { $0.key < $1.key }) {
                lines.append("    \(column) = \(value)")
            }
        }
        if let related = r.related {
            let what =
                switch r.kind {
                case .unique: "collided with"
                case .foreignKey: "needs parent"
                default: "waits behind"
                }
            lines.append("  \(what): \(related.table) [\(keyText(related.primaryKey))]")
        }
        if let resolution = r.resolution {
            lines.append("  resolution: take \(resolution.take.rawValue), by \(resolution.by) at \(resolution.at)")
            if let values = resolution.values, !values.isEmpty {
                let text = values.sorted { $0.key < $1.key }.map { "\($0.key) = \($0.value)" }.joined(separator: ", ")
                lines.append("    wrote: \(text)")
            }
            if let version = resolution.masterVersion { lines.append("    master version: \(version)") }
            if let note = resolution.note { lines.append("    note: \(note)") }
        } else if [.open, .auto, .held].contains(ConflictReport.Status(rawValue: r.status)) {
            lines.append(
                "  decide with: kotasync-server conflicts resolve \(r.id) --take local|remote|merged [--set COLUMN=VALUE]"
            )
        }
        return lines.joined(separator: "\n")
    }

    private func valueText(_ value: SQLValue?) -> String {
        value?.description ?? (record.column == nil ? "(row change)" : "(delete)")
    }

    private func sideOrigin(_ side: ConflictReport.Side) -> String {
        var text = "OPD \(side.opd), replica \(side.replicaId.uuidString), stamp \(side.stamp)"
        if let raw = UInt64(side.stamp) {
            let date = Date(timeIntervalSince1970: Double(HLC(rawValue: raw).milliseconds) / 1000)
            text += " (\(date.formatted(.iso8601)))"
        }
        return text
    }
}

private func keyText(_ key: [SQLValue]) -> String {
    key.map(\.description).joined(separator: ", ")
}

private func sideText(_ side: ConflictReport.Side?, _ record: ConflictReport) -> String {
    guard let side else { return "-" }
    // A delete_update record has no values: the kind says which side deleted.
    return "\(side.opd) \(side.value?.description ?? (record.column == nil ? "" : "(delete)"))".trimmingCharacters(
        in: .whitespaces)
}
