import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite
import PostgresNIO
import Testing

@testable import KotaSyncServer

/// SQLite's storage classes survive the trip through the PostgreSQL master exactly: every value
/// reads back as the SQLite master keeps it (the same table, same DDL, in a real SQLite database
/// beside it), storage class and bits.
@Suite(.postgres)
struct PostgresValueMappingTests {
    /// Values of every storage class, with the edges: 64-bit extremes, signed zeros, subnormals,
    /// infinities, reals that are whole numbers in and out of the 64-bit range, text that looks
    /// like a number, empty text and blob.
    static let integers: [SQLValue] = [
        .integer(.min), .integer(.max), .integer(0), .integer(-1), .integer(1 << 53 + 1), .integer(42),
    ]
    static let reals: [SQLValue] = [
        0.0, -0.0, 1.5, -2.25, 0.1, 1.0 / 3.0, .pi, 3.0, 1e20, -1e20, 9_223_372_036_854_775_808.0,
        -9_223_372_036_854_775_808.0, 9_007_199_254_740_993.0, .leastNonzeroMagnitude, -.leastNonzeroMagnitude,
        .leastNormalMagnitude, .greatestFiniteMagnitude, -.greatestFiniteMagnitude, .infinity, -.infinity, 1e-300,
        123_456_789.123_456_789,
    ].map { SQLValue.real($0) }
    static let texts: [SQLValue] = [
        "007", "1e3", "", " 12 ", "3.0", "NULL", "Ünïcødé 😀 بِسْمِ", "O'Brien \"quoted\" \\ back", "-0",
    ].map { SQLValue.text($0) }
    static let blobs: [SQLValue] = [.blob([]), .blob([0]), .blob(Array(0...255)), .blob(Array("007".utf8))]

    /// Per column of the `vals` table, the values its affinity lets in.
    static var cases: [(column: String, values: [SQLValue])] {
        [
            ("i", integers + [.null]),
            ("r", reals + [.null]),
            ("t", texts + [.null]),
            ("n", integers + reals + [.null]),
            ("u", integers + reals + texts + blobs + [.null]),
            ("b", integers + reals + texts + blobs + [.null]),
        ]
    }

    @Test func everyValueReadsBackAsTheSQLiteMasterKeepsIt() async throws {
        let config = try storeConfig()
        let table = try #require(config.tables.first { $0.name == "vals" })
        let definition = try PostgresTableDefinition(table)
        // One row per (column, value): the value in its column, NULL elsewhere.
        var rows: [(key: [SQLValue], values: [SQLValue])] = []
        for (column, values) in Self.cases {
            let c = try #require(table.columns.firstIndex { $0.name == column })
            for (n, value) in values.enumerated() {
                var row = Array(repeating: SQLValue.null, count: table.columns.count)
                row[c] = value
                rows.append(([.text("\(column)-\(n)")], row))
            }
        }
        let oracle = try Self.sqliteRoundTrip(table, rows)
        let read = try await withStore(config: config) { store in
            try await Self.postgresRoundTrip(definition, rows, store.client)
        }
        // Matched by key: the two databases need not sort text alike.
        let keptByKey = Dictionary(uniqueKeysWithValues: oracle.map { ($0.key, $0.values) })
        let readByKey = Dictionary(uniqueKeysWithValues: read.map { ($0.key, $0.values) })
        #expect(read.count == rows.count)
        for written in rows {
            let kept = (key: written.key, values: try #require(keptByKey[written.key]))
            let back = (key: written.key, values: try #require(readByKey[written.key]))
            for c in 0..<table.columns.count {
                let column = table.columns[c]
                let expected = column.affinity.stored(written.values[c])
                #expect(
                    kept.values[c] == expected,
                    "SQLite keeps \(written.values[c]) in \(column.name) as \(kept.values[c])")
                #expect(
                    back.values[c] == kept.values[c],
                    "\(column.name) ← \(written.values[c]): PostgreSQL gave \(back.values[c]) (\(back.values[c].storageClass)), SQLite \(kept.values[c])"
                )
            }
        }
    }

