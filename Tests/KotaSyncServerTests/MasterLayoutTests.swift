import Foundation
import GRDB
import KotaSyncCore
import Testing

@testable import KotaSyncServer

/// The SQLite master's storage layout for speed: `_ks_rows` keyed by version (and a master file
/// of the older layout migrated when it opens), and the group commit without savepoints, whose
/// refused pushes are still rolled back alone.
struct MasterLayoutTests {
    typealias Device = SQLiteMasterStoreTests.Device

    static func directory(_ name: String = #function) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "kotasync-layout-\(name.filter { $0.isLetter })-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    static func open(_ dir: URL) throws -> SQLiteMasterStore {
        let config = try ServerConfig.parse(yaml: SQLiteMasterStoreTests.yaml, baseURL: dir)
        return try SQLiteMasterStore(path: dir.appendingPathComponent("master.sqlite").path, config: config)
    }

    /// Every entry of `_ks_rows`, every column, in version order.
    static func entries(_ db: Database) throws -> [[DatabaseValue]] {
        try Row.fetchAll(
            db,
            sql:
                "SELECT tbl, pk, version, deleted, open_conflicts, clocks, scope, gone_for FROM _ks_rows ORDER BY version"
        ).map { Array($0.databaseValues) }
    }

    static func rowsTableSQL(_ db: Database) throws -> String {
        try String.fetchOne(db, sql: "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = '_ks_rows'") ?? ""
    }

    static func indexes(_ db: Database) throws -> Set<String> {
        Set(try String.fetchAll(db, sql: "SELECT name FROM pragma_index_list('_ks_rows')"))
    }

    /// `_ks_rows` as every master made before 2026-12 has it: the statements of that version's
    /// `MasterSchema` (the table as first released, then the two columns added to it later),
    /// filled with the entries given.
    static func rebuildInOldLayout(_ db: Database, entries: [[DatabaseValue]]) throws {
        try db.execute(sql: "DROP TABLE _ks_rows")
        try db.execute(
            sql: """
                CREATE TABLE IF NOT EXISTS _ks_rows (
                    tbl TEXT NOT NULL, pk BLOB NOT NULL, version INTEGER NOT NULL, deleted INTEGER NOT NULL,
                    open_conflicts INTEGER NOT NULL DEFAULT 0, clocks BLOB NOT NULL, PRIMARY KEY (tbl, pk)
                ) WITHOUT ROWID
                """)
        try db.execute(sql: "CREATE UNIQUE INDEX IF NOT EXISTS _ks_rows_version ON _ks_rows(version)")
        try db.execute(sql: "ALTER TABLE _ks_rows ADD COLUMN scope ")
        try db.execute(sql: "ALTER TABLE _ks_rows ADD COLUMN gone_for TEXT")
        for entry in entries {
            try db.execute(
                sql: """
                    INSERT INTO _ks_rows(tbl, pk, version, deleted, open_conflicts, clocks, scope, gone_for)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """, arguments: StatementArguments(entry))
        }
    }

