import Foundation
import KotaSyncCore
import KotaSyncTesting
import Synchronization
import Testing

@testable import KotaSyncServer

/// The pull on PostgreSQL: the same pages as the SQLite master gives for the same rows, and the
/// page rules one by one (scope, removals, hidden columns, the byte budget, the cursor at the end).
@Suite("PostgreSQL pull", .postgres)
struct PostgresPullTests {
    static func yaml(pageBytes: Int? = nil) -> String {
        """
        name: Pull
        opds:
          - id: dinkes
            name: Dinas Kesehatan
          - id: pkm-a
            name: Puskesmas A
            parent: dinkes
          - id: pkm-b
            name: Puskesmas B
            parent: dinkes
        tables:
          - name: patients
            sync:
              scope: clinic_id
              hidden: [phone]
            ddl: "CREATE TABLE patients (id TEXT PRIMARY KEY, clinic_id TEXT, name TEXT, phone TEXT, born INTEGER, w REAL, extra)"
          - name: notes
            ddl: "CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT)"
          - name: tags
            ddl: "CREATE TABLE tags (a INTEGER NOT NULL, b TEXT NOT NULL, PRIMARY KEY (a, b))"
          - name: reports
            sync:
              direction: up
            ddl: "CREATE TABLE reports (id TEXT PRIMARY KEY, body TEXT)"
        """ + (pageBytes.map { "\nlimits:\n  max_pull_page_bytes: \($0)\n" } ?? "\n")
    }

    /// One device's pushes, numbered in order.
    final class Pusher: Sendable {
        let replica = UUID()
        let opd: String
        let sequence = Mutex<UInt64>(0)
        init(opd: String) { self.opd = opd }

        func push(_ store: SQLiteMasterStore, _ rows: [Changeset.Row]) async throws {
            let n = sequence.withLock {
                $0 += 1
                return $0
            }
            let changeset = Changeset(
                kind: .push, id: UUID(), replicaID: replica, firstSequence: n, lastSequence: n,
                tables: store.config.tables.map(\.changesetTable), rows: rows)
            _ = try await store.push(changeset, from: Device(tokenID: "t-\(opd)", opd: opd))
        }
    }

    static let clock = Mutex<UInt16>(0)

    static func stamp() -> HLC {
        HLC(
            milliseconds: Timestamp.milliseconds(Date()),
            counter: clock.withLock {
                $0 &+= 1
                return $0
            })
    }

    static func patient(_ id: String, clinic: String, name: String, phone: String = "0812", size: Int = 0)
        -> Changeset.Row
    {
        Changeset.Row(
            table: 0, operation: .upsert, version: 0, stamp: stamp(), primaryKey: [.text(id)],
            columns: [
                .init(column: 0, value: .text(clinic)), .init(column: 1, value: .text(name)),
                .init(column: 2, value: .text(phone)), .init(column: 3, value: .integer(1990)),
                .init(column: 4, value: .real(61.25)),
                .init(column: 5, value: size > 0 ? .blob(Array(repeating: 7, count: size)) : .text("007")),
            ])
    }

    static func note(_ id: String, _ body: String) -> Changeset.Row {
        Changeset.Row(
            table: 1, operation: .upsert, version: 0, stamp: stamp(), primaryKey: [.text(id)],
            columns: [.init(column: 0, value: .text(body))])
    }

    static func delete(_ table: Int, _ key: [SQLValue]) -> Changeset.Row {
        Changeset.Row(table: table, operation: .delete, version: 0, stamp: stamp(), primaryKey: key, columns: [])
    }

    /// Fills a SQLite master through real pushes: rows of both clinics, notes, key-only rows, a
    /// report (a table devices only write), a patient moved from clinic A to B (A is sent its
    /// removal), a deleted patient and a deleted note, large rows when `large`.
    @discardableResult
    static func fill(_ store: SQLiteMasterStore, large: Bool = false) async throws -> [String: UUID] {
        let a = Pusher(opd: "pkm-a")
        let b = Pusher(opd: "pkm-b")
        let city = Pusher(opd: "dinkes")
        let size = large ? 700 : 0
        try await a.push(store, (0..<5).map { patient("a\($0)", clinic: "pkm-a", name: "A \($0)", size: size) })
        try await b.push(store, (0..<4).map { patient("b\($0)", clinic: "pkm-b", name: "B \($0)", size: size) })
        try await city.push(store, (0..<3).map { note("n\($0)", "note \($0)") })
        try await a.push(
            store,
            [
                Changeset.Row(
                    table: 2, operation: .upsert, version: 0, stamp: stamp(), primaryKey: [.integer(1), .text("x")],
                    columns: []),
                Changeset.Row(
                    table: 2, operation: .upsert, version: 0, stamp: stamp(), primaryKey: [.integer(2), .text("y")],
                    columns: []),
                Changeset.Row(
                    table: 3, operation: .upsert, version: 0, stamp: stamp(), primaryKey: [.text("r1")],
                    columns: [.init(column: 0, value: .text("monthly"))]),
            ])
        try await city.push(store, [patient("a1", clinic: "pkm-b", name: "A 1 moved", size: size)])
        try await a.push(store, [delete(0, [.text("a2")]), note("n3", "from A")])
        try await city.push(store, [delete(1, [.text("n0")]), patient("b0", clinic: "pkm-b", name: "B 0 again")])
        // Both clinics change a note neither saw the other change.
        try await b.push(store, [note("n1", "from B")])
        try await a.push(store, [note("n1", "from A, concurrently")])
        return ["pkm-a": a.replica, "pkm-b": b.replica, "dinkes": city.replica]
    }

