import KotaSyncCore
import Testing

/// A reviewer's typed value (`--set col=value`) is read by the column's affinity, exactly.
struct ColumnLiteralTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var type: String
        var text: String
        var value: SQLValue?
        var testDescription: String { "\(type.isEmpty ? "untyped" : type) ← \(text)" }
    }

    static let cases: [Case] = [
        Case(type: "TEXT", text: "0812-0000", value: .text("0812-0000")),
        Case(type: "TEXT", text: "007", value: .text("007")),
        Case(type: "VARCHAR(16)", text: "", value: .text("")),
        Case(type: "TEXT", text: "NULL", value: .null),
        Case(type: "TEXT", text: "null", value: .text("null")),
        Case(type: "INTEGER", text: "120", value: .integer(120)),
        Case(type: "INTEGER", text: "-9223372036854775808", value: .integer(.min)),
        Case(type: "INTEGER", text: "NULL", value: .null),
        Case(type: "INTEGER", text: "12.5", value: nil),
        Case(type: "INTEGER", text: "9223372036854775808", value: nil),
        Case(type: "INTEGER", text: "seratus", value: nil),
        Case(type: "REAL", text: "61.25", value: .real(61.25)),
        Case(type: "REAL", text: "60", value: .real(60)),
        Case(type: "REAL", text: "-0.0", value: .real(-0.0)),
        Case(type: "REAL", text: "nan", value: nil),
        Case(type: "REAL", text: "inf", value: nil),
        Case(type: "REAL", text: "enam", value: nil),
        Case(type: "NUMERIC", text: "42", value: .integer(42)),
        Case(type: "DECIMAL(10,2)", text: "1.5", value: .real(1.5)),
        Case(type: "NUMERIC", text: "x", value: nil),
        Case(type: "BLOB", text: "x'00ff'", value: .blob([0, 255])),
        Case(type: "BLOB", text: "X'AB'", value: .blob([0xAB])),
        Case(type: "BLOB", text: "x''", value: .blob([])),
        Case(type: "BLOB", text: "x'0g'", value: nil),
        Case(type: "", text: "teks", value: .text("teks")),
        Case(type: "", text: "NULL", value: .null),
    ]

    @Test(arguments: cases)
    func aLiteralIsReadByTheColumnsAffinity(_ c: Case) throws {
        let column = ColumnSchema(name: "c", declaredType: c.type, notNull: false)
        if let value = c.value {
            #expect(try column.value(fromLiteral: c.text) == value)
            if case .real(let expected) = value, case .real(let got) = try column.value(fromLiteral: c.text) {
                #expect(got.bitPattern == expected.bitPattern, "bit for bit, -0.0 included")
            }
        } else {
            #expect {
                _ = try column.value(fromLiteral: c.text)
            } throws: { error in
                guard let error = error as? SyncError else { return false }
                return error.code == .badRequest && error.message.contains("Column c")
            }
        }
    }
}
