/// What a column of each affinity keeps of a value written to it.
///
/// The master and every replica create their tables from the same DDL, and SQLite applies the
/// declared type's affinity to every value it stores. For the storage classes KotaSync lets into
/// a column (``Affinity/accepts(_:)``) that changes two things, and only these:
///
/// * A REAL column keeps `-0.0` as `0.0` (SQLite writes a real with an integer value as an
///   integer on disk and reads it back as a real; the sign of a zero is lost on the way).
/// * A NUMERIC column keeps a real whose value is a whole number strictly between −2^63 and 2^63
///   as that integer: `3.0` becomes `3`, `-0.0` and `0.0` become `0`. (SQLite's rule: the real
///   converts to a 64-bit integer and back unchanged, and the integer is neither the smallest nor
///   the largest 64-bit integer.)
///
/// The server applies this to every pushed value before it merges it, so that what the master
/// stores, compares, records in its history and conflicts, and sends in pull pages is the same
/// value, and a push of `3.0` into a NUMERIC column is the same change as a push of `3`.
/// `Protocol/changeset.md` §2.2 states the rule; `Protocol/vectors/affinity.json` lists cases.
extension Affinity {
    /// The value a column of this affinity keeps when `value` is written to it.
    ///
    /// Defined for the storage classes the column accepts; any other value is returned unchanged
    /// (the server refuses it with `type_mismatch` before this matters).
    public func stored(_ value: SQLValue) -> SQLValue {
        guard case .real(let r) = value else { return value }
        switch self {
        case .real:
            return r == 0 ? .real(0) : value
        case .numeric, .integer:
            // 2^63 itself is exactly representable; it and −2^63 stay reals.
            guard r > -9_223_372_036_854_775_808.0, r < 9_223_372_036_854_775_808.0, let i = Int64(exactly: r) else {
                return value
            }
            return .integer(i)
        case .text, .blob:
            return value
        }
    }
}

extension ColumnSchema {
    /// The value this column keeps when `value` is written to it (``Affinity/stored(_:)``).
    public func stored(_ value: SQLValue) -> SQLValue { affinity.stored(value) }
}