    /// Every page of a walk from cursor 0, `limit` rows at a time: rows, cursor and whether there was more.
    struct Walk: Equatable, CustomStringConvertible {
        var pages: [(rows: [Changeset.Row], next: UInt64, more: Bool, first: UInt64, last: UInt64)] = []
        static func == (l: Walk, r: Walk) -> Bool {
            l.pages.count == r.pages.count
                && zip(l.pages, r.pages).allSatisfy {
                    $0.rows == $1.rows && $0.next == $1.next && $0.more == $1.more && $0.first == $1.first
                        && $0.last == $1.last
                }
        }
        var description: String {
            pages.map { "\($0.rows.count) rows → \($0.next)\($0.more ? "+" : "")" }.joined(separator: ", ")
        }
        var rows: [Changeset.Row] { pages.flatMap(\.rows) }
    }

    static func walk(limit: Int, _ pull: (UInt64, Int) async throws -> PullPage) async throws -> Walk {
        var walk = Walk()
        var cursor: UInt64 = 0
        while true {
            let page = try await pull(cursor, limit)
            let decoded = try ChangesetCodec.decode(page.body)
            #expect(page.rows == decoded.rows.count)
            walk.pages.append(
                (decoded.rows, page.nextCursor, page.hasMore, decoded.firstSequence, decoded.lastSequence))
            cursor = page.nextCursor
            if !page.hasMore || walk.pages.count > 100 { return walk }
        }
    }

    @Test(arguments: [false, true])
    func everyPageIsTheSQLiteMastersPage(large: Bool) async throws {
        let config = try storeConfig(Self.yaml(pageBytes: large ? 2048 : nil))
        let sqlite = try temporarySQLiteMaster(config)
        try await Self.fill(sqlite, large: large)
        try await withStore(config: config) { postgres in
            try await SeededMaster.copy(from: sqlite, to: postgres)
            for opd in [nil, "dinkes", "pkm-a", "pkm-b"] as [String?] {
                for limit in [1, 2, 3, 1000] {
                    let expected = try await Self.walk(limit: limit) {
                        try await sqlite.pull(after: $0, limit: $1, opd: opd)
                    }
                    let got = try await Self.walk(limit: limit) {
                        try await postgres.pull(after: $0, limit: $1, opd: opd)
                    }
                    #expect(got == expected, "opd \(opd ?? "-"), limit \(limit): \(got) vs \(expected)")
                }
            }
        }
    }

