import KotaSyncCore

extension AccessPolicy {
    /// Whether a change written by a device of `opd` may name the row of `table` whose scope
    /// value is `scope` as its parent (a foreign key): a row of its OPD's subtree, or of a table
    /// without a scope. Unlike ``sees(opd:table:scope:)`` this holds for tables that travel up
    /// only, whose rows a device writes but is never sent. A change whose parent it may not name
    /// waits exactly as one whose parent the master does not hold.
    public func mayReference(opd: String, table: String, scope: SQLValue?) -> Bool {
        owners(table: table, scope: scope).contains(opd)
    }
}