    @Test func aNewMasterKeepsItsRowEntriesKeyedByVersion() async throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try Self.open(dir)
        let (sql, indexes) = try await store.pool.read { db in (try Self.rowsTableSQL(db), try Self.indexes(db)) }
        #expect(sql.contains("version INTEGER PRIMARY KEY"), "\(sql)")
        #expect(!sql.uppercased().contains("WITHOUT ROWID"), "\(sql)")
        #expect(indexes.contains("_ks_rows_key"))
    }

    /// A master file written by an earlier version (`_ks_rows` without rowid, keyed by (tbl, pk))
    /// opens, is rebuilt keyed by version with every entry as it was, pulls the same rows, and
    /// merges on top of what it held: a late change still meets the clocks stored before.
    @Test func aMasterOfTheOlderLayoutIsMigratedWhenItOpensAndKeepsWorking() async throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var a = Device(opd: "pkm-a")
        var b = Device(opd: "pkm-b", clock: 1_764_000_500_000)
        let before: [[DatabaseValue]]
        let pulledBefore: [Changeset.Row]
        do {
            let store = try Self.open(dir)
            _ = try await a.push(
                store,
                [
                    (.upsert, "n1", 0, [(0, .text("satu")), (1, .text("isi"))]),
                    (.upsert, "n2", 0, [(0, .text("dua")), (1, .null)]),
                    (.upsert, "n3", 0, [(0, .text("tiga")), (1, .null)]),
                ])
            _ = try await b.push(store, [(.update, "n1", 0, [(0, .text("satu dari B"))])])
            _ = try await a.push(store, [(.delete, "n2", 0, [])])
            pulledBefore = try await SQLiteMasterStoreTests.pullAll(store)
            before = try await store.pool.write { db in
                let entries = try Self.entries(db)
                try Self.rebuildInOldLayout(db, entries: entries)
                return entries
            }
            let (oldSQL, oldIndexes) = try await store.pool.read { db in
                (try Self.rowsTableSQL(db), try Self.indexes(db))
            }
            #expect(oldSQL.uppercased().contains("WITHOUT ROWID"))
            #expect(oldIndexes.contains("_ks_rows_version"))
            try store.pool.close()
        }
        #expect(before.count == 3)

        let store = try Self.open(dir)
        let (sql, indexes, after, names) = try await store.pool.read { db in
            (
                try Self.rowsTableSQL(db), try Self.indexes(db), try Self.entries(db),
                try String.fetchAll(db, sql: "SELECT name FROM sqlite_schema WHERE tbl_name = '_ks_rows'")
            )
        }
        #expect(sql.contains("version INTEGER PRIMARY KEY"), "\(sql)")
        #expect(!sql.uppercased().contains("WITHOUT ROWID"), "\(sql)")
        #expect(indexes.contains("_ks_rows_key"))
        #expect(!indexes.contains("_ks_rows_version"))
        #expect(after == before, "every entry, every column, as it was")
        #expect(Set(names) == ["_ks_rows", "_ks_rows_key"], "\(names)")
        let pulledAfter = try await SQLiteMasterStoreTests.pullAll(store)
        #expect(pulledAfter == pulledBefore)

        // A change made before B's update was seen: it meets B's stored clock and loses.
        let late = try await a.push(store, [(.update, "n1", 1, [(0, .text("satu lagi dari A"))])])
        let record = try #require(late.conflicts.first { $0.column == "title" })
        #expect(record.kind == .updateUpdate)
        _ = try await b.push(store, [(.upsert, "n4", 0, [(0, .text("empat")), (1, .null)])])
        let titles = try SQLiteMasterStoreTests.notes(store).map { [$0[0], $0[1]] }
        #expect(titles.contains([.text("n4"), .text("empat")]))
        #expect(titles.contains([.text("n1"), .text("satu dari B")]), "the late change lost to the stored clock")
        #expect(!titles.contains { $0[0] == .text("n2") }, "the deleted row stays deleted")
        let pulled = try await SQLiteMasterStoreTests.pullAll(store)
        let versions = pulled.map(\.version)
        #expect(versions == versions.sorted() && Set(versions).count == versions.count)
        #expect(Set(pulled.map(\.primaryKey)) == Set(["n1", "n2", "n3", "n4"].map { [SQLValue.text($0)] }))

        // Opening it again changes nothing more.
        let entries = try await store.pool.read { db in try Self.entries(db) }
        try store.pool.close()
        let again = try Self.open(dir)
        #expect(try await again.pool.read { db in try Self.entries(db) } == entries)
    }

    /// Pushes merged together in one transaction without savepoints: when one of them is
    /// refused, the group is merged again with each push in a savepoint of its own, so the
    /// refused one is rolled back alone and the others stand, in order, with their replies.
    @Test func aRefusedPushInAGroupIsRolledBackAloneAndTheOthersStand() async throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try Self.open(dir)
        let table = Changeset.Table(name: "notes", primaryKey: ["id"], columns: ["title", "body"])
        func push(_ opd: String, _ rows: [(String, SQLValue)]) throws -> (
            validated: ValidatedChangeset, rows: PushRows, device: KotaSyncServer.Device
        ) {
            let changeset = Changeset(
                kind: .push, id: UUID(), replicaID: UUID(), firstSequence: 1, lastSequence: UInt64(rows.count),
                tables: [table],
                rows: rows.enumerated().map { i, row in
                    Changeset.Row(
                        table: 0, operation: .upsert, version: 0,
                        stamp: HLC(milliseconds: 1_764_000_000_000 + UInt64(i), counter: 0), primaryKey: [.text(row.0)],
                        columns: [.init(column: 0, value: row.1), .init(column: 1, value: .null)])
                })
            return (
                try ChangesetValidator.validate(changeset, against: store.config.tables), .decoded(changeset.rows),
                KotaSyncServer.Device(tokenID: "t-\(opd)", opd: opd)
            )
        }
        let group = [
            try push("pkm-a", [("a1", .text("A"))]),
            // A valid row, then one without its NOT NULL title: the whole push is refused.
            try push("pkm-b", [("b1", .text("B")), ("b2", .null)]),
            try push("pkm-a", [("c1", .text("C")), ("a1", .text("A lagi"))]),
        ]
        let results = try await store.mergeGroup(group, now: Date())
        #expect(results.count == 3)
        let first = try results[0].get().0
        let third = try results[2].get().0
        #expect(throws: SyncError.self) { _ = try results[1].get() }
        if case .failure(let error as SyncError) = results[1] { #expect(error.code == .constraintViolation) }
        #expect(try ProtocolJSON.decoder().decode(PushReply.self, from: first.reply).applied == 1)
        #expect(try ProtocolJSON.decoder().decode(PushReply.self, from: third.reply).applied == 2)
        #expect(
            try SQLiteMasterStoreTests.notes(store) == [
                [.text("a1"), .text("A lagi"), .null], [.text("c1"), .text("C"), .null],
            ])
        let pulled = try await SQLiteMasterStoreTests.pullAll(store)
        #expect(pulled.map(\.primaryKey) == [[.text("c1")], [.text("a1")]])
        #expect(pulled.map(\.version) == [2, 3], "the refused push took no version")
        let history = try await store.pool.read { db in
            try Int.fetchOne(db, sql: "SELECT count(*) FROM _ks_history") ?? -1
        }
        #expect(history == 3)

        // A lone push that is refused leaves nothing either.
        let lone = try await store.mergeGroup([try push("pkm-b", [("d1", .text("D")), ("d2", .null)])], now: Date())
        #expect(throws: SyncError.self) { _ = try lone[0].get() }
        #expect(try SQLiteMasterStoreTests.notes(store).count == 2)
    }
}
