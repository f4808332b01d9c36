import Foundation
import KotaSyncCore

/// What a change of the config's sync rules since the master's last start does to its rows'
/// bookkeeping: the pure decision both backends apply at start-up.
///
/// For each table whose rules changed (``changedTables``), every row's scope value is read again
/// from the row by the new rules, and a row whose visibility changed takes a new version, so the
/// replicas that now see it pull it and the OPDs that no longer see it are sent its removal
/// (`gone_for`). Nothing else is sent again. On a new master (`fresh`) nobody saw a row before,
/// so only the scopes are written.
struct RuleChange {
    let config: ServerConfig
    /// The rules the master last started with, by table (nil: none recorded — a master older
    /// than the rules, when every device saw every row).
    let stored: [String: TableRules]?
    let fresh: Bool

    /// The rules of every table now.
    var current: [String: TableRules] {
        Dictionary(uniqueKeysWithValues: config.tables.map { ($0.name, config.rules.rules(for: $0.name)) })
    }

    /// The tables whose rules changed since the last start.
    var changedTables: [TableSchema] {
        let current = current
        return config.tables.filter { stored?[$0.name] != current[$0.name] }
    }

    /// How the current rules are kept in the master (the `sync_rules` value), to compare at the
    /// next start.
    func encodedRules() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: try encoder.encode(current), as: UTF8.self)
    }

    /// The rules kept by ``encodedRules()``; nil for none or for text that is not such a value.
    static func decodeRules(_ text: String?) -> [String: TableRules]? {
        text.flatMap { try? JSONDecoder().decode([String: TableRules].self, from: Data($0.utf8)) }
    }

    /// The bookkeeping of one row of `table` (a changed table) under the new rules.
    ///
    /// - Parameters:
    ///   - key: the row's primary key.
    ///   - values: its non-key values in schema order; nil for a row deleted or not in the table
    ///     (its scope stays as it was).
    ///   - scope: the scope value the master keeps for it now.
    ///   - goneFor: the OPDs it keeps as no longer seeing the row (`,a,b,`).
    /// - Returns: the scope and `gone_for` to keep, and whether the row takes a new version.
    func update(table: TableSchema, key: [SQLValue], values: [SQLValue]?, scope: SQLValue, goneFor: String?)
        -> (scope: SQLValue, goneFor: String?, bump: Bool)
    {
        let rules = config.rules.rules(for: table.name)
        var newScope = scope
        if let column = rules.scope, let values {
            if let k = table.primaryKey.firstIndex(where: { $0.name == column }) {
                newScope = key[k]
            } else if let c = table.columns.firstIndex(where: { $0.name == column }) {
                newScope = values[c]
            }
        }
        guard !fresh else { return (newScope, goneFor, false) }
        let previous = SyncRules(tables: stored ?? [:], opds: config.opds)
        let was = stored?[table.name] ?? TableRules()
        let before = previous.visibility(table: table.name, scope: scope)
        let after = config.rules.visibility(table: table.name, scope: newScope)
        guard before != after || was.hidden != rules.hidden else { return (newScope, goneFor, false) }
        let gone = VisibilityChange(rules: config.rules).goneFor(previous: goneFor, before: before, after: after)
        return (newScope, gone, true)
    }
}