    @Test func textAndBlobsOfTheLargestValueSizeSurvive() async throws {
        let config = try storeConfig()
        let table = try #require(config.tables.first { $0.name == "vals" })
        let definition = try PostgresTableDefinition(table)
        let limit = config.limits.maxValueBytes
        var rng = SystemRandomNumberGenerator()
        let blob = (0..<limit).map { _ in UInt8.random(in: 0...255, using: &rng) }
        // Multi-byte characters up to the limit in UTF-8 bytes.
        let text = String(repeating: "é", count: limit / 2)
        let rows: [(key: [SQLValue], values: [SQLValue])] = [
            ([.text("big")], [.null, .null, .text(text), .null, .blob(blob), .blob(blob)]),
            ([.text("big-u")], [.null, .null, .null, .null, .text(text), .null]),
        ]
        let read = try await withStore(config: config) { store in
            try await Self.postgresRoundTrip(definition, rows, store.client)
        }
        #expect(read.map(\.values) == rows.map(\.values))
    }

    @Test func aValueOfAClassTheColumnDoesNotTakeIsRefusedWithTypeMismatch() throws {
        let refused: [(PostgresColumnType, SQLValue)] = [
            (.bigint, .text("abc")), (.bigint, .real(1.5)), (.bigint, .blob([1])), (.doublePrecision, .integer(1)),
            (.doublePrecision, .text("1.5")), (.text, .integer(7)), (.text, .blob([])), (.numeric, .text("12")),
            (.numeric, .blob([1])), (.text, .text("a\u{0}b")), (.value, .text("\u{0}")),
            (.doublePrecision, .real(.nan)),
            (.value, .real(.nan)),
        ]
        for (type, value) in refused {
            var bindings = PostgresBindings()
            #expect(throws: SyncError.self, "\(value) into \(type.sql)") { try type.bind(value, to: &bindings) }
            #expect((try? type.bind(value, to: &bindings)) == nil)
        }
        var bindings = PostgresBindings()
        do {
            try PostgresColumnType.bigint.bind(.text("abc"), to: &bindings)
        } catch {
            #expect(error.code == .typeMismatch)
        }
    }

    /// A NUMERIC column's reals are written as decimals that always have a fractional digit and
    /// read back to the same double; integers have none.
    @Test func numericTextKeepsRealsApartFromIntegersAndReadsBackExactly() throws {
        #expect(PostgresColumnType.decimalText(1e20) == "100000000000000000000.0")
        #expect(PostgresColumnType.decimalText(-2.5) == "-2.5")
        #expect(PostgresColumnType.decimalText(0.1) == "0.1")
        #expect(PostgresColumnType.decimalText(1e-5) == "0.00001")
        #expect(PostgresColumnType.decimalText(.infinity) == "Infinity")
        let subnormal = PostgresColumnType.decimalText(.leastNonzeroMagnitude)
        #expect(subnormal.hasPrefix("0.000") && subnormal.hasSuffix("5"))
        #expect(try PostgresColumnType.numericValue("42") == .integer(42))
        #expect(try PostgresColumnType.numericValue("42.0") == .real(42))
        #expect(try PostgresColumnType.numericValue("-9223372036854775808") == .integer(.min))
        #expect(try PostgresColumnType.numericValue("-9223372036854775808.0") == .real(-9_223_372_036_854_775_808.0))
        var rng = Xoshiro(seed: 15)
        for _ in 0..<20_000 {
            let r = Double(bitPattern: UInt64.random(in: 0...UInt64.max, using: &rng))
            guard r.isFinite else { continue }
            let text = PostgresColumnType.decimalText(r)
            #expect(text.contains("."))
            #expect(!text.contains("e"))
            let back = try PostgresColumnType.numericValue(text)
            #expect(back == .real(r), "\(r) → \(text)")
        }
    }

