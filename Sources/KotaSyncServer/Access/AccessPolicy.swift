import KotaSyncCore

/// The one place that answers who may read or write what: every path that hands a device a row,
/// takes a row from one, or opens a staff route asks it, and nothing else decides.
///
/// Pure: the answers follow from the credential, the config's ``SyncRules`` and the row's scope
/// value alone. The callers do the I/O (read the row's scope from the master, render the refusal).
public struct AccessPolicy: Sendable, Equatable {
    /// The config's tables' rules and the OPD hierarchy.
    public let rules: SyncRules

    public init(rules: SyncRules) {
        self.rules = rules
    }

    // MARK: - Rows

    /// Whether a device of `opd` may be sent the row of `table` whose scope value is `scope`:
    /// its values, its key, or anything that names it.
    public func sees(opd: String, table: String, scope: SQLValue?) -> Bool {
        rules.visibility(table: table, scope: scope).contains(opd)
    }

    /// The refusal of a change that a device of `opd` made to a row of `table` — whose scope value
    /// on the master is `old` (nil: the master holds no row) and after the change `new` (nil for a
    /// delete) — or nil when the change is the device's to make. Asked when a change arrives and
    /// again whenever it is finally applied (a held, queued or quarantined change released later).
    public func writeRefusal(opd: String, table: String, old: SQLValue?, new: SQLValue?) -> RowRefusal? {
        rules.refusal(opd: opd, table: table, old: old, new: new)
    }
}

extension ServerConfig {
    /// The access decisions of this config.
    public var access: AccessPolicy { AccessPolicy(rules: rules) }
}
