import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite
import KotaSyncTesting
import Testing

@testable import KotaSyncServer

/// A master with one table per policy, and devices that push to it: the real store, on disk.
struct PolicyBench {
    static let yaml = """
        name: Policies
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
          - name: items
            policy: lww
            columns:
              server_col: server-wins
              auth_col: "authority: dinkes"
              manual_col: manual
              qty: additive
            ddl: "CREATE TABLE items (id TEXT PRIMARY KEY, lww_col TEXT, server_col TEXT, auth_col TEXT, manual_col TEXT, qty INTEGER)"
          - name: uw
            delete: update-wins
            ddl: "CREATE TABLE uw (id TEXT PRIMARY KEY, v TEXT)"
          - name: dw
            delete: delete-wins
            ddl: "CREATE TABLE dw (id TEXT PRIMARY KEY, v TEXT)"
          - name: mw
            delete: manual
            ddl: "CREATE TABLE mw (id TEXT PRIMARY KEY, v TEXT)"
          - name: patients
            ddl: "CREATE TABLE patients (id TEXT PRIMARY KEY, nik TEXT UNIQUE, name TEXT)"
          - name: visits
            ddl: "CREATE TABLE visits (id TEXT PRIMARY KEY, patient_id TEXT REFERENCES patients(id), note TEXT)"
        """

    /// The master, through its roles only, so one test body runs on either backend.
    let store: any MasterStore
    let config: ServerConfig

    /// A bench on a new SQLite master.
    init(_ name: String = #function) throws {
        let dir = try Self.directory(name)
        config = try ServerConfig.parse(yaml: Self.yaml, baseURL: dir)
        store = try SQLiteMasterStore(path: dir.appendingPathComponent("master.sqlite").path, config: config)
    }

    private init(store: any MasterStore, config: ServerConfig) {
        self.store = store
        self.config = config
    }

    /// Runs `body` with a bench on a new master on `backend`, closed afterwards.
    static func with<T: Sendable>(
        _ backend: MasterBackend, _ name: String = #function, _ body: (PolicyBench) async throws -> T
    ) async throws -> T {
        let dir = try directory(name)
        let config = try ServerConfig.parse(yaml: yaml, baseURL: dir)
        return try await withMaster(backend, config: config, directory: dir) { master in
            try await body(PolicyBench(store: master.store, config: config))
        }
    }

