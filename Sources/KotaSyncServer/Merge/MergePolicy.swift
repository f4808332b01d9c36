/// How concurrent writes of one column are decided (config: a table's `policy`, or a column's
/// entry under `columns`).
public enum ColumnPolicy: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// The later hybrid-clock stamp wins (then the higher replica id); the loser is recorded (`auto`).
    case lww
    /// Changes made at the Command Center (the master itself: reviewers' resolutions and seeds)
    /// win over OPD changes; among equals, `lww`.
    case serverWins
    /// Changes made by this OPD's devices win for the column; among equals, `lww`.
    case authority(String)
    /// The master keeps its value; a concurrent incoming value waits for a reviewer (`open`).
    case manual
    /// A numeric quantity: concurrent changes both count (base + Δa + Δb).
    case additive

    /// The name written in the config and in conflict records.
    public var description: String {
        switch self {
        case .lww: "lww"
        case .serverWins: "server-wins"
        case .authority(let opd): "authority:\(opd)"
        case .manual: "manual"
        case .additive: "additive"
        }
    }

    /// Parses a config value: `lww`, `server-wins`, `authority:<opd>` (or `authority: <opd>`),
    /// `manual`, `additive`.
    public init?(parsing text: String) {
        let t = text.trimmingCharacters(in: .whitespaces)
        switch t {
        case "lww": self = .lww
        case "server-wins": self = .serverWins
        case "manual": self = .manual
        case "additive": self = .additive
        default:
            guard t.hasPrefix("authority:") else { return nil }
            let opd = t.dropFirst("authority:".count).trimmingCharacters(in: .whitespaces)
            guard !opd.isEmpty else { return nil }
            self = .authority(opd)
        }
    }
}

/// How a delete racing a concurrent update of the same row is decided (config: a table's `delete`).
public enum DeletePolicy: String, Sendable, Equatable, Hashable, CaseIterable {
    /// The row stays (with the update); the delete is recorded (`auto`). The default: clinical
    /// records are never lost to a delete made without seeing the latest change.
    case updateWins = "update-wins"
    /// The row goes; the update is recorded (`auto`) and its values stay in the history.
    case deleteWins = "delete-wins"
    /// The row stays as for `update-wins`, and the delete waits for a reviewer (`open`).
    case manual
}

/// A table's merge policies.
public struct TablePolicy: Sendable, Equatable {
    /// One policy per non-key column, in schema order.
    public var columns: [ColumnPolicy]
    public var delete: DeletePolicy

    public init(columns: [ColumnPolicy], delete: DeletePolicy = .updateWins) {
        self.columns = columns
        self.delete = delete
    }

    /// `lww` for every column, `update-wins` for deletes.
    public static func standard(columnCount: Int) -> TablePolicy {
        TablePolicy(columns: Array(repeating: .lww, count: columnCount))
    }
}
