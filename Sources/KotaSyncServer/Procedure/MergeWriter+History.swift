import KotaSyncCore

/// Reading the history: the values a row had before a change, for resurrections, record bases
/// and additive deltas. (Writing it is one ``MergeStore/appendHistory(_:)`` per change.)
extension MergeWriter {
    /// The row's values when it was last deleted, in schema order; nil if it never was.
    func valuesBeforeDeletion(_ table: TableSchema, key: [SQLValue]) throws -> [SQLValue]? {
        guard let old = try store.valuesAtLastDeletion(of: table, key: key) else { return nil }
        var values = Array(repeating: SQLValue.null, count: table.columns.count)
        for (c, v) in old where c < values.count { values[c] = v }
        return values
    }

    /// The value `column` had at master version `base`: the old value saved by the first change
    /// after `base` that touched it, or the current value if none did.
    func valueAt(base: UInt64, column: Int, table: TableSchema, key: [SQLValue], current: SQLValue?) throws
        -> SQLValue?
    {
        guard base > 0 else { return nil }
        return try store.firstReplaced(of: table, key: key, column: column, after: base) ?? current
    }
}