    private static func directory(_ name: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "kotasync-policy-\(name.filter { $0.isLetter }.prefix(40))-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// One row change: the table, the operation, the key, the base version and the columns by name.
    struct Change {
        var table: String
        var operation: Changeset.Operation
        var id: String
        var base: UInt64
        var values: [String: SQLValue]

        static func upsert(_ table: String, _ id: String, _ values: [String: SQLValue], base: UInt64 = 0) -> Change {
            Change(table: table, operation: .upsert, id: id, base: base, values: values)
        }
        static func update(_ table: String, _ id: String, _ values: [String: SQLValue], base: UInt64) -> Change {
            Change(table: table, operation: .update, id: id, base: base, values: values)
        }
        static func delete(_ table: String, _ id: String, base: UInt64) -> Change {
            Change(table: table, operation: .delete, id: id, base: base, values: [:])
        }
    }

    /// A replica of an OPD, with its own sequence numbers; stamps are given per push.
    struct Replica {
        let device: Device
        let id: UUID
        var sequence: UInt64 = 0

        init(opd: String, id: UUID = UUID()) {
            device = Device(tokenID: "t-\(opd)", opd: opd)
            self.id = id
        }

        func changeset(_ changes: [Change], stamp: UInt64, config: ServerConfig, sequence: UInt64) -> Changeset {
            let names = changes.map(\.table).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
            let tables = names.map { config.table(named: $0)!.changesetTable }
            let rows = changes.enumerated().map { i, change in
                let table = config.table(named: change.table)!
                return Changeset.Row(
                    table: names.firstIndex(of: change.table)!, operation: change.operation, version: change.base,
                    stamp: HLC(milliseconds: stamp, counter: UInt16(i)), primaryKey: [.text(change.id)],
                    columns: change.values.keys.sorted().map { name in
                        Changeset.ColumnValue(
                            column: table.columns.firstIndex { $0.name == name }!, value: change.values[name]!)
                    })
            }
            return Changeset(
                kind: .push, id: UUID(), replicaID: id, firstSequence: sequence, lastSequence: sequence,
                tables: tables, rows: rows)
        }

        /// Pushes `changes` stamped at `stamp` milliseconds (a small number: long ago).
        @discardableResult
        mutating func push(_ bench: PolicyBench, _ changes: [Change], stamp: UInt64) async throws -> PushReply {
            sequence += 1
            let outcome = try await bench.store.push(
                changeset(changes, stamp: stamp, config: bench.config, sequence: sequence), from: device)
            return try ProtocolJSON.decoder().decode(PushReply.self, from: outcome.reply)
        }
    }

    /// The row's values by column name, nil if the master does not have it (the data browser's
    /// reading, which both backends give).
    func row(_ table: String, _ id: String) async throws -> [String: SQLValue]? {
        guard let values = try await store.browseRow(table: table, key: [.text(id)]),
            let schema = config.table(named: table)
        else { return nil }
        let names = (schema.primaryKey + schema.columns).map(\.name)
        return Dictionary(uniqueKeysWithValues: zip(names, values))
    }

    func value(_ table: String, _ id: String, _ column: String) async throws -> SQLValue? {
        try await row(table, id)?[column]
    }

    /// The version of the row's latest change (its history's newest entry), 0 if it has none.
    func version(_ table: String, _ id: String) async throws -> UInt64 {
        try await store.history(table: table, key: [.text(id)]).map(\.version).max() ?? 0
    }

    func records(status: String? = nil) async throws -> [ConflictReport] {
        try await store.reviewConflicts(ReviewFilter(status: status, limit: 1000)).conflicts
    }
}

/// Every column policy and every delete/update pairing, through the real store, in both arrival
/// orders where the policy promises order independence.
@Suite("Conflict policies")
struct ConflictPolicyTests {
    typealias Change = PolicyBench.Change

    /// Seeds row `id` of `table` through a first replica and returns its version.
    static func seed(_ bench: PolicyBench, _ table: String, _ id: String, _ values: [String: SQLValue]) async throws
        -> UInt64
    {
        var seeder = PolicyBench.Replica(opd: "pkm-a")
        try await seeder.push(bench, [.upsert(table, id, values)], stamp: 100)
        return try await bench.version(table, id)
    }

    struct ColumnCase: CustomTestStringConvertible, Sendable {
        var column: String
        /// The OPD and stamp of the two concurrent writers.
        var first: (opd: String, stamp: UInt64)
        var second: (opd: String, stamp: UInt64)
        /// Which value the master must end with, in either arrival order ("first" / "second").
        var winner: String
        var policy: String
        var testDescription: String { "\(column): \(first.opd)@\(first.stamp) vs \(second.opd)@\(second.stamp)" }
    }

    static let columnCases: [ColumnCase] = [
        ColumnCase(column: "lww_col", first: ("pkm-a", 300), second: ("pkm-b", 200), winner: "first", policy: "lww"),
        ColumnCase(column: "lww_col", first: ("pkm-a", 200), second: ("pkm-b", 300), winner: "second", policy: "lww"),
        // The authority's edit wins even with the earlier stamp ...
        ColumnCase(
            column: "auth_col", first: ("dinkes", 200), second: ("pkm-b", 300), winner: "first",
            policy: "authority:dinkes"),
        // ... and between two others the stamps decide.
        ColumnCase(
            column: "auth_col", first: ("pkm-a", 200), second: ("pkm-b", 300), winner: "second",
            policy: "authority:dinkes"),
        // Between two OPDs, server-wins is lww (the Command Center's side is tested below).
        ColumnCase(
            column: "server_col", first: ("pkm-a", 300), second: ("pkm-b", 200), winner: "first",
            policy: "server-wins"),
    ]

