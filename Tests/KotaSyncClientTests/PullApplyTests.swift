import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite
import Testing

@testable import KotaSyncClient

/// The paths of a pull's apply: the whole-row upsert bound straight from the page, and the
/// general path for pages whose columns differ from the local table's.
struct PullApplyTests {
    @Test func everyStorageClassArrivesExactlyThroughTheWholeRowPath() throws {
        let replica = try makeReplica()
        let values: [SQLValue] = [.integer(.min), .real(4.9e-324), .text(""), .blob([]), .blob([0, 1])]
        let pulled = Changeset.Row(
            table: 2, operation: .upsert, version: 3, stamp: HLC(milliseconds: 1_700_000_000_000, counter: 0),
            primaryKey: [.text("k")],
            columns: values.enumerated().map { Changeset.ColumnValue(column: $0, value: $1) })
        let result = try replica.apply(page: try page(after: 0, [pulled]))
        #expect(result == AppliedPage(applied: 1, keptLocal: 0))
        #expect(try rows(replica.path, "SELECT i, r, t, b, anything FROM kinds") == [values])
        #expect(
            try rows(replica.path, "SELECT typeof(i), typeof(r), typeof(t), typeof(b), typeof(anything) FROM kinds")
                == [["integer", "real", "text", "blob", "blob"].map { SQLValue.text($0) }])
        #expect(try rows(replica.path, "SELECT version FROM _ks_rows") == [[.integer(3)]])
        #expect(try replica.status().logEntries == 0, "applied writes are not captured")
    }

    @Test func aPageWithColumnsInAnotherOrderOrMissingWritesEachValueToItsColumn() throws {
        let replica = try makeReplica()
        _ = try replica.apply(page: try page(after: 0, [note("n1", version: 1, title: "a", body: "b", score: 1)]))
        // The server names the columns of notes in another order and without `body`.
        var tables = try testSchema().tables.map(\.changesetTable)
        tables[0].columns = ["score", "title"]
        let reordered = Changeset(
            kind: .pull, id: UUID(), replicaID: .zero, firstSequence: 1, lastSequence: 3, tables: tables,
            rows: [
                Changeset.Row(
                    table: 0, operation: .upsert, version: 2, stamp: HLC(milliseconds: 1_700_000_000_002, counter: 0),
                    primaryKey: [.text("n1")],
                    columns: [.init(column: 0, value: .integer(7)), .init(column: 1, value: .text("x"))]),
                Changeset.Row(
                    table: 0, operation: .upsert, version: 3, stamp: HLC(milliseconds: 1_700_000_000_003, counter: 0),
                    primaryKey: [.text("n2")], columns: [.init(column: 1, value: .text("y"))]),
            ])
        #expect(try replica.apply(page: reordered) == AppliedPage(applied: 2, keptLocal: 0))
        #expect(
            try rows(replica.path, "SELECT id, title, body, score FROM notes ORDER BY id") == [
                [.text("n1"), .text("x"), .text("b"), .integer(7)],
                [.text("n2"), .text("y"), .null, .null],
            ], "a column the page does not carry keeps its value")
        #expect(
            try rows(replica.path, "SELECT version FROM _ks_rows ORDER BY pk") == [[.integer(2)], [.integer(3)]])
        #expect(try replica.status().logEntries == 0)
    }

    @Test func aPulledDeleteRemovesTheRowAndKeepsItsVersion() throws {
        let replica = try makeReplica()
        _ = try replica.apply(page: try page(after: 0, [note("n1", version: 1, title: "a", body: nil, score: nil)]))
        let delete = Changeset.Row(
            table: 0, operation: .delete, version: 4, stamp: HLC(milliseconds: 1_700_000_000_004, counter: 0),
            primaryKey: [.text("n1")], columns: [])
        #expect(try replica.apply(page: try page(after: 1, [delete])) == AppliedPage(applied: 1, keptLocal: 0))
        #expect(try rows(replica.path, "SELECT count(*) FROM notes") == [[.integer(0)]])
        #expect(try rows(replica.path, "SELECT version FROM _ks_rows") == [[.integer(4)]])
        #expect(try replica.status().logEntries == 0)
    }

    @Test(arguments: [0.0, 1_700_000_000.999, 1_764_403_200.5, 4_102_444_799])
    func storedTimestampsReadAsTheFormatterWroteThem(_ seconds: Double) {
        let date = Date(timeIntervalSince1970: seconds)
        #expect(date.iso8601 == ISO8601DateFormatter().string(from: date))
    }
}

/// Binding parameters one by one and walking rows in place through the C API.
struct StatementBindingTests {
    @Test func parametersBoundInPlaceAndRowsWalkedInPlaceAreExact() throws {
        let queue = try DatabaseQueue()
        let values: [SQLValue] = [.null, .integer(.max), .real(4.9e-324), .text("Puskesmas 🏥"), .text(""), .blob([])]
        let read = try queue.write { db -> [[SQLValue]] in
            try db.execute(sql: "CREATE TABLE t (k INTEGER PRIMARY KEY, v, b BLOB)")
            let insert = try db.makeStatement(sql: "INSERT INTO t VALUES (?, ?, ?)")
            for (i, value) in values.enumerated() {
                try insert.run { p in
                    p.bind(Int64(i))
                    p.bind(value)
                    p.bind(blob: [UInt8(i)])
                }
            }
            var out: [[SQLValue]] = []
            try db.makeStatement(sql: "SELECT k, v, b, typeof(v) FROM t WHERE k >= ? ORDER BY k").forEachRow([
                .integer(0)
            ]) { row in
                out.append([.integer(row.int64(0)), row.value(1), .blob(row.bytes(2)), .text(row.text(3))])
                return true
            }
            return out
        }
        #expect(read.map { $0[1] } == values)
        #expect(read.map { $0[3] } == values.map { .text($0.storageClass.rawValue) })
        #expect(read.map { $0[2] } == values.indices.map { .blob([UInt8($0)]) })
    }

    @Test func walkingStopsWhenTheBodySaysSoAndTheStatementRunsAgain() throws {
        let queue = try DatabaseQueue()
        try queue.write { db in
            try db.execute(sql: "CREATE TABLE t (k INTEGER PRIMARY KEY); INSERT INTO t VALUES (1), (2), (3)")
            let select = try db.makeStatement(sql: "SELECT k FROM t ORDER BY k")
            var seen: [Int64] = []
            try select.forEachRow([]) { row in
                seen.append(row.int64(0))
                return seen.count < 2
            }
            #expect(seen == [1, 2])
            seen = []
            try select.forEachRow([]) { row in
                seen.append(row.int64(0))
                return true
            }
            #expect(seen == [1, 2, 3])
        }
    }
}
