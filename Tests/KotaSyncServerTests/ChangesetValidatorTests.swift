import Foundation
import Testing

@testable import KotaSyncCore
@testable import KotaSyncServer

@Suite("Changeset validator")
struct ChangesetValidatorTests {
    static let patients = TableSchema(
        name: "patients", ddl: "",
        primaryKey: [column("id", "TEXT", notNull: true)],
        columns: [
            column("name", "TEXT", notNull: true), column("age", "INTEGER"), column("weight", "REAL"),
            column("score", "NUMERIC"), column("extra", ""), column("photo", "BLOB"),
        ])
    static let visits = TableSchema(
        name: "visits", ddl: "",
        primaryKey: [column("opd", "TEXT", notNull: true), column("seq", "INTEGER", notNull: true)],
        columns: [column("patient", "TEXT"), column("note", "TEXT")])
    static let schema = [patients, visits]

    static func push(_ tables: [Changeset.Table], _ rows: [Changeset.Row], first: UInt64 = 1, last: UInt64 = 2)
        -> Changeset
    {
        Changeset(
            kind: .push, id: UUID(), replicaID: UUID(), firstSequence: first, lastSequence: last, tables: tables,
            rows: rows)
    }

    static func row(
        _ table: Int = 0, _ op: Changeset.Operation = .update, key: [SQLValue], _ columns: [(Int, SQLValue)] = []
    ) -> Changeset.Row {
        Changeset.Row(
            table: table, operation: op, version: 1, stamp: HLC(rawValue: 1), primaryKey: key,
            columns: columns.map { Changeset.ColumnValue(column: $0.0, value: $0.1) })
    }

    /// One patient row setting `column` (by schema name) to `value`.
    static func setting(_ name: String, _ value: SQLValue) -> Changeset {
        push(
            [Changeset.Table(name: "patients", primaryKey: ["id"], columns: [name])],
            [row(key: [.text("p1")], [(0, value)])])
    }

