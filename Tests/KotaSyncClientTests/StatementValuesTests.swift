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