    @Test(arguments: columnCases, [false, true])
    func concurrentColumnWrites(_ c: ColumnCase, secondArrivesFirst: Bool) async throws {
        let bench = try PolicyBench()
        let base = try await Self.seed(bench, "items", "i1", [c.column: .text("base")])
        var first = PolicyBench.Replica(opd: c.first.opd)
        var second = PolicyBench.Replica(opd: c.second.opd)
        let a = Change.update("items", "i1", [c.column: .text("first")], base: base)
        let b = Change.update("items", "i1", [c.column: .text("second")], base: base)
        if secondArrivesFirst {
            try await second.push(bench, [b], stamp: c.second.stamp)
            try await first.push(bench, [a], stamp: c.first.stamp)
        } else {
            try await first.push(bench, [a], stamp: c.first.stamp)
            try await second.push(bench, [b], stamp: c.second.stamp)
        }
        #expect(try await bench.value("items", "i1", c.column) == .text(c.winner))
        let records = try await bench.records()
        #expect(records.count == 1)
        let record = try #require(records.first)
        #expect(record.status == "auto")
        #expect(record.policy == c.policy)
        #expect(record.column == c.column)
        #expect(record.winner?.value == .text(c.winner))
        #expect(record.loser?.value == .text(c.winner == "first" ? "second" : "first"), "the losing value stays")
        #expect(record.base == .text("base"))
    }

    /// The merge builds the reports of records it inserts from what it wrote; they must be what
    /// the review API reads back from the master, for every kind of record and value.
    @Test func aPushReportsEachNewRecordExactlyAsTheMasterStoresIt() async throws {
        let bench = try PolicyBench()
        let base = try await Self.seed(
            bench, "items", "i1", ["lww_col": .text("base"), "manual_col": .text("m"), "qty": .integer(10)])
        let uw = try await Self.seed(bench, "uw", "u1", ["v": .text("kept")])
        let dw = try await Self.seed(bench, "dw", "d1", ["v": .text("gone")])
        var a = PolicyBench.Replica(opd: "pkm-a")
        var b = PolicyBench.Replica(opd: "pkm-b")
        try await a.push(
            bench,
            [
                .update(
                    "items", "i1", ["lww_col": .text(""), "manual_col": .text("A"), "qty": .integer(13)], base: base),
                .update("uw", "u1", ["v": .text("edit")], base: uw), .delete("dw", "d1", base: dw),
            ], stamp: 300)
        let reply = try await b.push(
            bench,
            [
                .update("items", "i1", ["lww_col": .text("B"), "manual_col": .null, "qty": .integer(8)], base: base),
                .delete("uw", "u1", base: uw), .update("dw", "d1", ["v": .text("lost")], base: dw),
            ], stamp: 200)
        #expect(Set(reply.conflicts.map(\.kind)) == [.updateUpdate, .deleteUpdate])
        #expect(reply.conflicts.contains { $0.policy == "additive" && $0.reason != nil })
        #expect(reply.conflicts.contains { $0.held != nil }, "delete-wins keeps the lost write")
        for reported in reply.conflicts {
            #expect(try await bench.store.reviewConflict(id: reported.id) == reported)
        }
    }

