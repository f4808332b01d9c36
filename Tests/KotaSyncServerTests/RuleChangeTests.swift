import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite
import Testing

@testable import KotaSyncServer

/// When the sync rules change between two starts of the server, replicas receive the rows that
/// became visible to them and the removal of those that no longer are — and nothing else.
@Suite("Sync rule changes")
struct RuleChangeTests {
    static func yaml(_ patientsSync: String) -> String {
        """
        name: Rules
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
        \(patientsSync)
            ddl: "CREATE TABLE patients (id TEXT PRIMARY KEY, clinic_id TEXT, name TEXT, phone TEXT)"
          - name: notes
            ddl: "CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT)"
        """
    }

    static let scoped = "    sync:\n      scope: clinic_id"

    static func open(_ dir: URL, _ sync: String) throws -> SQLiteMasterStore {
        let config = try ServerConfig.parse(yaml: yaml(sync), baseURL: dir)
        return try SQLiteMasterStore(path: dir.appendingPathComponent("m.sqlite").path, config: config)
    }

    /// Pulls everything after `cursor` for `opd`; returns the rows by key and the new cursor.
    static func pull(_ store: SQLiteMasterStore, opd: String, after cursor: UInt64) async throws -> (
        rows: [String: Changeset.Row], cursor: UInt64
    ) {
        var cursor = cursor
        var rows: [String: Changeset.Row] = [:]
        while true {
            let page = try await store.pull(after: cursor, limit: 3, opd: opd)
            let decoded = try ChangesetCodec.decode(page.body)
            for row in decoded.rows {
                guard case .text(let id) = row.primaryKey.first else { continue }
                rows["\(decoded.tables[row.table].name):\(id)"] = row
            }
            cursor = page.nextCursor
            if !page.hasMore { return (rows, cursor) }
        }
    }

    static func seed(_ store: SQLiteMasterStore) async throws {
        let rows =
            (0..<6).map { i in
                Changeset.Row(
                    table: 0, operation: .upsert, version: 0, stamp: HLC(milliseconds: 100, counter: UInt16(i)),
                    primaryKey: [.text("p\(i)")],
                    columns: [
                        .init(column: 0, value: .text(i < 4 ? "pkm-a" : "pkm-b")),
                        .init(column: 1, value: .text("n\(i)")),
                        .init(column: 2, value: .text("08\(i)")),
                    ])
            } + [
                Changeset.Row(
                    table: 1, operation: .upsert, version: 0, stamp: HLC(milliseconds: 100, counter: 9),
                    primaryKey: [.text("note")], columns: [.init(column: 0, value: .text("x"))])
            ]
        let config = store.config
        let changeset = Changeset(
            kind: .push, id: UUID(), replicaID: UUID(), firstSequence: 1, lastSequence: 1,
            tables: [config.tables[0].changesetTable, config.tables[1].changesetTable], rows: rows)
        _ = try await store.push(changeset, from: Device(tokenID: "t", opd: "dinkes"))
    }

