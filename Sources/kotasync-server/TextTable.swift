/// Rows aligned in columns for a terminal, with upper-case headers (as `conflicts list` prints).
struct TextTable {
    let header: [String]
    let rows: [[String]]

    var rendered: String {
        let cells = [header.map { $0.uppercased() }] + rows
        let widths = header.indices.map { column in cells.map { $0[column].count }.max() ?? 0 }
        return cells.map { row in
            zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ")
                .trimmingCharacters(in: .whitespaces)
        }.joined(separator: "\n")
    }
}
