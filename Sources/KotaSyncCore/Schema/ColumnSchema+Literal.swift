/// Values typed by a person (a reviewer's `--set col=value`), read by the column's affinity.
extension ColumnSchema {
    /// The value `text` stands for in this column.
    ///
    /// The literal `NULL` is SQL NULL in every column. Otherwise an INTEGER column takes a 64-bit
    /// decimal integer, a REAL column a finite decimal number (`60` reads as `60.0`), a NUMERIC
    /// column either (an integer when it is one), a TEXT column the text as typed, and a column
    /// with BLOB (or no) affinity a blob written `x'00ff'` or else the text as typed. Anything
    /// else is `bad_request`, with a message naming the column.
    package func value(fromLiteral text: String) throws(SyncError) -> SQLValue {
        if text == "NULL" { return .null }
        switch affinity {
        case .text:
            return .text(text)
        case .integer:
            if let i = Int64(text) { return .integer(i) }
            throw refusal(text, "an integer")
        case .real:
            if let d = Double(text), d.isFinite { return .real(d) }
            throw refusal(text, "a finite number")
        case .numeric:
            if let i = Int64(text) { return .integer(i) }
            if let d = Double(text), d.isFinite { return .real(d) }
            throw refusal(text, "a number")
        case .blob:
            let lower = text.lowercased()
            if lower.hasPrefix("x'"), lower.hasSuffix("'"), lower.count >= 3 {
                guard let bytes = [UInt8](hex: String(lower.dropFirst(2).dropLast())) else {
                    throw refusal(text, "a blob literal x'<hex digits>'")
                }
                return .blob(bytes)
            }
            return .text(text)
        }
    }

    private func refusal(_ text: String, _ wanted: String) -> SyncError {
        SyncError(
            .badRequest,
            "Column \(name) is declared \(declaredType.isEmpty ? "without a type" : declaredType); `\(text)` is not \(wanted). Write NULL for SQL NULL."
        )
    }
}
