import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite
import KotaSyncTesting
import PostgresNIO
import Testing

@testable import KotaSyncServer

/// A master of either backend, as the merge tests drive it: pushes, the review queue, and a
/// backend-neutral dump of everything the merge writes.
enum MergeBackend: Sendable {
    case sqlite(SQLiteMasterStore)
    case postgres(PostgresMasterStore)

    func push(_ changeset: Changeset, from device: Device) async throws -> PushOutcome {
        switch self {
        case .sqlite(let store): try await store.push(changeset, from: device)
        case .postgres(let store): try await store.push(changeset, from: device)
        }
    }

    func reply(_ changeset: Changeset, from device: Device) async throws -> PushReply {
        try ProtocolJSON.decoder().decode(PushReply.self, from: try await push(changeset, from: device).reply)
    }

    func reviewConflicts(_ filter: ReviewFilter) async throws -> ConflictList {
        switch self {
        case .sqlite(let store): try await store.reviewConflicts(filter)
        case .postgres(let store): try await store.reviewConflicts(filter)
        }
    }

    func resolveConflict(id: Int64, _ request: ResolveRequest) async throws -> ConflictReport {
        switch self {
        case .sqlite(let store): try await store.resolveConflict(id: id, request, by: "reviewer")
        case .postgres(let store): try await store.resolveConflict(id: id, request, by: "reviewer")
        }
    }

    func conflicts(involving replica: UUID, of device: Device) async throws -> ConflictList {
        switch self {
        case .sqlite(let store): try await store.conflicts(involving: replica, of: device, after: 0, limit: 1000)
        case .postgres(let store): try await store.conflicts(involving: replica, of: device, after: 0, limit: 1000)
        }
    }

    /// Every record of the review queue, times blanked (they are the moment of the merge).
    func allConflicts() async throws -> [ConflictReport] {
        var out: [ConflictReport] = []
        var after: Int64 = 0
        while true {
            let page = try await reviewConflicts(ReviewFilter(after: after, limit: 1000))
            out += page.conflicts.map(MasterDump.timeless)
            guard let next = page.next else { return out }
            after = next
        }
    }

