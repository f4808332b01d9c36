import Foundation
import KotaSyncCore
import NIOCore
import PostgresNIO

/// How a value of SQLite's five storage classes is kept in a PostgreSQL column, written once for
/// every column of the master: the replicated tables' columns and the bookkeeping's value columns.
///
/// The mapping keeps every value exactly as the SQLite master keeps it (``Affinity/stored(_:)``
/// already applied), storage class and bits:
///
/// | SQLite affinity (declared type)          | PostgreSQL type        | holds                              |
/// |------------------------------------------|------------------------|------------------------------------|
/// | INTEGER (`INT` in the name)              | `bigint`               | 64-bit integers                    |
/// | REAL (`REAL`, `FLOA`, `DOUB`)            | `double precision`     | reals, bit for bit (±∞, subnormals)|
/// | TEXT (`CHAR`, `CLOB`, `TEXT`)            | `text`                 | text (a number-like `'007'` stays) |
/// | NUMERIC (anything else, e.g. `DECIMAL`)  | `numeric`              | integers (scale 0) and reals       |
/// | BLOB (`BLOB` or no type)                 | `kotasync.value`       | any of the five, tagged            |
///
/// * NUMERIC: an integer is written with no fractional digits (`42`), a real always with at least
///   one (`42.5`, `1e20` as `100000000000000000000.0`), as the shortest decimal that reads back
///   to the same double; ±∞ as `Infinity`. Reading back, a value with a decimal point (or ∞) is
///   a real and one without an integer, so `3` and `3.0` stay apart where SQLite keeps them
///   apart (a real `3.0` never reaches the column: the NUMERIC affinity makes it the integer 3).
///   psql and BI tools see ordinary decimal numbers.
/// * BLOB affinity (an untyped column, or one declared `BLOB`): SQLite lets any storage class
///   into it, so the column is the composite `kotasync.value` with one field per class,
///   `(i bigint, r double precision, t text, b bytea)`, exactly one of them set; SQL NULL is a
///   NULL column. Read it in psql as `(column).t`, `(column).i`, … .
/// * NULL is NULL in every type; an empty BLOB is an empty `bytea`, not NULL.
/// * A value whose storage class the column does not take (the text `'abc'` in an INTEGER
///   column) never gets here: the server refuses it with `type_mismatch` on both backends
///   (``Affinity/accepts(_:)``). Should one arrive anyway, the mapping refuses it with the same code.
/// * PostgreSQL's `text` cannot hold the character U+0000, which SQLite's text can. A text with
///   it is refused with `type_mismatch` on PostgreSQL (a difference between the backends, named
///   here and in `samples/postgres/README.md`).
package enum PostgresColumnType: Sendable, Equatable {
    case bigint
    case doublePrecision
    case text
    case numeric
    /// The tagged `kotasync.value` composite, for BLOB affinity and for the bookkeeping's value
    /// columns (conflict sides, scopes, additive values), which hold any storage class.
    case value

    /// The type of a column with SQLite affinity `affinity`.
    package init(_ affinity: Affinity) {
        switch affinity {
        case .integer: self = .bigint
        case .real: self = .doublePrecision
        case .text: self = .text
        case .numeric: self = .numeric
        case .blob: self = .value
        }
    }

    /// The affinity whose values this type keeps as SQLite would.
    package var affinity: Affinity {
        switch self {
        case .bigint: .integer
        case .doublePrecision: .real
        case .text: .text
        case .numeric: .numeric
        case .value: .blob
        }
    }

    /// The composite type of BLOB-affinity columns, in the bookkeeping schema.
    package static let valueTypeName = "kotasync.value"

    /// The type as it appears in `CREATE TABLE`.
    package var sql: String {
        switch self {
        case .bigint: "bigint"
        case .doublePrecision: "double precision"
        case .text: "text"
        case .numeric: "numeric"
        case .value: Self.valueTypeName
        }
    }

    /// The type as `format_type()` reports an existing column's type.
    package var formatted: String {
        switch self {
        case .value: "kotasync.value"
        default: sql
        }
    }

    /// How many bind parameters one value takes.
    package var parameterCount: Int { self == .value ? 4 : 1 }

    /// The SQL expression for one value whose parameters start at `$first`.
    package func placeholder(_ first: Int) -> String {
        switch self {
        case .bigint: "$\(first)::bigint"
        case .doublePrecision: "$\(first)::double precision"
        case .text: "$\(first)::text"
        case .numeric: "$\(first)::numeric"
        case .value:
            "kotasync.make_value($\(first)::bigint, $\(first + 1)::double precision, $\(first + 2)::text, $\(first + 3)::bytea)"
        }
    }

    /// Appends `value`'s parameters (``parameterCount`` of them) to `bindings`.
    ///
    /// `value` is first made what a column of this affinity keeps (``Affinity/stored(_:)``); a
    /// storage class the column does not take is refused with `type_mismatch`.
    package func bind(_ value: SQLValue, to bindings: inout PostgresBindings) throws(SyncError) {
        let value = affinity.stored(value)
        guard affinity.accepts(value.storageClass) else {
            throw SyncError(
                .typeMismatch, "A \(value.storageClass.rawValue) value cannot be kept in a column of type \(sql).")
        }
        if case .real(let r) = value, r.isNaN {
            throw SyncError(.typeMismatch, "NaN is not a value SQLite keeps; it cannot be stored.")
        }
        if case .text(let t) = value, t.utf8.contains(0) {
            throw SyncError(
                .typeMismatch,
                "PostgreSQL text cannot hold the character U+0000; this master keeps text without it.")
        }
        switch self {
        case .bigint, .doublePrecision, .text:
            Self.appendPlain(value, to: &bindings)
        case .numeric:
            switch value {
            case .null: bindings.appendNull()
            case .integer(let i): bindings.append(String(i))
            case .real(let r): bindings.append(Self.decimalText(r))
            default: preconditionFailure("checked above")
            }
        case .value:
            for part in 0..<4 {
                if Self.part(of: value) == part {
                    Self.appendPlain(value, to: &bindings)
                } else {
                    bindings.appendNull()
                }
            }
        }
    }

    private static func part(of value: SQLValue) -> Int {
        switch value {
        case .null: -1
        case .integer: 0
        case .real: 1
        case .text: 2
        case .blob: 3
        }
    }

    private static func appendPlain(_ value: SQLValue, to bindings: inout PostgresBindings) {
        switch value {
        case .null: bindings.appendNull()
        case .integer(let i): bindings.append(i)
        case .real(let r): bindings.append(r)
        case .text(let t): bindings.append(t)
        case .blob(let b): bindings.append(ByteBuffer(bytes: b))
        }
    }

    /// The expressions that read a column of this type (quoted name `column`), ``selectCount`` of them.
    package func select(_ column: String) -> [String] {
        switch self {
        case .bigint, .doublePrecision, .text: [column]
        case .numeric: ["\(column)::text"]
        case .value: ["(\(column)).i", "(\(column)).r", "(\(column)).t", "(\(column)).b"]
        }
    }

    /// How many result columns ``select(_:)`` reads.
    package var selectCount: Int { parameterCount }

    /// The value read by ``select(_:)`` from `row`, starting at result column `first`.
    package func decode(_ row: PostgresRandomAccessRow, at first: Int) throws -> SQLValue {
        switch self {
        case .bigint: return try row[first].decode(Int64?.self).map(SQLValue.integer) ?? .null
        case .doublePrecision: return try row[first].decode(Double?.self).map(SQLValue.real) ?? .null
        case .text: return try row[first].decode(String?.self).map(SQLValue.text) ?? .null
        case .numeric:
            guard let text = try row[first].decode(String?.self) else { return .null }
            return try Self.numericValue(text)
        case .value:
            if let i = try row[first].decode(Int64?.self) { return .integer(i) }
            if let r = try row[first + 1].decode(Double?.self) { return .real(r) }
            if let t = try row[first + 2].decode(String?.self) { return .text(t) }
            if let b = try row[first + 3].decode(ByteBuffer?.self) { return .blob(Array(buffer: b)) }
            return .null
        }
    }

    /// A `numeric`'s text as the value it stands for: with a decimal point or infinite, a real;
    /// without, an integer (a real when it does not fit 64 bits: a value written by another
    /// program, not by KotaSync).
    static func numericValue(_ text: String) throws -> SQLValue {
        switch text {
        case "Infinity": return .real(.infinity)
        case "-Infinity": return .real(-.infinity)
        case "NaN": throw SyncError(.internalError, "A numeric column holds NaN, which no SQLite value is.")
        default: break
        }
        if !text.contains("."), !text.contains("e"), !text.contains("E"), let i = Int64(text) { return .integer(i) }
        guard let r = Double(text) else {
            throw SyncError(.internalError, "A numeric column holds \(text.prefix(40)), which is not a number.")
        }
        return .real(r)
    }

    /// `r` as positional decimal text with at least one fractional digit: the shortest decimal
    /// that reads back to the same double (Swift's `description`), moved out of exponent form.
    static func decimalText(_ r: Double) -> String {
        if r.isInfinite { return r < 0 ? "-Infinity" : "Infinity" }
        var text = r.description
        var sign = ""
        if text.hasPrefix("-") {
            sign = "-"
            text.removeFirst()
        }
        var exponent = 0
        if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            exponent = Int(text[text.index(after: e)...]) ?? 0
            text = String(text[..<e])
        }
        let point = text.firstIndex(of: ".") ?? text.endIndex
        let integerDigits = text.distance(from: text.startIndex, to: point)
        let digits = text.filter { $0 != "." }
        let position = integerDigits + exponent  // digits before the decimal point
        var whole: String
        var fraction: String
        if position <= 0 {
            whole = "0"
            fraction = String(repeating: "0", count: -position) + digits
        } else if position >= digits.count {
            whole = digits + String(repeating: "0", count: position - digits.count)
            fraction = "0"
        } else {
            whole = String(digits.prefix(position))
            fraction = String(digits.dropFirst(position))
        }
        while whole.count > 1, whole.hasPrefix("0") { whole.removeFirst() }
        while fraction.count > 1, fraction.hasSuffix("0") { fraction.removeLast() }
        return sign + whole + "." + fraction
    }
}