    @Test func serverWinsKeepsTheCommandCentersDecisionAgainstALaterStampedOPDEdit() async throws {
        let bench = try PolicyBench()
        let base = try await Self.seed(bench, "items", "i1", ["server_col": .text("base")])
        var a = PolicyBench.Replica(opd: "pkm-a")
        var b = PolicyBench.Replica(opd: "pkm-b")
        try await a.push(bench, [.update("items", "i1", ["server_col": .text("A")], base: base)], stamp: 200)
        try await b.push(bench, [.update("items", "i1", ["server_col": .text("B")], base: base)], stamp: 300)
        let record = try #require(try await bench.records().first)
        // A reviewer takes A's value: a change by the master itself.
        let resolved = try await bench.store.resolveConflict(
            id: record.id, ResolveRequest(take: .remote, note: "A is right"), by: "reviewer")
        #expect(resolved.status == "resolved")
        #expect(resolved.resolution?.by == "reviewer")
        #expect(try await bench.value("items", "i1", "server_col") == .text("A"))
        // B, offline, edits again without seeing the decision, with a stamp far in the future of it.
        try await b.push(
            bench, [.update("items", "i1", ["server_col": .text("B2")], base: base)],
            stamp: Timestamp.milliseconds(Date()) + 60_000)
        #expect(try await bench.value("items", "i1", "server_col") == .text("A"), "the Command Center wins")
        let standing = try await bench.records(status: "auto")
        #expect(standing.count == 1)
        #expect(standing.first?.loser?.value == .text("B2"))
        #expect(standing.first?.winner?.opd == "master")
    }

    @Test(arguments: [false, true])
    func manualKeepsTheMastersValueAndQueuesTheIncomingOne(reversed: Bool) async throws {
        let bench = try PolicyBench()
        let base = try await Self.seed(bench, "items", "i1", ["manual_col": .text("base"), "lww_col": .text("x")])
        var a = PolicyBench.Replica(opd: "pkm-a")
        var b = PolicyBench.Replica(opd: "pkm-b")
        let changeA = Change.update("items", "i1", ["manual_col": .text("A")], base: base)
        // B's changeset also changes another row: the rest of the changeset applies.
        let changesB: [Change] = [
            .update("items", "i1", ["manual_col": .text("B"), "lww_col": .text("y")], base: base),
            .upsert("items", "i2", ["lww_col": .text("new")]),
        ]
        if reversed {
            try await b.push(bench, changesB, stamp: 300)
            try await a.push(bench, [changeA], stamp: 200)
        } else {
            try await a.push(bench, [changeA], stamp: 200)
            try await b.push(bench, changesB, stamp: 300)
        }
        let first = reversed ? "B" : "A"
        let second = reversed ? "A" : "B"
        #expect(try await bench.value("items", "i1", "manual_col") == .text(first), "the master keeps what it held")
        #expect(try await bench.value("items", "i1", "lww_col") == .text("y"))
        #expect(try await bench.value("items", "i2", "lww_col") == .text("new"))
        let waiting = try await bench.records(status: "open")
        #expect(waiting.count == 1)
        let record = try #require(waiting.first)
        #expect(record.policy == "manual")
        #expect(record.loser?.value == .text(second))
        // A reviewer takes the waiting value; it becomes the master's, as a new version.
        let before = try await bench.version("items", "i1")
        _ = try await bench.store.resolveConflict(id: record.id, ResolveRequest(take: .remote), by: "rev")
        #expect(try await bench.value("items", "i1", "manual_col") == .text(second))
        #expect(try await bench.version("items", "i1") > before)
        #expect(try await bench.records(status: "open").isEmpty)
        await #expect(throws: SyncError.self) {
            _ = try await bench.store.resolveConflict(id: record.id, ResolveRequest(take: .local), by: "rev")
        }
    }