    /// What the merge wrote, read without the merge's own code.
    func dump() async throws -> MasterDump {
        var dump = MasterDump()
        switch self {
        case .sqlite(let store):
            dump = try await store.pool.read { db in
                var dump = MasterDump()
                for table in store.config.tables {
                    let names = (table.primaryKey + table.columns).map { SQL.quote($0.name) }
                    for row in try Row.fetchAll(
                        db, sql: "SELECT \(names.joined(separator: ", ")) FROM \(SQL.quote(table.name))")
                    {
                        dump.tables[table.name, default: []].append(
                            (0..<names.count).map { SQLValue(row[$0] as DatabaseValue) })
                    }
                }
                for row in try Row.fetchAll(
                    db, sql: "SELECT tbl, pk, version, deleted, open_conflicts, clocks, scope, gone_for FROM _ks_rows")
                {
                    dump.heads.append(
                        MasterDump.Head(
                            table: row[0], pk: [UInt8](row[1] as Data), version: row[2], deleted: (row[3] as Int) != 0,
                            openConflicts: row[4], clocks: [UInt8](row[5] as Data),
                            scope: SQLValue(row[6] as DatabaseValue), goneFor: row[7]))
                }
                for row in try Row.fetchAll(
                    db, sql: "SELECT tbl, pk, version, writer, stamp, op, old, clamped FROM _ks_history")
                {
                    dump.history.append(
                        MasterDump.History(
                            table: row[0], pk: [UInt8](row[1] as Data), version: row[2], writer: row[3], stamp: row[4],
                            op: row[5], old: [UInt8](row[6] as Data), clamped: (row[7] as Int) != 0))
                }
                return dump
            }
        case .postgres(let store):
            for table in store.config.tables {
                let definition = try PostgresTableDefinition(table)
                let rows = try await store.client.query(
                    PostgresQuery(unsafeSQL: definition.selectRows), logger: store.logger)
                for try await row in rows {
                    let (key, values) = try definition.decodeRow(row)
                    dump.tables[table.name, default: []].append(key + values)
                }
            }
            let heads = try await store.client.query(
                """
                SELECT tbl, pk, version, deleted, open_conflicts::bigint, clocks, (scope).i, (scope).r, (scope).t, (scope).b,
                    gone_for FROM kotasync.rows
                """, logger: store.logger)
            for try await row in heads {
                let cells = row.makeRandomAccess()
                dump.heads.append(
                    MasterDump.Head(
                        table: try cells[0].decode(String.self),
                        pk: Array(buffer: try cells[1].decode(ByteBuffer.self)),
                        version: try cells[2].decode(Int64.self), deleted: try cells[3].decode(Bool.self),
                        openConflicts: try cells[4].decode(Int64.self),
                        clocks: Array(buffer: try cells[5].decode(ByteBuffer.self)),
                        scope: try PostgresColumnType.value.decode(cells, at: 6),
                        goneFor: try cells[10].decode(String?.self)))
            }
            let history = try await store.client.query(
                "SELECT tbl, pk, version, writer, stamp, op::bigint, old, clamped FROM kotasync.history",
                logger: store.logger)
            for try await row in history {
                let cells = row.makeRandomAccess()
                dump.history.append(
                    MasterDump.History(
                        table: try cells[0].decode(String.self),
                        pk: Array(buffer: try cells[1].decode(ByteBuffer.self)),
                        version: try cells[2].decode(Int64.self), writer: try cells[3].decode(Int64.self),
                        stamp: try cells[4].decode(Int64.self), op: try cells[5].decode(Int64.self),
                        old: Array(buffer: try cells[6].decode(ByteBuffer.self)),
                        clamped: try cells[7].decode(Bool.self)))
            }
        }
        dump.conflicts = try await allConflicts()
        dump.sort()
        return dump
    }
}

/// Everything the merge writes to a master, in a form both backends give alike: the replicated
/// tables' rows, the bookkeeping heads, the history, and the conflict records as the review
/// queue reports them (their times blanked).
struct MasterDump: Equatable, Sendable {
    struct Head: Equatable, Sendable {
        var table: String
        var pk: [UInt8]
        var version: Int64
        var deleted: Bool
        var openConflicts: Int64
        var clocks: [UInt8]
        var scope: SQLValue
        var goneFor: String?
    }

    struct History: Equatable, Sendable {
        var table: String
        var pk: [UInt8]
        var version: Int64
        var writer: Int64
        var stamp: Int64
        var op: Int64
        var old: [UInt8]
        var clamped: Bool
    }

    var tables: [String: [[SQLValue]]] = [:]
    var heads: [Head] = []
    var history: [History] = []
    var conflicts: [ConflictReport] = []

    mutating func sort() {
        for name in tables.keys {
            tables[name]!.sort { PrimaryKeyCoding.encode($0).lexicographicallyPrecedes(PrimaryKeyCoding.encode($1)) }
        }
        heads.sort { ($0.table, $0.version) < ($1.table, $1.version) }
        history.sort { ($0.table, $0.version) < ($1.table, $1.version) }
    }

    /// The versions the master handed out and still shows (heads and history).
    var versions: Set<Int64> { Set(heads.map(\.version)).union(history.map(\.version)) }

    /// The dump without what the master's own changes take from the wall clock: their stamps
    /// in the history, and the heads' clocks (which hold them).
    var withoutMasterStamps: MasterDump {
        var dump = self
        for i in dump.history.indices where dump.history[i].writer == 0 { dump.history[i].stamp = 0 }
        for i in dump.heads.indices { dump.heads[i].clocks = [] }
        return dump
    }