    /// A device's page is read in version order (the rowid of `_ks_rows`) whatever its scope
    /// terms: a plan that sorts the table made a 1M-row bootstrap quadratic (36 s instead of seconds).
    @Test(arguments: [nil, "dinkes", "pkm-a"])
    func aPageWalksTheVersionIndexWithoutSorting(opd: String?) async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "ks-plan-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try Self.open(dir, Self.scoped)
        try await Self.seed(store)
        let (sql, visible) = store.pageQuery(to: opd)
        let values: [(any DatabaseValueConvertible)?] = [Int64(0)] + visible.map { $0 } + [Int64(10)]
        let arguments = StatementArguments(values)
        let plan = try await store.read { db in
            try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + sql, arguments: arguments).map { $0["detail"] as String }
        }
        #expect(plan.contains { $0.contains("USING INTEGER PRIMARY KEY (rowid>?)") }, "\(plan)")
        #expect(!plan.contains { $0.contains("TEMP B-TREE") }, "\(plan)")
        // And the page it reads is the one the device may see.
        let page = try await store.pull(after: 0, limit: 10, opd: opd)
        #expect(page.rows == (opd == "pkm-a" ? 5 : 7))
    }

    @Test func widenedThenNarrowedRulesSendOnlyWhatChanged() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "kotasync-rules-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }

        // Scoped: clinic B's replica sees its two patients and the note.
        var store = try Self.open(dir, Self.scoped)
        try await Self.seed(store)
        var (rows, cursor) = try await Self.pull(store, opd: "pkm-b", after: 0)
        #expect(Set(rows.keys) == ["patients:p4", "patients:p5", "notes:note"])
        #expect(try await Self.pull(store, opd: "pkm-b", after: cursor).rows.isEmpty)
        var aCursor = try await Self.pull(store, opd: "pkm-a", after: 0).cursor

        // The rules widen (no scope): every patient's visibility changed, so each takes a new
        // version and B receives them — clinic A's four for the first time. The note, whose
        // visibility did not change, is not sent again.
        store = try Self.open(dir, "")
        (rows, cursor) = try await Self.pull(store, opd: "pkm-b", after: cursor)
        #expect(Set(rows.keys) == Set((0..<6).map { "patients:p\($0)" }))
        #expect(rows.values.allSatisfy { $0.operation == .upsert })
        let widenedForA = try await Self.pull(store, opd: "pkm-a", after: aCursor)
        #expect(Set(widenedForA.rows.keys) == Set((0..<6).map { "patients:p\($0)" }))
        aCursor = widenedForA.cursor

        // The same rules again: nothing to send.
        store = try Self.open(dir, "")
        #expect(try await Self.pull(store, opd: "pkm-b", after: cursor).rows.isEmpty)

        // Scoped again and the phone hidden: B is sent the removal of A's patients, and its own
        // patients again with the phone blanked.
        store = try Self.open(dir, Self.scoped + "\n      hidden: [phone]")
        (rows, cursor) = try await Self.pull(store, opd: "pkm-b", after: cursor)
        #expect(
            Set(rows.filter { $0.value.operation == .delete }.keys) == [
                "patients:p0", "patients:p1", "patients:p2", "patients:p3",
            ])
        let own = rows.filter { $0.value.operation == .upsert }
        #expect(Set(own.keys) == ["patients:p4", "patients:p5"])
        #expect(own.values.allSatisfy { row in row.columns.contains { $0.column == 2 && $0.value == .null } })
        // A is sent the removal of B's patients and its own again, with the phone blanked.
        let a = try await Self.pull(store, opd: "pkm-a", after: aCursor).rows
        #expect(Set(a.filter { $0.value.operation == .delete }.keys) == ["patients:p4", "patients:p5"])
        #expect(a["patients:p0"]?.columns.first { $0.column == 2 }?.value == .null)
        #expect(a["notes:note"] == nil)

        // The rows stay on the master whatever the rules.
        let all = try await Self.pull(store, opd: "dinkes", after: 0)
        #expect(all.rows.filter { $0.value.operation == .upsert }.count == 7)
    }

    @Test func aRowMovedToAnotherClinicIsRemovedFromTheFirstAndSentToTheSecond() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "kotasync-move-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try Self.open(dir, Self.scoped)
        try await Self.seed(store)
        let a0 = try await Self.pull(store, opd: "pkm-a", after: 0).cursor
        let b0 = try await Self.pull(store, opd: "pkm-b", after: 0).cursor
        // The health office moves p0 from clinic A to clinic B; clinic A may not.
        let version = try await store.pool.read { db in
            try Int64.fetchOne(
                db, sql: "SELECT version FROM _ks_rows WHERE pk = ?",
                arguments: [Data(PrimaryKeyCoding.encode([.text("p0")]))])!
        }
        func move(_ opd: String, _ id: String, to clinic: String) async throws -> PushReply {
            let changeset = Changeset(
                kind: .push, id: UUID(), replicaID: UUID(), firstSequence: 1, lastSequence: 1,
                tables: [store.config.tables[0].changesetTable],
                rows: [
                    Changeset.Row(
                        table: 0, operation: .update, version: UInt64(version),
                        stamp: HLC(milliseconds: 200, counter: 0),
                        primaryKey: [.text(id)], columns: [.init(column: 0, value: .text(clinic))])
                ])
            return try ProtocolJSON.decoder().decode(
                PushReply.self, from: try await store.push(changeset, from: Device(tokenID: "t", opd: opd)).reply)
        }
        let refused = try await move("pkm-a", "p1", to: "pkm-b")
        #expect(refused.rejected?.map(\.code) == ["out_of_scope"])
        #expect(refused.rejected?.first?.action == "restore")
        let allowed = try await move("dinkes", "p0", to: "pkm-b")
        #expect(allowed.rejected == nil)
        let a = try await Self.pull(store, opd: "pkm-a", after: a0).rows
        #expect(a["patients:p0"]?.operation == .delete)
        #expect(a["patients:p1"]?.operation == .upsert, "the refused move comes back as it was")
        let b = try await Self.pull(store, opd: "pkm-b", after: b0).rows
        #expect(Set(b.keys) == ["patients:p0"])
        #expect(b["patients:p0"]?.operation == .upsert)
    }
}
