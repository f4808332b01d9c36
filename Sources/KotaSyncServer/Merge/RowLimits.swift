import KotaSyncCore

/// The limits every change from a device is held to per row, before and after it merges: a value
/// and a row the master may hold, and a base version it issued. Pure: the merge asks, and does
/// the refusing.
///
/// Without them each push can stay within every limit of a request and still grow one row
/// without end (two 95 KB pushes, each inflating to 60 MiB of one column, made a 120 MiB patient
/// row that no pull page a client accepts could carry), and a change claiming a base version
/// above anything the master issued "has seen" every head and replaces concurrent edits with no
/// conflict record.
struct RowLimits {
    /// The most bytes of one value (``ServerConfig/Limits/maxValueBytes``).
    var maxValueBytes: Int
    /// The most bytes of one row, key included (``ServerConfig/Limits/maxRowBytes``).
    var maxRowBytes: Int

    init(_ limits: ServerConfig.Limits) {
        maxValueBytes = limits.maxValueBytes
        maxRowBytes = limits.maxRowBytes
    }

    /// The bytes a value counts for: a text's UTF-8 bytes, a blob's bytes, 8 for a number.
    static func bytes(of value: SQLValue) -> Int {
        switch value {
        case .null: 0
        case .integer, .real: 8
        case .text(let text): text.utf8.count
        case .blob(let bytes): bytes.count
        }
    }

    /// The bytes a row counts for: its key's and its values' (``bytes(of:)``).
    static func bytes(key: [SQLValue], values: [SQLValue]) -> Int {
        key.reduce(0) { $0 + bytes(of: $1) } + values.reduce(0) { $0 + bytes(of: $1) }
    }

    /// The most a row of `rowBytes` bytes in `valueCount` values (key included) takes in a
    /// changeset's payload: its fixed fields (table index, operation, flags, version, stamp,
    /// column count: at most 42 bytes) and per value a column index, a tag, a length and a base
    /// version (at most 31 bytes) besides its own bytes.
    static func encodedBound(rowBytes: Int, valueCount: Int) -> Int {
        42 + rowBytes + 31 * valueCount
    }

    /// The most a changeset's table dictionary of `tables` and its counts take in its payload.
    static func dictionaryBound(_ tables: [TableSchema]) -> Int {
        tables.reduce(20) { sum, table in
            sum + 30 + table.name.utf8.count
                + (table.primaryKey.map(\.name) + table.columns.map(\.name)).reduce(0) { $0 + 10 + $1.utf8.count }
        }
    }

    /// The refusal of a change whose row base or a column base is above `issued`, the master's
    /// latest version: a base the master never issued. Checked on arrival and again when a
    /// waiting change is applied (it cannot have become valid, but nothing is taken on trust).
    func baseRefusal(rowBase: UInt64, columnBases: some Sequence<UInt64>, issued: UInt64, table: String)
        -> RowRefusal?
    {
        let highest = columnBases.reduce(rowBase) { max($0, $1) }
        guard highest > issued else { return nil }
        return RowRefusal(
            code: .unknownBaseVersion,
            message:
                "This change of \(table) says it was made on master version \(highest), but the master has issued versions only up to \(issued). Was the server restored from a backup? Pull, then make the change again."
        )
    }

    /// The refusal of a change that sets a value larger than ``maxValueBytes`` (key included).
    func valueRefusal(key: [SQLValue], values: some Sequence<SQLValue>, table: String) -> RowRefusal? {
        var largest = 0
        for value in key { largest = max(largest, Self.bytes(of: value)) }
        for value in values { largest = max(largest, Self.bytes(of: value)) }
        guard largest > maxValueBytes else { return nil }
        return RowRefusal(
            code: .valueTooLarge,
            message:
                "A value of this row of \(table) is \(largest) bytes; the server takes values of at most \(maxValueBytes) bytes (limits.max_value_bytes)."
        )
    }

    /// The refusal of a change after which the row (key and every value, as merged with what the
    /// master holds) would be larger than ``maxRowBytes``.
    func rowRefusal(key: [SQLValue], values: [SQLValue], table: String) -> RowRefusal? {
        let size = Self.bytes(key: key, values: values)
        guard size > maxRowBytes else { return nil }
        return RowRefusal(
            code: .rowTooLarge,
            message:
                "After this change the row of \(table) would be \(size) bytes; the server keeps rows of at most \(maxRowBytes) bytes (limits.max_row_bytes). Make its values smaller."
        )
    }
}

extension SyncError.Code {
    /// A pushed row sets a value larger than the server's `limits.max_value_bytes`.
    public static let valueTooLarge = SyncError.Code(rawValue: "value_too_large")
    /// A pushed row would make the master's row larger than `limits.max_row_bytes`.
    public static let rowTooLarge = SyncError.Code(rawValue: "row_too_large")
    /// A pushed row's base version is above every version the master has issued.
    public static let unknownBaseVersion = SyncError.Code(rawValue: "unknown_base_version")
}
