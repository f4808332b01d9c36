import Foundation
import Testing

@testable import KotaSyncCore

@Suite("Table schema: affinity and accepted storage classes")
struct TableSchemaTests {
    /// SQLite's rules (Datatypes In SQLite, 3.1), including its well-known surprises.
    @Test(
        "Affinity follows SQLite's rules",
        arguments: [
            ("INTEGER", Affinity.integer), ("INT", .integer), ("BIGINT", .integer), ("tinyint", .integer),
            ("UNSIGNED BIG INT", .integer), ("INT8", .integer), ("integer primary key", .integer),
            ("FLOATING POINT", .integer),  // contains "INT": rule 1 comes first
            ("CHARINT", .integer),
            ("TEXT", .text), ("VARCHAR(255)", .text), ("NCHAR(55)", .text), ("NATIVE CHARACTER(70)", .text),
            ("CLOB", .text), ("varying character", .text),
            ("BLOB", .blob), ("", .blob), ("blob(16)", .blob),
            ("REAL", .real), ("DOUBLE", .real), ("DOUBLE PRECISION", .real), ("FLOAT", .real), ("float8", .real),
            ("NUMERIC", .numeric), ("DECIMAL(10,5)", .numeric), ("BOOLEAN", .numeric), ("DATE", .numeric),
            ("DATETIME", .numeric), ("STRING", .numeric),  // "STRING" is not TEXT in SQLite
            ("JSON", .numeric),
        ])
    func affinityFollowsSQLiteRules(_ declared: String, _ expected: Affinity) {
        #expect(Affinity(declaredType: declared) == expected)
        #expect(ColumnSchema(name: "c", declaredType: declared, notNull: false).affinity == expected)
    }

    static func accepted(_ declared: String) -> Set<StorageClass> {
        let column = ColumnSchema(name: "c", declaredType: declared, notNull: false)
        return Set(StorageClass.allCases.filter { column.accepts($0) })
    }

    @Test func integerColumnTakesOnlyIntegers() {
        #expect(Self.accepted("INTEGER") == [.null, .integer])
        #expect(Self.accepted("BIGINT") == [.null, .integer])
    }

    @Test func textColumnTakesOnlyText() {
        #expect(Self.accepted("TEXT") == [.null, .text])
        #expect(Self.accepted("VARCHAR(16)") == [.null, .text])
    }

    @Test func realColumnTakesOnlyReals() {
        #expect(Self.accepted("REAL") == [.null, .real])
        #expect(Self.accepted("DOUBLE") == [.null, .real])
    }

    @Test func numericColumnTakesIntegersAndReals() {
        #expect(Self.accepted("NUMERIC") == [.null, .integer, .real])
        #expect(Self.accepted("DECIMAL(10,2)") == [.null, .integer, .real])
        #expect(Self.accepted("DATE") == [.null, .integer, .real])
    }

    @Test func untypedAndBlobColumnsTakeAnything() {
        #expect(Self.accepted("") == Set(StorageClass.allCases))
        #expect(Self.accepted("BLOB") == Set(StorageClass.allCases))
    }

    @Test func nullIsLeftToNotNull() {
        for declared in ["INTEGER", "TEXT", "REAL", "NUMERIC", "BLOB", ""] {
            #expect(ColumnSchema(name: "c", declaredType: declared, notNull: true).accepts(.null))
        }
    }

    @Test func changesetTableNamesKeyAndColumnsInOrder() {
        let t = TableSchema(
            name: "patients", ddl: "CREATE TABLE patients(...)",
            primaryKey: [
                .init(name: "opd", declaredType: "TEXT", notNull: true),
                .init(name: "id", declaredType: "INTEGER", notNull: true),
            ],
            columns: [
                .init(name: "name", declaredType: "TEXT", notNull: true),
                .init(name: "born", declaredType: "", notNull: false),
            ])
        #expect(
            t.changesetTable
                == Changeset.Table(name: "patients", primaryKey: ["opd", "id"], columns: ["name", "born"]))
    }

    @Test func primaryKeyCodingRoundTripsAndSeparatesStorageClasses() throws {
        for key: [SQLValue] in [
            [.integer(1)], [.text("1")], [.real(1)], [.blob([0x31])], [.text("a"), .integer(-5)], [.real(-0.0)], [],
        ] {
            #expect(try PrimaryKeyCoding.decode(PrimaryKeyCoding.encode(key)) == key)
        }
        let distinct: [[SQLValue]] = [
            [.integer(1)], [.text("1")], [.real(1)], [.blob([0x31])], [.real(0.0)], [.real(-0.0)],
        ]
        #expect(Set(distinct.map(PrimaryKeyCoding.encode)).count == distinct.count)
        expectSyncError(.changesetMalformed) { () throws(SyncError) in try PrimaryKeyCoding.decode([9]) }
    }
}