    @Test(arguments: [false, true])
    func additiveCountsBothChanges(reversed: Bool) async throws {
        let bench = try PolicyBench()
        let base = try await Self.seed(bench, "items", "i1", ["qty": .integer(10)])
        var a = PolicyBench.Replica(opd: "pkm-a")
        var b = PolicyBench.Replica(opd: "pkm-b")
        if reversed {
            try await b.push(bench, [.update("items", "i1", ["qty": .integer(8)], base: base)], stamp: 300)
            try await a.push(bench, [.update("items", "i1", ["qty": .integer(13)], base: base)], stamp: 200)
        } else {
            try await a.push(bench, [.update("items", "i1", ["qty": .integer(13)], base: base)], stamp: 200)
            try await b.push(bench, [.update("items", "i1", ["qty": .integer(8)], base: base)], stamp: 300)
        }
        #expect(try await bench.value("items", "i1", "qty") == .integer(11), "10 + 3 − 2")
        // A changes again without pulling: its delta counts from its own last value (13 → 15: +2).
        try await a.push(bench, [.update("items", "i1", ["qty": .integer(15)], base: base)], stamp: 400)
        #expect(try await bench.value("items", "i1", "qty") == .integer(13))
        // A replica that pulled the current state sets a plain new value.
        let now = try await bench.version("items", "i1")
        var c = PolicyBench.Replica(opd: "pkm-a")
        try await c.push(bench, [.update("items", "i1", ["qty": .integer(20)], base: now)], stamp: 500)
        #expect(try await bench.value("items", "i1", "qty") == .integer(20))
        let records = try await bench.records()
        #expect(!records.isEmpty && records.allSatisfy { $0.policy == "additive" && $0.status == "auto" })
    }