    /// The replicated tables are ordinary tables in `public` with the mapped types and the
    /// DDL's UNIQUE index; the bookkeeping is in `kotasync`; preparing again changes nothing.
    @Test func theSchemaHasTheConfigsTablesInPublicAndTheBookkeepingInItsOwnSchema() async throws {
        try await withStores(2) { stores in
            let client = stores[0].client
            try await stores[1].master.prepareSchema(for: stores[1].config)
            let columns = try await client.query(
                """
                SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
                FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
                ORDER BY c.relname, a.attnum
                """
            ).collect().map { try $0.decode((String, String, String, Bool).self) }
            let described = columns.map { "\($0.0).\($0.1) \($0.2)\($0.3 ? " not null" : "")" }
            #expect(
                described == [
                    "patients.id text not null", "patients.nik text", "patients.name text not null",
                    "patients.born bigint",
                    "vals.id text not null", "vals.i bigint", "vals.r double precision", "vals.t text",
                    "vals.n numeric",
                    "vals.u kotasync.value", "vals.b kotasync.value",
                ])
            let unique = try await client.query(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'patients' AND indexname LIKE '%unique%'"
            ).collect().map { try $0.decode(String.self) }
            #expect(unique.count == 1)
            #expect(unique.first?.contains("UNIQUE INDEX") == true && unique.first?.contains("(nik)") == true)
            let bookkeeping = try await client.query(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'kotasync' ORDER BY table_name"
            ).collect().map { try $0.decode(String.self) }
            #expect(
                bookkeeping == [
                    "additive", "audit", "changesets", "conflicts", "devices", "history", "migrations", "replicas",
                    "rows", "server", "tokens", "upload_chunks", "uploads", "users",
                ])
        }
    }

    @Test func anExistingTableWhoseColumnHasAnotherTypeIsRefused() async throws {
        try await withStore { store in
            let changed = storeYAML.replacingOccurrences(of: "born INTEGER", with: "born TEXT")
            await #expect {
                try await store.master.prepareSchema(for: try storeConfig(changed))
            } throws: { ($0 as? ConfigError)?.code == .invalidDDL }
        }
    }

    // MARK: - The two round trips

    static func postgresRoundTrip(
        _ definition: PostgresTableDefinition, _ rows: [(key: [SQLValue], values: [SQLValue])], _ client: PostgresClient
    ) async throws -> [(key: [SQLValue], values: [SQLValue])] {
        for row in rows {
            try await client.query(
                PostgresQuery(
                    unsafeSQL: definition.insertRow, binds: try definition.bindRow(key: row.key, values: row.values)))
        }
        return try await client.query(PostgresQuery(unsafeSQL: definition.selectRows)).collect().map {
            try definition.decodeRow($0)
        }
    }

    static func sqliteRoundTrip(_ table: TableSchema, _ rows: [(key: [SQLValue], values: [SQLValue])]) throws
        -> [(key: [SQLValue], values: [SQLValue])]
    {
        let db = try DatabaseQueue()
        let names = (table.primaryKey + table.columns).map { SQL.quote($0.name) }
        return try db.write { db in
            try db.execute(sql: table.ddl)
            for row in rows {
                try db.execute(
                    sql:
                        "INSERT INTO \(SQL.quote(table.name)) (\(names.joined(separator: ", "))) VALUES (\(names.map { _ in "?" }.joined(separator: ", ")))",
                    arguments: StatementArguments((row.key + row.values).map(\.databaseValue)))
            }
            let order = table.primaryKey.map { SQL.quote($0.name) }.joined(separator: ", ")
            return try Row.fetchAll(
                db, sql: "SELECT \(names.joined(separator: ", ")) FROM \(SQL.quote(table.name)) ORDER BY \(order)"
            ).map { row in
                let values = (0..<names.count).map { SQLValue(row[$0] as DatabaseValue) }
                return (Array(values.prefix(table.primaryKey.count)), Array(values.dropFirst(table.primaryKey.count)))
            }
        }
    }
}

/// A seeded generator, so a failing value can be found again.
struct Xoshiro: RandomNumberGenerator {
    var state: (UInt64, UInt64, UInt64, UInt64)

    init(seed: UInt64) {
        var s = seed
        func next() -> UInt64 {
            s &+= 0x9E37_79B9_7F4A_7C15
            var z = s
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        state = (next(), next(), next(), next())
    }

    mutating func next() -> UInt64 {
        let result = ((state.1 &* 5) << 7 | (state.1 &* 5) >> 57) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = state.3 << 45 | state.3 >> 19
        return result
    }
}