    static func timeless(_ report: ConflictReport) -> ConflictReport {
        var report = report
        report.decidedAt = ""
        report.resolution?.at = ""
        return report
    }
}

/// A replica of an OPD pushing to a master of either backend, with its own sequence numbers.
struct TestReplica: Sendable {
    let device: Device
    let id: UUID
    var sequence: UInt64 = 0

    init(opd: String, id: UUID = UUID()) {
        device = Device(tokenID: "t-\(opd)", opd: opd)
        self.id = id
    }

    /// One row change: the table, the operation, the key, the base version and the columns by name.
    struct Change: Sendable {
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

    /// The next changeset of this replica: `changes` stamped at `stamp` milliseconds.
    mutating func changeset(_ changes: [Change], stamp: UInt64, config: ServerConfig) -> Changeset {
        sequence += 1
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
            kind: .push, id: UUID(), replicaID: id, firstSequence: sequence, lastSequence: sequence, tables: tables,
            rows: rows)
    }
}

/// A config with a table per conflict policy, a UNIQUE column, a child table, and a table
/// every push of the scenarios writes a new row to.
let policyYAML = """
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
        ddl: "CREATE TABLE patients (id TEXT PRIMARY KEY, nik TEXT UNIQUE, name TEXT NOT NULL)"
      - name: visits
        ddl: "CREATE TABLE visits (id TEXT PRIMARY KEY, patient_id TEXT REFERENCES patients(id), note TEXT)"
      - name: marks
        ddl: "CREATE TABLE marks (id TEXT PRIMARY KEY, n INTEGER)"
    """

/// A SQLite master for `config` in a fresh directory.
func sqliteMaster(_ yaml: String) throws -> (SQLiteMasterStore, ServerConfig) {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
        "kotasync-pgmerge-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let config = try ServerConfig.parse(yaml: yaml, baseURL: dir)
    return (try SQLiteMasterStore(path: dir.appendingPathComponent("master.sqlite").path, config: config), config)
}

/// A small deterministic generator (SplitMix64): the same seed, the same scenario.
struct SeededGenerator: RandomNumberGenerator, Sendable {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Random changes over a few keys of every table of ``policyYAML``: conflicting updates under
/// every policy, deletes against updates, UNIQUE collisions, children before their parents.
func randomChanges(_ rng: inout SeededGenerator, count: Int) -> [TestReplica.Change] {
    func text(_ prefix: String) -> SQLValue { .text("\(prefix)\(Int.random(in: 0..<3, using: &rng))") }
    func key() -> String { "k\(Int.random(in: 0..<3, using: &rng))" }
    func base() -> UInt64 { UInt64.random(in: 0..<6, using: &rng) }
    return (0..<count).map { _ in
        switch Int.random(in: 0..<10, using: &rng) {
        case 0, 1:
            var values: [String: SQLValue] = [:]
            for column in ["lww_col", "server_col", "auth_col", "manual_col"] where Bool.random(using: &rng) {
                values[column] = text(column)
            }
            if Bool.random(using: &rng) { values["qty"] = .integer(Int64.random(in: 0..<20, using: &rng)) }
            return .upsert("items", key(), values, base: base())
        case 2, 3:
            let table = ["uw", "dw", "mw"].randomElement(using: &rng)!
            return Int.random(in: 0..<3, using: &rng) == 0
                ? .delete(table, key(), base: base()) : .upsert(table, key(), ["v": text("v")], base: base())
        case 4, 5:
            return .upsert(
                "patients", "p\(Int.random(in: 0..<4, using: &rng))", ["nik": text("nik"), "name": text("n")])
        case 6:
            return .delete("patients", "p\(Int.random(in: 0..<4, using: &rng))", base: base())
        default:
            return .upsert(
                "visits", key(), ["patient_id": .text("p\(Int.random(in: 0..<5, using: &rng))"), "note": text("note")],
                base: base())
        }
    }
}