    @Test func additiveArithmetic() {
        #expect(Additive.sum(.integer(10), adding: .integer(13), since: .integer(10)) == .integer(13))
        #expect(Additive.sum(.integer(11), adding: .integer(8), since: .integer(10)) == .integer(9))
        #expect(Additive.sum(.null, adding: .integer(5), since: .null) == .integer(5))
        #expect(Additive.sum(.real(1.5), adding: .integer(3), since: .integer(1)) == .real(3.5))
        #expect(
            Additive.sum(.integer(Int64.max), adding: .integer(2), since: .integer(1)) == .real(Double(Int64.max) + 1))
        #expect(
            Additive.sum(.integer(4), adding: .text("x"), since: .integer(1)) == .text("x"),
            "non-numbers are plain writes")
        #expect(Additive.sum(.integer(4), adding: .null, since: .integer(1)) == .null)
    }

    struct DeleteCase: CustomTestStringConvertible, Sendable {
        var table: String
        var policy: String
        var live: Bool
        /// The status of the record, and whether its loser is the delete.
        var status: String
        var loserIsDelete: Bool
        var testDescription: String { "\(policy)" }
    }

    static let deleteCases: [DeleteCase] = [
        DeleteCase(table: "uw", policy: "update-wins", live: true, status: "auto", loserIsDelete: true),
        DeleteCase(table: "dw", policy: "delete-wins", live: false, status: "auto", loserIsDelete: false),
        DeleteCase(table: "mw", policy: "manual", live: true, status: "open", loserIsDelete: true),
    ]

    @Test(arguments: deleteCases, [false, true])
    func deleteAgainstConcurrentUpdate(_ c: DeleteCase, deleteFirst: Bool) async throws {
        let bench = try PolicyBench()
        let base = try await Self.seed(bench, c.table, "r1", ["v": .text("base")])
        var updater = PolicyBench.Replica(opd: "pkm-a")
        var deleter = PolicyBench.Replica(opd: "pkm-b")
        // The delete has the later stamp: stamps must not decide delete against update.
        if deleteFirst {
            try await deleter.push(bench, [.delete(c.table, "r1", base: base)], stamp: 400)
            try await updater.push(bench, [.update(c.table, "r1", ["v": .text("edited")], base: base)], stamp: 300)
        } else {
            try await updater.push(bench, [.update(c.table, "r1", ["v": .text("edited")], base: base)], stamp: 300)
            try await deleter.push(bench, [.delete(c.table, "r1", base: base)], stamp: 400)
        }
        let row = try await bench.row(c.table, "r1")
        #expect((row != nil) == c.live)
        if c.live { #expect(row?["v"] == .text("edited")) }
        let records = try await bench.records()
        #expect(records.count == 1)
        let record = try #require(records.first)
        #expect(record.kind == .deleteUpdate)
        #expect(record.policy == c.policy)
        #expect(record.status == c.status)
        #expect(record.loser?.opd == (c.loserIsDelete ? "pkm-b" : "pkm-a"))

        // The reviewer reverses it: the losing side's action happens.
        _ = try await bench.store.resolveConflict(id: record.id, ResolveRequest(take: .remote), by: "rev")
        let after = try await bench.row(c.table, "r1")
        #expect((after != nil) == !c.live, "reversed")
        if !c.live { #expect(after?["v"] == .text("edited"), "the update's values come back from the history") }
        #expect(try await bench.records(status: c.status).isEmpty)
    }

    /// A pull after a reviewer's decision carries the decided row.
    @Test func aDecisionFlowsToReplicasOnTheirNextPull() async throws {
        let bench = try PolicyBench()
        let base = try await Self.seed(bench, "items", "i1", ["lww_col": .text("base")])
        var a = PolicyBench.Replica(opd: "pkm-a")
        var b = PolicyBench.Replica(opd: "pkm-b")
        try await a.push(bench, [.update("items", "i1", ["lww_col": .text("A")], base: base)], stamp: 300)
        try await b.push(bench, [.update("items", "i1", ["lww_col": .text("B")], base: base)], stamp: 200)
        let cursor = try await bench.version("items", "i1")
        let record = try #require(try await bench.records().first)
        _ = try await bench.store.resolveConflict(
            id: record.id, ResolveRequest(take: .merged, set: ["lww_col": .text("A+B")], note: "both"), by: "rev")
        let page = try await bench.store.pull(after: cursor, limit: 100, opd: nil)
        let decoded = try ChangesetCodec.decode(page.body)
        #expect(decoded.rows.count == 1)
        let column = decoded.tables[0].columns.firstIndex(of: "lww_col")!
        #expect(decoded.rows.first?.columns.first { $0.column == column }?.value == .text("A+B"))
        let resolved = try await bench.store.reviewConflict(id: record.id)
        #expect(resolved.resolution?.values?["lww_col"] == .text("A+B"))
        #expect(resolved.resolution?.note == "both")
        #expect(resolved.loser?.value == .text("B"), "the record keeps both sides")
        #expect(resolved.winner?.value == .text("A"))
    }
}

/// Rows that break a UNIQUE constraint, rows whose parent is missing, and what reviewers do
/// with them.
@Suite("Quarantine and holds")
struct QuarantineTests {
    typealias Change = PolicyBench.Change

    /// Two clinics register the same NIK offline, each with a visit for "their" patient.
    static func sameNIK(_ bench: PolicyBench) async throws -> (PolicyBench.Replica, PolicyBench.Replica, PushReply) {
        var a = PolicyBench.Replica(opd: "pkm-a")
        var b = PolicyBench.Replica(opd: "pkm-b")
        try await a.push(
            bench,
            [
                .upsert("patients", "PA", ["nik": .text("1275000000000001"), "name": .text("Siti")]),
                .upsert("visits", "VA", ["patient_id": .text("PA"), "note": .text("demam")]),
            ], stamp: 200)
        let reply = try await b.push(
            bench,
            [
                .upsert("patients", "PB", ["nik": .text("1275000000000001"), "name": .text("Siti Aminah")]),
                .upsert("visits", "VB", ["patient_id": .text("PB"), "note": .text("batuk")]),
            ], stamp: 300)
        return (a, b, reply)
    }

    @Test func aDuplicateNIKIsQuarantinedAndItsVisitHeldWithoutBlockingTheRest() async throws {
        let bench = try PolicyBench()
        var (_, b, reply) = try await Self.sameNIK(bench)
        #expect(reply.applied == 0)
        let quarantined = try #require(reply.conflicts.first { $0.kind == .unique })
        #expect(quarantined.status == "open")
        #expect(quarantined.related == RowReference(table: "patients", primaryKey: [.text("PA")]))
        #expect(quarantined.held?.values["name"] == .text("Siti Aminah"), "not applied, not lost")
        #expect(quarantined.column == "nik")
        #expect(quarantined.winner?.opd == "pkm-a")
        let held = try #require(reply.conflicts.first { $0.kind == .foreignKey })
        #expect(held.status == "held")
        #expect(held.related == RowReference(table: "patients", primaryKey: [.text("PB")]))
        #expect(try await bench.row("patients", "PB") == nil)
        #expect(try await bench.row("visits", "VB") == nil)
        // A later edit of the quarantined row queues behind it; other rows still apply.
        let later = try await b.push(
            bench,
            [
                .update("patients", "PB", ["name": .text("Siti Aminah Br Ginting")], base: 0),
                .upsert("patients", "PC", ["nik": .text("1275000000000002"), "name": .text("Rina")]),
            ], stamp: 400)
        #expect(later.applied == 1)
        #expect(later.conflicts.map(\.kind) == [.queued])
        #expect(try await bench.row("patients", "PC") != nil)
    }

    @Test func mergingTheTwoRecordsRepointsTheVisitsAndDropsTheDuplicateEverywhere() async throws {
        let bench = try PolicyBench()
        var (_, b, reply) = try await Self.sameNIK(bench)
        try await b.push(bench, [.update("patients", "PB", ["name": .text("Siti A.")], base: 0)], stamp: 400)
        let record = try #require(reply.conflicts.first { $0.kind == .unique })
        let cursor = try await bench.store.pull(after: 0, limit: 1000, opd: nil).nextCursor
        let resolved = try await bench.store.resolveConflict(
            id: record.id, ResolveRequest(take: .merged, set: ["name": .text("Siti Aminah")], note: "same person"),
            by: "rev")
        #expect(resolved.status == "resolved")
        #expect(try await bench.row("patients", "PA")?["name"] == .text("Siti Aminah"))
        #expect(try await bench.row("patients", "PB") == nil)
        #expect(try await bench.row("visits", "VB")?["patient_id"] == .text("PA"), "re-pointed to the survivor")
        #expect(try await bench.row("visits", "VA")?["patient_id"] == .text("PA"))
        // Replicas learn it on their next pull: the survivor, the re-pointed visit, and PB's removal.
        let page = try ChangesetCodec.decode(try await bench.store.pull(after: cursor, limit: 1000, opd: nil).body)
        let byKey = Dictionary(
            page.rows.map { row in
                guard case .text(let id) = row.primaryKey.first else { return ("?", row) }
                return (page.tables[row.table].name + ":" + id, row)
            },
            uniquingKeysWith: { $1 })
        #expect(byKey["patients:PB"]?.operation == .delete)
        #expect(byKey["visits:VB"]?.operation == .upsert)
        #expect(byKey["patients:PA"]?.operation == .upsert)
        let vb = try #require(byKey["visits:VB"])
        let pb = try #require(byKey["patients:PB"])
        #expect(vb.version < pb.version, "the visit moves before its old patient goes")
        // Nothing is left waiting; the queued edit is closed with the merge, and stays readable.
        #expect(try await bench.records(status: "held").isEmpty)
        #expect(try await bench.records(status: "open").isEmpty)
        let queued = try #require(try await bench.records().first { $0.kind == .queued })
        #expect(queued.status == "resolved")
        #expect(queued.held?.values["name"] == .text("Siti A."))
        // The history keeps both originals: PB's values, replaced by its removal, and PA's
        // name before the merge.
        let pbHistory = try await bench.store.history(table: "patients", key: [.text("PB")])
        #expect(pbHistory.first?.operation == "delete")
        #expect(pbHistory.first?.opd == "master")
        #expect(pbHistory.first?.replaced["name"] == .text("Siti Aminah"))
        #expect(pbHistory.first?.values == nil)
        let pa = try await bench.store.history(table: "patients", key: [.text("PA")])
        #expect(pa.map(\.opd) == ["master", "pkm-a"])
        #expect(pa.first?.replaced["name"] == .text("Siti"))
        #expect(pa.last?.values?["name"] == .text("Siti"))
        #expect(pa.first?.values?["name"] == .text("Siti Aminah"))
    }

    @Test func keepingBothAfterCorrectingTheNIKAppliesTheRowAndReleasesItsVisit() async throws {
        let bench = try PolicyBench()
        let (_, _, reply) = try await Self.sameNIK(bench)
        let record = try #require(reply.conflicts.first { $0.kind == .unique })
        await #expect(throws: SyncError.self, "still the same NIK") {
            _ = try await bench.store.resolveConflict(id: record.id, ResolveRequest(take: .remote), by: "rev")
        }
        #expect(try await bench.records(status: "open").count == 1, "a refused decision changes nothing")
        _ = try await bench.store.resolveConflict(
            id: record.id, ResolveRequest(take: .remote, set: ["nik": .text("1275000000000009")]), by: "rev")
        #expect(try await bench.row("patients", "PB")?["nik"] == .text("1275000000000009"))
        #expect(try await bench.row("visits", "VB")?["patient_id"] == .text("PB"))
        #expect(try await bench.records(status: "held").isEmpty)
    }

    @Test func rejectingTheIncomingRowSendsItsVisitToTheQueue() async throws {
        let bench = try PolicyBench()
        let (_, _, reply) = try await Self.sameNIK(bench)
        let record = try #require(reply.conflicts.first { $0.kind == .unique })
        _ = try await bench.store.resolveConflict(id: record.id, ResolveRequest(take: .local), by: "rev")
        #expect(try await bench.row("patients", "PB") == nil)
        let orphan = try #require(try await bench.records(status: "open").first)
        #expect(orphan.kind == .foreignKey)
        // The reviewer points the visit at the surviving patient.
        _ = try await bench.store.resolveConflict(
            id: orphan.id, ResolveRequest(take: .remote, set: ["patient_id": .text("PA")]), by: "rev")
        #expect(try await bench.row("visits", "VB")?["patient_id"] == .text("PA"))
    }

    @Test func aChildBeforeItsParentInOneChangesetIsHeldThenMerged() async throws {
        let bench = try PolicyBench()
        var a = PolicyBench.Replica(opd: "pkm-a")
        let reply = try await a.push(
            bench,
            [
                .upsert("visits", "V1", ["patient_id": .text("P1"), "note": .text("x")]),
                .upsert("patients", "P1", ["nik": .text("1"), "name": .text("Budi")]),
            ], stamp: 200)
        #expect(try await bench.row("visits", "V1") != nil)
        #expect(reply.conflicts.map(\.status) == ["held"])
        let record = try await bench.store.reviewConflict(id: reply.conflicts[0].id)
        #expect(record.status == "resolved")
        #expect(record.resolution?.by == "kotasync")
    }

    @Test func aVisitForADeletedPatientGoesToTheQueue() async throws {
        let bench = try PolicyBench()
        var a = PolicyBench.Replica(opd: "pkm-a")
        try await a.push(bench, [.upsert("patients", "P1", ["nik": .text("1"), "name": .text("Budi")])], stamp: 200)
        let v = try await bench.version("patients", "P1")
        try await a.push(bench, [.delete("patients", "P1", base: v)], stamp: 300)
        var b = PolicyBench.Replica(opd: "pkm-b")
        let reply = try await b.push(
            bench, [.upsert("visits", "V1", ["patient_id": .text("P1"), "note": .text("x")])], stamp: 250)
        #expect(reply.conflicts.map(\.status) == ["open"])
        #expect(reply.conflicts.first?.kind == .foreignKey)
        #expect(try await bench.row("visits", "V1") == nil)
    }
}
