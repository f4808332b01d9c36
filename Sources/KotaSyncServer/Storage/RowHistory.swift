import Foundation
import KotaSyncCore

/// A row's versions as the history role tells them (``OverviewStore/history(table:key:)``),
/// written once for every backend: the backend reads the row's current values and its history
/// entries, newest first; this walks back from the current state through each entry's replaced
/// values. Pure.
enum RowHistory {
    /// One history entry as stored (`history` / `_ks_history`).
    struct Entry: Sendable {
        var version: UInt64
        var writer: Int64
        /// The change's stamp, as stored (the bits of the unsigned stamp).
        var stamp: Int64
        /// The change's operation (``KotaSyncCore/Changeset/Operation`` raw value).
        var operation: Int
        /// The values it replaced (`HistoryCoding`).
        var old: [UInt8]
        var clamped: Bool
    }

    /// The versions of a row of `table` whose current values are `current` (nil: deleted, or
    /// not held), from its `entries` newest first; `writer` gives a writer number's replica id
    /// and OPD.
    static func versions(
        table: TableSchema, current: [SQLValue]?, entries: [Entry], writer: (Int64) -> (id: UUID, opd: String)
    ) throws -> [RowVersion] {
        var state = current
        var out: [RowVersion] = []
        func named(_ values: [SQLValue]) -> [String: SQLValue] {
            Dictionary(uniqueKeysWithValues: zip(table.columns.map(\.name), values))
        }
        for entry in entries {
            let op = Changeset.Operation(rawValue: UInt8(truncatingIfNeeded: entry.operation)) ?? .update
            let replaced = try HistoryCoding.decode(entry.old).filter { $0.0 < table.columns.count }
            let who = writer(entry.writer)
            out.append(
                RowVersion(
                    version: entry.version, operation: op == .upsert ? "upsert" : op == .delete ? "delete" : "update",
                    replicaId: who.id, opd: who.opd, stamp: String(UInt64(bitPattern: entry.stamp)),
                    clamped: entry.clamped,
                    replaced: Dictionary(replaced.map { (table.columns[$0.0].name, $0.1) }, uniquingKeysWith: { $1 }),
                    values: state.map(named)))
            // Step back: the row before this change.
            if op == .delete {
                var before = Array(repeating: SQLValue.null, count: table.columns.count)
                for (c, v) in replaced { before[c] = v }
                state = before
            } else if replaced.isEmpty, entries.last?.version == entry.version {
                state = nil
            } else {
                for (c, v) in replaced { state?[c] = v }
            }
        }
        return out
    }
}