    /// A changeset built in code, not decoded, has had none of the decoder's checks.
    @Test(arguments: [
        row(1, key: [.text("p1")]), row(0, key: [.text("p1"), .text("extra key")]),
        row(0, key: [.text("p1")], [(3, .null)]),
    ])
    func rowsReferringToUndeclaredTablesKeysOrColumnsAreMalformed(_ bad: Changeset.Row) {
        let c = Self.push([Changeset.Table(name: "patients", primaryKey: ["id"], columns: ["name"])], [bad])
        #expect {
            try ChangesetValidator.validate(c, against: Self.schema)
        } throws: { ($0 as? SyncError)?.code == .changesetMalformed }
    }

    @Test func validChangesetMapsTablesAndColumnsByName() throws {
        // A subset of the columns in another order, and two tables.
        let c = Self.push(
            [
                Changeset.Table(name: "visits", primaryKey: ["opd", "seq"], columns: ["note"]),
                Changeset.Table(name: "patients", primaryKey: ["id"], columns: ["photo", "name"]),
            ],
            [
                Self.row(0, key: [.text("opd-1"), .integer(3)], [(0, .text("n"))]),
                Self.row(1, .upsert, key: [.text("p1")], [(0, .blob([1])), (1, .text("Siti"))]),
                Self.row(1, .delete, key: [.text("p2")]),
            ])
        let v = try ChangesetValidator.validate(c, against: Self.schema)
        #expect(v.tables.map(\.name) == ["visits", "patients"])
        #expect(v.columnMaps == [[1], [5, 0]])
        #expect(v.changeset == c)
    }

    @Test func unknownTableIsRefused() {
        let c = Self.push([Changeset.Table(name: "secrets", primaryKey: ["id"], columns: [])], [])
        expectSyncError(.unknownTable) { () throws(SyncError) in
            try ChangesetValidator.validate(c, against: Self.schema)
        }
        let caseDiffers = Self.push([Changeset.Table(name: "Patients", primaryKey: ["id"], columns: [])], [])
        expectSyncError(.unknownTable) { () throws(SyncError) in
            try ChangesetValidator.validate(caseDiffers, against: Self.schema)
        }
    }

    @Test("A key other than the table's is refused", arguments: [["ID"], ["id", "name"], [], ["name"]])
    func wrongKeyIsRefused(_ key: [String]) {
        let c = Self.push([Changeset.Table(name: "patients", primaryKey: key, columns: [])], [])
        expectSyncError(.invalidPrimaryKey) { () throws(SyncError) in
            try ChangesetValidator.validate(c, against: Self.schema)
        }
    }

    @Test func keyInAnotherOrderIsRefused() {
        let c = Self.push([Changeset.Table(name: "visits", primaryKey: ["seq", "opd"], columns: [])], [])
        expectSyncError(.invalidPrimaryKey) { () throws(SyncError) in
            try ChangesetValidator.validate(c, against: Self.schema)
        }
    }

    @Test func unknownColumnIsRefused() {
        let c = Self.push([Changeset.Table(name: "patients", primaryKey: ["id"], columns: ["name", "password"])], [])
        expectSyncError(.unknownColumn) { () throws(SyncError) in
            try ChangesetValidator.validate(c, against: Self.schema)
        }
    }

    @Test func keyColumnListedAsNonKeyColumnIsUnknown() {
        // Protocol/changeset.md §3.1: the server answers unknown_column for it.
        let c = Self.push([Changeset.Table(name: "patients", primaryKey: ["id"], columns: ["id"])], [])
        expectSyncError(.unknownColumn) { () throws(SyncError) in
            try ChangesetValidator.validate(c, against: Self.schema)
        }
    }

    struct TypeCase: Sendable, CustomTestStringConvertible {
        var column: String
        var value: SQLValue
        var accepted: Bool
        var testDescription: String {
            "\(column) ← \(value.storageClass.rawValue) \(value): \(accepted ? "accepted" : "type_mismatch")"
        }
    }

    static let typeCases: [TypeCase] = [
        .init(column: "age", value: .integer(42), accepted: true),
        .init(column: "age", value: .text("42"), accepted: false),
        .init(column: "age", value: .real(42), accepted: false),
        .init(column: "age", value: .blob([42]), accepted: false),
        .init(column: "age", value: .null, accepted: true),
        .init(column: "name", value: .text("Siti"), accepted: true),
        .init(column: "name", value: .integer(7), accepted: false),
        .init(column: "name", value: .blob(Array("Siti".utf8)), accepted: false),
        .init(column: "weight", value: .real(60.5), accepted: true),
        .init(column: "weight", value: .integer(60), accepted: false),
        .init(column: "score", value: .integer(3), accepted: true),
        .init(column: "score", value: .real(3.5), accepted: true),
        .init(column: "score", value: .text("3.5"), accepted: false),
        .init(column: "extra", value: .text("007"), accepted: true),
        .init(column: "extra", value: .integer(7), accepted: true),
        .init(column: "extra", value: .real(-0.0), accepted: true),
        .init(column: "extra", value: .blob([]), accepted: true),
        .init(column: "photo", value: .integer(1), accepted: true),
    ]

    @Test("Values must be of a storage class their column accepts", arguments: typeCases)
    func columnTypeRules(_ c: TypeCase) throws {
        let changeset = Self.setting(c.column, c.value)
        if c.accepted {
            _ = try ChangesetValidator.validate(changeset, against: Self.schema)
        } else {
            expectSyncError(.typeMismatch) { () throws(SyncError) in
                try ChangesetValidator.validate(changeset, against: Self.schema)
            }
        }
    }

    @Test func typeMismatchIsFoundInALaterRowAndLaterColumn() {
        let c = Self.push(
            [Changeset.Table(name: "patients", primaryKey: ["id"], columns: ["name", "age"])],
            [
                Self.row(key: [.text("p1")], [(0, .text("a")), (1, .integer(1))]),
                Self.row(key: [.text("p2")], [(0, .text("b")), (1, .text("one"))]),
            ])
        let error = expectSyncError(.typeMismatch) { () throws(SyncError) in
            try ChangesetValidator.validate(c, against: Self.schema)
        }
        #expect(error?.message.contains("Row 1") == true, "\(error?.message ?? "")")
    }

    @Test func nullKeyValueIsRefused() {
        let c = Self.push(
            [Changeset.Table(name: "patients", primaryKey: ["id"], columns: [])], [Self.row(.delete, key: [.null])])
        expectSyncError(.typeMismatch) { () throws(SyncError) in
            try ChangesetValidator.validate(c, against: Self.schema)
        }
        let second = Self.push(
            [Changeset.Table(name: "visits", primaryKey: ["opd", "seq"], columns: [])],
            [Self.row(.delete, key: [.text("o"), .null])])
        expectSyncError(.typeMismatch) { () throws(SyncError) in
            try ChangesetValidator.validate(second, against: Self.schema)
        }
    }

    @Test func keyValueOfTheWrongClassIsRefused() {
        let c = Self.push(
            [Changeset.Table(name: "visits", primaryKey: ["opd", "seq"], columns: [])],
            [Self.row(.delete, key: [.text("o"), .text("1")])])
        expectSyncError(.typeMismatch) { () throws(SyncError) in
            try ChangesetValidator.validate(c, against: Self.schema)
        }
    }

    @Test func pullPageCannotBePushed() {
        var c = Self.setting("name", .text("x"))
        c.kind = .pull
        expectSyncError(.changesetMalformed) { () throws(SyncError) in
            try ChangesetValidator.validate(c, against: Self.schema)
        }
    }

    @Test func backwardsSequenceRangeIsRefused() throws {
        let c = Self.push([], [], first: 5, last: 4)
        expectSyncError(.changesetMalformed) { () throws(SyncError) in
            try ChangesetValidator.validate(c, against: Self.schema)
        }
        _ = try ChangesetValidator.validate(Self.push([], [], first: 5, last: 5), against: Self.schema)
    }
}

extension ChangesetValidatorTests {
    static func row(_ op: Changeset.Operation, key: [SQLValue]) -> Changeset.Row { row(0, op, key: key) }
}