    @Test func aDevicePullsItsScopeRemovalsAndNoHiddenValue() async throws {
        let config = try storeConfig(Self.yaml())
        let sqlite = try temporarySQLiteMaster(config)
        try await Self.fill(sqlite)
        try await withStore(config: config) { postgres in
            try await SeededMaster.copy(from: sqlite, to: postgres)
            let rows = try await Self.walk(limit: 1000) { try await postgres.pull(after: $0, limit: $1, opd: "pkm-a") }
                .rows
            func key(_ row: Changeset.Row) -> String {
                let parts = row.primaryKey.map { value -> String in
                    switch value {
                    case .text(let t): t
                    case .integer(let i): String(i)
                    default: "?"
                    }
                }
                return "\(config.tables[row.table].name):\(parts.joined(separator: ","))"
            }
            let upserts = Set(rows.filter { $0.operation == .upsert }.map(key))
            let deletes = Set(rows.filter { $0.operation == .delete }.map(key))
            // Its own clinic's live patients, the notes, the tags; never clinic B's, never a report.
            #expect(
                upserts == [
                    "patients:a0", "patients:a3", "patients:a4", "notes:n1", "notes:n2", "notes:n3", "tags:1,x",
                    "tags:2,y",
                ])
            // The patient moved to clinic B comes as its removal, without values; so do the deleted ones.
            #expect(deletes == ["patients:a1", "patients:a2", "notes:n0"])
            #expect(rows.filter { $0.operation == .delete }.allSatisfy { $0.columns.isEmpty })
            // The hidden phone column is NULL, the others are sent as they are.
            for row in rows where row.table == 0 && row.operation == .upsert {
                #expect(row.columns[2].value == .null)
                #expect(row.columns[0].value == .text("pkm-a") && row.columns[3].value == .integer(1990))
                #expect(row.columns[4].value == .real(61.25) && row.columns[5].value == .text("007"))
            }
        }
    }

    @Test func theCursorMovesToTheLatestVersionPastTheLastVisibleRow() async throws {
        let config = try storeConfig(Self.yaml())
        let sqlite = try temporarySQLiteMaster(config)
        try await Self.fill(sqlite)
        // Clinic A's rows come last: B's last visible row is well before the master's latest version.
        try await Pusher(opd: "pkm-a").push(
            sqlite, (5..<9).map { Self.patient("a\($0)", clinic: "pkm-a", name: "late") })
        try await withStore(config: config) { postgres in
            try await SeededMaster.copy(from: sqlite, to: postgres)
            let latest = try await postgres.master.readSnapshot { try await postgres.latestRowVersion($0) }
            let walk = try await Self.walk(limit: 1000) { try await postgres.pull(after: $0, limit: $1, opd: "pkm-b") }
            #expect(walk.pages.count == 1 && !walk.pages[0].more)
            #expect(walk.pages[0].next == latest && walk.rows.last!.version < latest)
            // Nothing new: an empty page at the same cursor.
            let again = try await postgres.pull(after: latest, limit: 10, opd: "pkm-b")
            #expect(again.rows == 0 && again.nextCursor == latest && !again.hasMore)
        }
    }

    @Test func aPageEndsAtItsByteBudgetWithAtLeastOneRow() async throws {
        let config = try storeConfig(Self.yaml(pageBytes: 2048))
        let sqlite = try temporarySQLiteMaster(config)
        try await Self.fill(sqlite, large: true)
        // A row larger than the whole budget.
        try await Pusher(opd: "pkm-a").push(sqlite, [Self.patient("huge", clinic: "pkm-a", name: "H", size: 5000)])
        try await withStore(config: config) { postgres in
            try await SeededMaster.copy(from: sqlite, to: postgres)
            let walk = try await Self.walk(limit: 1000) { try await postgres.pull(after: $0, limit: $1, opd: nil) }
            #expect(walk.pages.count > 3)
            #expect(walk.pages.allSatisfy { page in !page.rows.isEmpty })
            #expect(walk.pages.dropLast().allSatisfy { $0.more })
            let huge = try #require(walk.pages.first { $0.rows.contains { $0.primaryKey == [.text("huge")] } })
            #expect(huge.rows.count == 1)
            for page in walk.pages where page.rows.count > 1 {
                let bytes = page.rows.reduce(0) {
                    $0
                        + RowLimits.encodedBound(
                            rowBytes: RowLimits.bytes(key: $1.primaryKey, values: $1.columns.map(\.value)),
                            valueCount: $1.primaryKey.count + $1.columns.count)
                }
                #expect(bytes <= 2048 - RowLimits.dictionaryBound(config.tables))
            }
        }
    }

    @Test func aPullDoesNotWaitForAMergeInProgress() async throws {
        // Decision D3: merges hold the merge lock from version allocation to commit; pulls read
        // their snapshot without it. (A pull that took it would wait here for ever.)
        let config = try storeConfig(Self.yaml())
        let sqlite = try temporarySQLiteMaster(config)
        try await Self.fill(sqlite)
        try await withStores(2, config: config) { stores in
            try await SeededMaster.copy(from: sqlite, to: stores[0])
            let expected = try await stores[0].pull(after: 0, limit: 1000, opd: "pkm-a")
            let page = try await stores[1].master.transaction { merging in
                try await merging.query(
                    "SELECT pg_advisory_xact_lock(\(PostgresMaster.LockKey.merge.rawValue))",
                    logger: SQLiteMasterStore.quietLogger)
                return try await stores[0].pull(after: 0, limit: 1000, opd: "pkm-a")
            }
            #expect(
                try ChangesetCodec.decode(page.body).rows == (try ChangesetCodec.decode(expected.body).rows)
                    && page.nextCursor == expected.nextCursor)
        }
    }
}
