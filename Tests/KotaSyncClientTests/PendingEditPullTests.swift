import Foundation
import KotaSyncClient
import KotaSyncCore
import Testing

/// A pull while a local edit waits to be pushed: the everyday offline case. Device A edits one
/// column of a row, device B of the same OPD edits another column of the same row and syncs;
/// A's pull must take B's columns and keep its own, whatever constraints the table declares.
struct PendingEditPullTests {
    /// One generated table: a text key and `columns` columns, each with its own constraints.
    struct GeneratedTable {
        struct Column {
            var name: String
            var notNull: Bool
            var check: Bool
            var unique: Bool
            var hasDefault: Bool

            var ddl: String {
                var text = "\(name) TEXT"
                if notNull { text += " NOT NULL" }
                if hasDefault { text += " DEFAULT 'd'" }
                if check { text += " CHECK (length(\(name)) > 0)" }
                if unique { text += " UNIQUE" }
                return text
            }
        }

        var columns: [Column]

        init<G: RandomNumberGenerator>(using random: inout G) {
            let count = Int.random(in: 2...5, using: &random)
            columns = (0..<count).map { i in
                Column(
                    name: "c\(i)", notNull: Bool.random(using: &random), check: Bool.random(using: &random),
                    unique: Int.random(in: 0..<4, using: &random) == 0, hasDefault: Bool.random(using: &random))
            }
            // The reported case is always among them: a NOT NULL column without a default.
            columns[0].notNull = true
            columns[0].hasDefault = false
        }

        var ddl: String {
            "CREATE TABLE t (id TEXT PRIMARY KEY, \(columns.map(\.ddl).joined(separator: ", ")))"
        }
    }

    @Test(arguments: 0..<40 as Range<UInt64>)
    func aPullTakesTheOtherColumnsAndKeepsThePendingOnes(seed: UInt64) throws {
        var random = SplitMix64(seed: 0x5EED_0000 + seed)
        let generated = GeneratedTable(using: &random)
        let schema = SchemaDocument(server: "test", opd: "pkm-test", tables: [try table("t", generated.ddl)])
        let path = try makeTemporaryDirectory("pendingEdit\(seed)").appendingPathComponent("replica.sqlite").path
        try Replica.create(at: path, schema: schema, serverURL: URL(string: "http://127.0.0.1:9")!, token: "t")
        let replica = try Replica(path: path)
        let count = generated.columns.count
        let pageTables = schema.tables.map(\.changesetTable)
        func pulled(version: UInt64, _ values: [String]) -> Changeset {
            Changeset(
                kind: .pull, id: UUID(), replicaID: .zero, firstSequence: version == 1 ? 0 : 1, lastSequence: version,
                tables: pageTables,
                rows: [
                    Changeset.Row(
                        table: 0, operation: .upsert, version: version,
                        stamp: HLC(milliseconds: 1_700_000_000_000 + version, counter: 0), primaryKey: [.text("r1")],
                        columns: values.enumerated().map { .init(column: $0, value: .text($1)) })
                ])
        }

        // The row as both devices first had it.
        _ = try replica.apply(page: pulled(version: 1, (0..<count).map { "awal\($0)" }))
        // Device A edits a random non-empty subset of the columns, not yet pushed.
        var mine = Set((0..<count).filter { _ in Bool.random(using: &random) })
        if mine.count == count { mine.remove(mine.first!) }
        if mine.isEmpty { mine.insert(Int.random(in: 0..<count, using: &random)) }
        let assignments = mine.sorted().map { "c\($0) = 'lokal\($0)'" }.joined(separator: ", ")
        try sqlite3Shell(path, "UPDATE t SET \(assignments) WHERE id = 'r1'")

        // Device B's edit of every column comes back from the master.
        let result = try replica.apply(page: pulled(version: 2, (0..<count).map { "pusat\($0)" }))

        #expect(result.keptLocal == 1, "\(generated.ddl), local edit of \(mine.sorted())")
        let expected: [SQLValue] = (0..<count).map { mine.contains($0) ? .text("lokal\($0)") : .text("pusat\($0)") }
        let columns = (0..<count).map { "c\($0)" }.joined(separator: ", ")
        #expect(
            try rows(path, "SELECT \(columns) FROM t") == [expected],
            "\(generated.ddl), local edit of \(mine.sorted())")
        #expect(try replica.cursor() == 2)
        // The pending edit still goes up, based on the version it was made on.
        let push = try #require(try nextPush(replica))
        let row = try #require(push.rows(of: "t").first)
        #expect(Set(push.values(row).keys) == Set(mine.map { "c\($0)" }))
        #expect(row.columns.allSatisfy { $0.baseVersion == 1 })
    }

    @Test func aPageThatCannotFitBesideAPendingEditIsNotAppliedAndSaysSoWithACode() throws {
        // A CHECK across two columns: the local edit of one and the master's of the other are
        // each valid, and together not. The page must not half-apply, and the error is coded.
        let schema = SchemaDocument(
            server: "test", opd: "pkm-test",
            tables: [try table("r", "CREATE TABLE r (id TEXT PRIMARY KEY, lo INTEGER, hi INTEGER, CHECK (lo <= hi))")])
        let path = try makeTemporaryDirectory().appendingPathComponent("replica.sqlite").path
        try Replica.create(at: path, schema: schema, serverURL: URL(string: "http://127.0.0.1:9")!, token: "t")
        let replica = try Replica(path: path)
        func pulled(after: UInt64, version: UInt64, lo: Int64, hi: Int64) -> Changeset {
            Changeset(
                kind: .pull, id: UUID(), replicaID: .zero, firstSequence: after, lastSequence: version,
                tables: schema.tables.map(\.changesetTable),
                rows: [
                    Changeset.Row(
                        table: 0, operation: .upsert, version: version,
                        stamp: HLC(milliseconds: 1_700_000_000_000 + version, counter: 0), primaryKey: [.text("x")],
                        columns: [.init(column: 0, value: .integer(lo)), .init(column: 1, value: .integer(hi))])
                ])
        }
        _ = try replica.apply(page: pulled(after: 0, version: 1, lo: 1, hi: 10))
        try sqlite3Shell(path, "UPDATE r SET lo = 8 WHERE id = 'x'")
        #expect {
            try replica.apply(page: pulled(after: 1, version: 2, lo: 1, hi: 5))
        } throws: { error in
            (error as? ReplicaError)?.code == .pullBlocked
        }
        #expect(try replica.cursor() == 1, "the page was not applied: its rows come again")
        #expect(try rows(path, "SELECT lo, hi FROM r") == [[.integer(8), .integer(10)]])
    }
}
