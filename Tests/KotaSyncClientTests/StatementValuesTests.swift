import GRDB
import KotaSyncCore
import KotaSyncSQLite
import Testing

/// Values bound and read through the C API keep their storage class and bits.
struct StatementValuesTests {
    @Test(arguments: [
        SQLValue.null, .integer(.min), .integer(.max), .real(-0.0), .real(4.9e-324), .text(""), .text("007"),
        .text("Puskesmas 🏥"), .blob([]), .blob([0, 0, 0]),
    ])
    func aValueWrittenAndReadBackIsExactlyTheSame(_ value: SQLValue) throws {
        let queue = try DatabaseQueue()
        let read = try queue.write { db in
            try db.execute(sql: "CREATE TABLE t (k TEXT PRIMARY KEY, v)")
            try db.makeStatement(sql: "INSERT INTO t VALUES (?, ?)").run([.text("a"), value])
            return try db.makeStatement(sql: "SELECT v, typeof(v) FROM t WHERE k = ?").firstRow([.text("a")])
        }
        #expect(read?.first == value)
        #expect(read?.last == .text(value.storageClass.rawValue))
    }

    @Test func aQueryWithNoRowGivesNilAndAFailingStatementThrows() throws {
        let queue = try DatabaseQueue()
        try queue.write { db in
            try db.execute(sql: "CREATE TABLE t (k TEXT PRIMARY KEY, v NOT NULL)")
            #expect(try db.makeStatement(sql: "SELECT v FROM t WHERE k = ?").firstRow([.text("none")]) == nil)
            #expect(throws: DatabaseError.self) {
                try db.makeStatement(sql: "INSERT INTO t VALUES (?, ?)").run([.text("a"), .null])
            }
        }
    }
}

/// A table's statements taken once from the cache read, write and delete rows as `TableSQL` does.
struct TableStatementsTests {
    @Test func rowsWrittenThroughPreparedStatementsReadBackAndDelete() throws {
        let table = TableSchema(
            name: "t", ddl: "CREATE TABLE t (k TEXT PRIMARY KEY, a, b)",
            primaryKey: [ColumnSchema(name: "k", declaredType: "TEXT", notNull: false)],
            columns: [
                ColumnSchema(name: "a", declaredType: "", notNull: false),
                ColumnSchema(name: "b", declaredType: "", notNull: false),
            ])
        let queue = try DatabaseQueue()
        try queue.write { db in
            try db.execute(sql: table.ddl)
            let statements = try TableStatements(TableSQL(table), db: db)
            #expect(try statements.values(key: [.text("x")]) == nil)
            try statements.upsert(key: [.text("x")], values: [.integer(1), .blob([])])
            try statements.upsert(key: [.text("y")], values: [.null, .text("")])
            try statements.upsert(key: [.text("x")], values: [.real(2.5), .text("b")])
            #expect(try statements.values(key: [.text("x")]) == [.real(2.5), .text("b")])
            #expect(try statements.values(key: [.text("y")]) == [.null, .text("")])
            try statements.delete(key: [.text("x")])
            #expect(try statements.values(key: [.text("x")]) == nil)
            var keys: [SQLValue] = []
            try db.makeStatement(sql: "SELECT k FROM t WHERE a IS ? OR b = ?").forEachRow(
                binding: { p in
                    p.bind(.null)
                    p.bind(.text(""))
                },
                { row in
                    keys.append(row.value(0))
                    return true
                })
            #expect(keys == [.text("y")])
        }
    }
}
