import Foundation
import KotaSyncCore
import Testing

@testable import KotaSyncServer

/// The per-row limits (`Protocol/merge.md` §14) and the config check that keeps the largest row
/// within one pull page every client accepts.
struct RowLimitsTests {
    static func parse(limits: String) throws(ConfigError) -> ServerConfig {
        try ServerConfig.parse(
            yaml: """
                opds:
                  - id: a
                    name: A
                limits:
                \(limits)
                tables:
                  - name: t
                    ddl: "CREATE TABLE t (id TEXT PRIMARY KEY, body BLOB)"
                """, baseURL: URL(fileURLWithPath: "/tmp"))
    }

    @Test func theDefaultsFitAPageEveryClientAccepts() throws {
        let config = try Self.parse(limits: "  max_rows: 1000")
        #expect(config.limits.maxValueBytes == 1 << 20)
        #expect(config.limits.maxRowBytes == 4 << 20)
        #expect(config.limits.maxPullPageBytes == 16 << 20)
        #expect(config.limits.maxPullPageBytes <= DecodeLimits.pullPage.maxUncompressedBytes)
    }

    @Test(arguments: [
        // A row that could not fit in any page a client accepts.
        "  max_row_bytes: 67108864\n  max_value_bytes: 1048576",
        // A row smaller than one value.
        "  max_row_bytes: 2048\n  max_value_bytes: 4096",
        "  max_value_bytes: 10",
        // Pages a client would refuse, or none at all.
        "  max_pull_page_bytes: 134217728",
        "  max_pull_page_bytes: 0",
        "  max_pull_page: 2000000",
    ])
    func aConfigWhoseRowsCouldNotReachEveryReplicaIsRefused(_ limits: String) {
        #expect {
            try Self.parse(limits: limits)
        } throws: { ($0 as? ConfigError)?.code == .invalid }
    }

    @Test func aRowJustWithinTheClientLimitLoads() throws {
        let config = try Self.parse(limits: "  max_row_bytes: 60000000")
        #expect(config.limits.maxRowBytes == 60_000_000)
    }

    @Test func valuesCountTheirBytesAndNumbersCountEight() {
        #expect(RowLimits.bytes(of: .text("é")) == 2)
        #expect(RowLimits.bytes(of: .blob([])) == 0)
        #expect(RowLimits.bytes(of: .integer(.min)) == 8)
        #expect(RowLimits.bytes(of: .real(-0.0)) == 8)
        #expect(RowLimits.bytes(of: .null) == 0)
        #expect(RowLimits.bytes(key: [.text("k")], values: [.integer(1), .blob([1, 2])]) == 11)
    }

    @Test func theRefusalsNameTheirLimitAndAreStable() {
        var limits = ServerConfig.Limits()
        limits.maxValueBytes = 4
        limits.maxRowBytes = 13
        let rows = RowLimits(limits)
        #expect(rows.valueRefusal(key: [.text("k")], values: [.text("abcd")], table: "t") == nil)
        #expect(rows.valueRefusal(key: [.text("k")], values: [.text("abcde")], table: "t")?.code == .valueTooLarge)
        #expect(rows.valueRefusal(key: [.text("kkkkk")], values: [], table: "t")?.code == .valueTooLarge)
        #expect(rows.rowRefusal(key: [.text("k")], values: [.text("abcd"), .integer(1)], table: "t") == nil)
        #expect(
            rows.rowRefusal(key: [.text("kk")], values: [.text("abcd"), .integer(1)], table: "t")?.code == .rowTooLarge)
        #expect(rows.baseRefusal(rowBase: 7, columnBases: [3], issued: 7, table: "t") == nil)
        #expect(rows.baseRefusal(rowBase: 8, columnBases: [], issued: 7, table: "t")?.code == .unknownBaseVersion)
        #expect(rows.baseRefusal(rowBase: 0, columnBases: [.max], issued: 7, table: "t")?.code == .unknownBaseVersion)
    }

    /// A page's bound for a row is never below what the codec writes for it.
    @Test(arguments: [0, 1, 200, 70_000])
    func theEncodedBoundCoversTheEncoding(_ size: Int) {
        let row = Changeset.Row(
            table: 0, operation: .upsert, version: .max >> 1, stamp: HLC(rawValue: .max >> 1),
            primaryKey: [.text(String(repeating: "k", count: size))],
            columns: [
                .init(column: 0, value: .blob(Array(repeating: 7, count: size))),
                .init(column: 1, value: .integer(.min)),
            ])
        let table = Changeset.Table(name: "t", primaryKey: ["id"], columns: ["body", "n"])
        let page = Changeset(
            kind: .pull, id: UUID(), replicaID: .zero, firstSequence: 0, lastSequence: 1, tables: [table], rows: [row])
        let bound =
            RowLimits.encodedBound(
                rowBytes: RowLimits.bytes(key: row.primaryKey, values: row.columns.map(\.value)), valueCount: 3)
            + RowLimits.dictionaryBound([
                TableSchema(
                    name: "t", ddl: "", primaryKey: [.init(name: "id", declaredType: "TEXT", notNull: false)],
                    columns: [
                        .init(name: "body", declaredType: "BLOB", notNull: false),
                        .init(name: "n", declaredType: "INTEGER", notNull: false),
                    ])
            ])
        #expect(ChangesetCodec.encodePayload(page).count <= bound)
    }
}
