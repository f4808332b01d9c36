import Foundation
import GRDB
import KotaSyncSQLite
import KotaSyncTesting
import PostgresNIO
import Testing

@testable import KotaSyncCore
@testable import KotaSyncServer

// MARK: - An in-memory master

/// The master as `SQLiteMasterStore` keeps it, in memory: `_ks_rows` (version, open-record count,
/// encoded clocks), the replicated table itself, `_ks_history` and `_ks_conflicts`.
///
/// ``push(_:)`` mirrors `SQLiteMasterStore.push` / `RowMerger.merge` step by step: the same
/// validation, writer registration, clock decoding, open records read back as
/// ``ConflictRecord``s, `MergeEngine.decide` call, values taken from the incoming change or from a
/// returning loser's record, values restored from the last delete on a resurrection, effects on the
/// table and history, and `RowMerger.reconcile` (new records inserted with their values, changed
/// winners re-pointed with the new master value, missing ones superseded). It is fast enough to
/// merge thousands of scenarios in every order; ``MergeOrderIndependenceTests`` checks that it
/// gives what the real store gives.
struct ModelMaster {
    struct Meta: Equatable {
        var version: UInt64
        var openConflicts: Int
        var clocks: [UInt8]
    }

    struct HistoryEntry {
        var op: UInt8
        var old: [(Int, SQLValue)]
    }

    /// A row of `_ks_conflicts`.
    struct Record {
        var id: Int64
        var key: Int64
        var column: Int?
        var kind: ConflictReport.Kind
        var winnerWriter: Int64
        var winnerStamp: HLC
        var winnerValue: SQLValue?
        var loserWriter: Int64
        var loserStamp: HLC
        var loserVersion: UInt64
        var loserInsert: Bool
        var loserValue: SQLValue?
        var status: String

        /// Still a head that lost (`auto` or `open`), as opposed to superseded.
        var isStanding: Bool { status == "auto" || status == "open" }
    }

    let schema: TableSchema
    var meta: [Int64: Meta] = [:]
    var table: [Int64: [SQLValue]] = [:]
    var history: [Int64: [UInt64: HistoryEntry]] = [:]
    var records: [Record] = []
    var writers: [Int64: Writer] = [0: .master]
    var numbers: [UUID: Int64] = [:]
    /// Broken invariants of the store's own bookkeeping, found after each push.
    var problems: [String] = []

    init(schema: TableSchema) { self.schema = schema }

    var columnCount: Int { schema.columns.count }

    mutating func push(_ changeset: Changeset) throws {
        let validated = try ChangesetValidator.validate(changeset, against: [schema])
        let writer: Writer
        if let n = numbers[changeset.replicaID] {
            writer = writers[n]!
        } else {
            // Numbers are handed out in arrival order, like `_ks_replicas.number`.
            let n = Int64(writers.count)
            writer = Writer(number: n, id: changeset.replicaID)
            writers[n] = writer
            numbers[changeset.replicaID] = n
        }
        // RowMerger.start: the master's latest version.
        var version = meta.values.map(\.version).max() ?? 0
        for row in changeset.rows {
            try merge(row, validated, writer: writer, version: &version)
        }
        checkInvariants()
    }

    /// `RowMerger.StoredRecord`: an open record as the store reads it back.
    private struct Stored {
        var index: Int
        var record: ConflictRecord
        var loserValue: SQLValue?
    }

    /// `RowMerger.openRecords`: the winner's version is not stored and reads as 0.
    private func openRecords(_ key: Int64) -> [RecordKey: Stored] {
        var out: [RecordKey: Stored] = [:]
        for (i, r) in records.enumerated() where r.key == key && r.isStanding {
            let loser = Head(
                writer: writers[r.loserWriter]!, version: r.loserVersion, stamp: r.loserStamp, isInsert: r.loserInsert,
                isDelete: r.kind == .deleteUpdate && r.column == nil)
            let winner = Head(writer: writers[r.winnerWriter]!, version: 0, stamp: r.winnerStamp)
            let record = ConflictRecord(column: r.column, kind: r.kind, loser: loser, winner: winner)
            out[record.key] = Stored(index: i, record: record, loserValue: r.loserValue)
        }
        return out
    }

    private mutating func merge(
        _ row: Changeset.Row, _ validated: ValidatedChangeset, writer: Writer, version: inout UInt64
    ) throws {
        guard case .text(let text) = row.primaryKey.first, let key = Int64(text) else {
            fatalError("the model's keys are numbers as text")
        }
        let (stamp, _) = ClockSkewPolicy().admit(row.stamp, serverMilliseconds: 1 << 40)
        let (columns, incoming, bases) = validated.schemaColumns(of: row)

        let writers = self.writers
        let stored = meta[key]
        let current = try stored.map { m throws(SyncError) in
            try RowClocksCoding.decode(m.clocks, version: m.version, columnCount: columnCount) { writers[$0]! }
        }
        let existing = (stored?.openConflicts ?? 0) > 0 ? openRecords(key) : [:]

        let change = IncomingChange(
            operation: row.operation, writer: writer, stamp: stamp, rowBase: row.version, columns: columns,
            columnBases: bases)
        let decision = MergeEngine.decide(
            current: current, losers: existing.values.map(\.record).filter { $0.column != nil }, change: change,
            columnCount: columnCount, newVersion: version + 1)
        guard let clocks = decision.clocks else { return }
        version += 1

        let old = current == nil ? nil : table[key]
        var values = old ?? Array(repeating: SQLValue.null, count: columnCount)
        if decision.effect == .resurrect, let before = valuesBeforeDeletion(key) { values = before }
        let prior = current == nil ? nil : values
        var replaced = try decision.apply(to: &values, incoming: incoming) { existing[$0]?.loserValue }

        switch decision.effect {
        case .none:
            break
        case .create, .update, .resurrect:
            table[key] = values
        case .delete:
            replaced = old.map { Array($0.enumerated()) } ?? []
            table[key] = nil
        }
        if decision.effect != .none {
            history[key, default: [:]][version] = HistoryEntry(
                op: row.operation.rawValue, old: decision.effect == .create ? [] : replaced)
        }

        // RowMerger.reconcile.
        let changes = RecordChanges(wanted: decision.records, stored: existing.mapValues(\.record))
        for k in changes.superseded { records[existing[k]!.index].status = "superseded" }
        for record in changes.repointed {
            let i = existing[record.key]!.index
            records[i].kind = record.kind
            records[i].winnerWriter = record.winner.writer.number
            records[i].winnerStamp = record.winner.stamp
            records[i].winnerValue = record.column.map { values[$0] }
        }
        for record in changes.inserted {
            records.append(
                Record(
                    id: Int64(records.count + 1), key: key, column: record.column, kind: record.kind,
                    winnerWriter: record.winner.writer.number, winnerStamp: record.winner.stamp,
                    winnerValue: record.column.map { values[$0] }, loserWriter: record.loser.writer.number,
                    loserStamp: record.loser.stamp, loserVersion: record.loser.version,
                    loserInsert: record.loser.isInsert,
                    loserValue: RecordChanges.loserValue(of: record, change: change, incoming: incoming, prior: prior),
                    status: record.status.rawValue))
        }
        meta[key] = Meta(
            version: clocks.version, openConflicts: decision.records.count, clocks: RowClocksCoding.encode(clocks))
    }

    /// `SELECT old FROM _ks_history WHERE op = 3 ORDER BY version DESC LIMIT 1`.
    private func valuesBeforeDeletion(_ key: Int64) -> [SQLValue]? {
        guard
            let entry = history[key]?.filter({ $0.value.op == Changeset.Operation.delete.rawValue })
                .max(by: { $0.key < $1.key })?.value
        else { return nil }
        var values = Array(repeating: SQLValue.null, count: columnCount)
        for (c, v) in entry.old where c < values.count { values[c] = v }
        return values
    }

    private mutating func checkInvariants() {
        for (key, m) in meta {
            let open = records.filter { $0.key == key && $0.isStanding }.count
            if open != m.openConflicts {
                problems.append("row \(key): open_conflicts is \(m.openConflicts) but \(open) records are open")
            }
            let writers = self.writers
            if let clocks = try? RowClocksCoding.decode(
                m.clocks, version: m.version, columnCount: columnCount, resolve: { writers[$0]! }),
                clocks.isDeleted != (table[key] == nil)
            {
                problems.append(
                    "row \(key): clocks say deleted=\(clocks.isDeleted) but the table \(table[key] == nil ? "lacks" : "has") the row"
                )
            }
        }
        let versions = meta.values.map(\.version)
        if Set(versions).count != versions.count {
            problems.append(
                "two rows share a version (the master keys `_ks_rows` by version and would refuse it): \(versions.sorted())"
            )
        }
    }
}

// MARK: - Scenarios

/// Replicas that all pulled the same snapshot of the master, then changed rows offline and push
/// their changesets; the question is whether the arrival order of those changesets matters.
struct MergeScenario {
    enum Action: Equatable {
        /// Set some columns of a row the replica has (only values that differ are sent, as the
        /// capture triggers do).
        case update([Int: SQLValue])
        case delete
        /// Create a row the replica does not have.
        case insert([SQLValue])
        /// Replace a row the replica has (INSERT OR REPLACE): an upsert with the row's base.
        case replace([SQLValue])
    }

    struct Intent: Equatable {
        var key: Int64
        var action: Action
        var stamp: HLC
        /// Columns of an update that were edited before the replica pulled the seeder's updates,
        /// so they keep the older base (a per-column base version, `Protocol/changeset.md` §3.4).
        var stale: Set<Int> = []
    }

    struct Replica {
        var name: String
        var id: UUID
        var changesets: [[Intent]]
        /// The replica last pulled before the seeder's updates (it was offline): its base versions
        /// and rows are those from before them.
        var pulledBeforeSeedUpdates = false
    }

    /// Rows the seeding replica creates, and those it then deletes, before the snapshot.
    var seedRows: [Int64: [SQLValue]]
    var seedDeletes: [Int64]
    var replicas: [Replica]
    /// Columns the seeding replica then updates; replicas may have had edits of those rows pending
    /// while they pulled these updates.
    var seedUpdates: [Int64: [Int: SQLValue]] = [:]
    /// The milliseconds of the seeder's update stamps. Normally below every replica's (502); when
    /// in the replicas' range, the seeder's clock ran ahead and the replicas that pulled its
    /// updates did not take their stamps in, so a write can lose to one it saw, and a losing write
    /// that one change did not see can win again when that change overwrites the winner.
    var seedUpdateMilliseconds: UInt64 = 502

    static let columnCount = 3
    /// The server configuration of the scenarios' master: one table keyed by text (a bare integer
    /// key is refused by the config), with three untyped columns.
    static let config: ServerConfig = try! ServerConfig.parse(
        yaml: """
            name: Order
            opds:
              - id: pkm-a
                name: Puskesmas A
            tables:
              - name: t
                ddl: "CREATE TABLE t (id TEXT PRIMARY KEY, c0, c1, c2)"
            """, baseURL: FileManager.default.temporaryDirectory)
    static let schema = config.tables[0]
    static let seeder = UUID(uuidString: "5EED5EED-0000-4000-8000-000000000000")!
    static let keys: ClosedRange<Int64> = 1...5
    static let seedKeys: ClosedRange<Int64> = 1...3

    /// The master after the seeding replica's pushes: what every replica pulled.
    func snapshot() -> ModelMaster { seeded().snapshot }

    /// The seeding replica's changesets (its rows, then its deletes, then its updates), the master
    /// after them, and the row versions before the updates.
    func seeded() -> (snapshot: ModelMaster, changesets: [Changeset], before: ModelMaster) {
        var m = ModelMaster(schema: Self.schema)
        var pushed: [Changeset] = []
        let table = Self.schema.changesetTable
        if !seedRows.isEmpty {
            let rows = seedRows.keys.sorted().enumerated().map { i, k in
                Changeset.Row(
                    table: 0, operation: .upsert, version: 0, stamp: HLC(milliseconds: 500, counter: UInt16(i)),
                    primaryKey: [.text(String(k))],
                    columns: seedRows[k]!.enumerated().map { .init(column: $0, value: $1) })
            }
            pushed.append(
                Changeset(
                    kind: .push, id: UUID(), replicaID: Self.seeder, firstSequence: 1, lastSequence: 1, tables: [table],
                    rows: rows))
            try! m.push(pushed.last!)
        }
        let deletes = seedDeletes.filter { m.table[$0] != nil }
        if !deletes.isEmpty {
            let rows = deletes.enumerated().map { i, k in
                Changeset.Row(
                    table: 0, operation: .delete, version: m.meta[k]!.version,
                    stamp: HLC(milliseconds: 501, counter: UInt16(i)),
                    primaryKey: [.text(String(k))], columns: [])
            }
            pushed.append(
                Changeset(
                    kind: .push, id: UUID(), replicaID: Self.seeder, firstSequence: 2, lastSequence: 2, tables: [table],
                    rows: rows))
            try! m.push(pushed.last!)
        }
        let before = m
        let updates = seedUpdates.keys.sorted().filter { m.table[$0] != nil && !seedUpdates[$0]!.isEmpty }
        if !updates.isEmpty {
            let rows = updates.enumerated().map { i, k in
                Changeset.Row(
                    table: 0, operation: .update, version: m.meta[k]!.version,
                    stamp: HLC(milliseconds: seedUpdateMilliseconds, counter: UInt16(i)),
                    primaryKey: [.text(String(k))],
                    columns: seedUpdates[k]!.sorted { $0.key < $1.key }.map { .init(column: $0.key, value: $0.value) })
            }
            pushed.append(
                Changeset(
                    kind: .push, id: UUID(), replicaID: Self.seeder, firstSequence: 3, lastSequence: 3, tables: [table],
                    rows: rows))
            try! m.push(pushed.last!)
        }
        return (m, pushed, before)
    }

    /// Each replica's changesets, as its change log and outbox would build them from its intents:
    /// base versions from the snapshot (a row the replica created itself has base 0 once pushed),
    /// one row per key per changeset, intents that no longer fit the replica's rows dropped.
    func changesets(from snapshot: ModelMaster) -> [[Changeset]] {
        let table = Self.schema.changesetTable
        let beforeUpdates = seeded().before
        let before = beforeUpdates.meta.mapValues(\.version)
        return replicas.map { replica in
            let pulled = replica.pulledBeforeSeedUpdates ? beforeUpdates : snapshot
            var local = pulled.table
            var known = pulled.meta.mapValues(\.version)
            var pushedBefore = Set<Int64>()
            var sequence: UInt64 = 0
            var out: [Changeset] = []
            for intents in replica.changesets {
                var rows: [Changeset.Row] = []
                var used = Set<Int64>()
                for intent in intents where !used.contains(intent.key) {
                    let k = intent.key
                    let pk: [SQLValue] = [.text(String(k))]
                    switch intent.action {
                    case .update(let set):
                        guard var values = local[k], let base = known[k] else { continue }
                        let changed = set.filter { values[$0.key] != $0.value }.sorted { $0.key < $1.key }
                        guard !changed.isEmpty else { continue }
                        for (c, v) in changed { values[c] = v }
                        local[k] = values
                        // A pending edit keeps its older base until its first push is acknowledged.
                        let old = pushedBefore.contains(k) ? nil : before[k].flatMap { $0 == base ? nil : $0 }
                        rows.append(
                            .init(
                                table: 0, operation: .update, version: base, stamp: intent.stamp, primaryKey: pk,
                                columns: changed.map {
                                    .init(
                                        column: $0.key, value: $0.value,
                                        baseVersion: intent.stale.contains($0.key) ? old : nil)
                                }))
                    case .delete:
                        guard local[k] != nil else { continue }
                        local[k] = nil
                        rows.append(
                            .init(
                                table: 0, operation: .delete, version: known[k] ?? 0, stamp: intent.stamp,
                                primaryKey: pk, columns: []))
                    case .insert(let values):
                        guard local[k] == nil else { continue }
                        local[k] = values
                        rows.append(
                            .init(
                                table: 0, operation: .upsert, version: known[k] ?? 0, stamp: intent.stamp,
                                primaryKey: pk, columns: values.enumerated().map { .init(column: $0, value: $1) }))
                    case .replace(let values):
                        guard let now = local[k], now != values else { continue }
                        local[k] = values
                        rows.append(
                            .init(
                                table: 0, operation: .upsert, version: known[k] ?? 0, stamp: intent.stamp,
                                primaryKey: pk, columns: values.enumerated().map { .init(column: $0, value: $1) }))
                    }
                    used.insert(k)
                }
                guard !rows.isEmpty else { continue }
                for row in rows {
                    guard case .text(let text) = row.primaryKey[0], let k = Int64(text) else { continue }
                    pushedBefore.insert(k)
                    if row.operation != .delete, known[k] == nil { known[k] = 0 }
                }
                sequence += 1
                out.append(
                    Changeset(
                        kind: .push, id: UUID(), replicaID: replica.id, firstSequence: sequence, lastSequence: sequence,
                        tables: [table], rows: rows))
            }
            return out
        }
    }

    // MARK: Generation

    static func value<G: RandomNumberGenerator>(using g: inout G) -> SQLValue {
        g.chance(0.1) ? .null : .integer(.random(in: 0...2, using: &g))
    }

    static func generate(seed: UInt64) -> MergeScenario {
        var g = SplitMix64(seed: seed)
        var seedRows: [Int64: [SQLValue]] = [:]
        for k in seedKeys where g.chance(0.85) { seedRows[k] = (0..<columnCount).map { _ in value(using: &g) } }
        let seedDeletes = seedRows.keys.sorted().filter { _ in g.chance(0.2) }
        var seedUpdates: [Int64: [Int: SQLValue]] = [:]
        for k in seedRows.keys.sorted() where !seedDeletes.contains(k) && g.chance(0.3) {
            seedUpdates[k] = [Int.random(in: 0..<columnCount, using: &g): value(using: &g)]
        }
        var scenario = MergeScenario(
            seedRows: seedRows, seedDeletes: seedDeletes, replicas: [], seedUpdates: seedUpdates)
        if !seedUpdates.isEmpty && g.chance(0.5) {
            scenario.seedUpdateMilliseconds = .random(in: 1000...1008, using: &g)
        }
        let snapshot = scenario.snapshot()
        let before = scenario.seeded().before
        for r in 0..<Int.random(in: 2...5, using: &g) {
            let offline = !seedUpdates.isEmpty && g.chance(scenario.seedUpdateMilliseconds == 502 ? 0.25 : 0.4)
            var local = offline ? before.table : snapshot.table
            var ms = UInt64.random(in: 1000...1002, using: &g)
            var counter: UInt16 = 0
            var changesets: [[Intent]] = []
            for _ in 0..<Int.random(in: 1...3, using: &g) {
                var intents: [Intent] = []
                var used = Set<Int64>()
                for _ in 0..<Int.random(in: 1...3, using: &g) {
                    // Rows the seeder updated are where older bases meet; they are picked more often.
                    let k =
                        !seedUpdates.isEmpty && g.chance(0.3)
                        ? seedUpdates.keys.sorted().randomElement(using: &g)! : Int64.random(in: keys, using: &g)
                    guard !used.contains(k) else { continue }
                    used.insert(k)
                    let step = UInt64.random(in: 0...2, using: &g)
                    if step == 0 {
                        counter += 1
                    } else {
                        ms += step
                        counter = 0
                    }
                    let stamp = HLC(milliseconds: ms, counter: counter)
                    let action: Action
                    if let values = local[k] {
                        switch Int.random(in: 0..<9, using: &g) {
                        case 0..<5:
                            var set: [Int: SQLValue] = [:]
                            var columns = (0..<columnCount).shuffled(using: &g)
                                .prefix(Int.random(in: 1...columnCount, using: &g))
                            // Often the column the seeder updated, if this is its row.
                            if let updated = seedUpdates[k]?.keys.first, g.chance(0.5) { columns.append(updated) }
                            for c in Set(columns).sorted() {
                                var v = value(using: &g)
                                while v == values[c] { v = value(using: &g) }
                                set[c] = v
                            }
                            action = .update(set)
                            var updated = values
                            for (c, v) in set { updated[c] = v }
                            local[k] = updated
                        case 5..<8:
                            action = .delete
                            local[k] = nil
                        default:
                            let v = (0..<columnCount).map { _ in value(using: &g) }
                            action = .replace(v)
                            local[k] = v
                        }
                    } else {
                        let v = (0..<columnCount).map { _ in value(using: &g) }
                        action = .insert(v)
                        local[k] = v
                    }
                    var stale = Set<Int>()
                    if !offline, changesets.isEmpty, seedUpdates[k] != nil, case .update(let set) = action {
                        stale = Set(set.keys.filter { _ in g.chance(0.6) })
                    }
                    intents.append(Intent(key: k, action: action, stamp: stamp, stale: stale))
                }
                changesets.append(intents)
            }
            scenario.replicas.append(
                Replica(
                    name: String(UnicodeScalar(UInt8(65 + r))), id: g.uuid(), changesets: changesets,
                    pulledBeforeSeedUpdates: offline))
        }
        return scenario
    }

    // MARK: Running

    /// A conflict record still standing (not superseded), as the comparison sees it: writers by
    /// replica (not by their arrival-order number), stamps and values.
    struct StandingRecord: Hashable, Comparable, CustomStringConvertible {
        var key: Int64
        var column: Int?
        var kind: ConflictReport.Kind?
        var winner: String
        var winnerStamp: HLC
        var winnerValue: SQLValue?
        var loser: String
        var loserStamp: HLC
        var loserValue: SQLValue?

        var description: String {
            func show(_ v: SQLValue?) -> String { v.map(\.description) ?? "-" }
            return
                "row \(key) \(column.map { "c\($0)" } ?? "(row)") \(kind?.rawValue ?? "?"): winner \(winner)@\(winnerStamp)=\(show(winnerValue)), loser \(loser)@\(loserStamp)=\(show(loserValue))"
        }

        static func < (a: Self, b: Self) -> Bool { a.description < b.description }
    }

    /// Differences between two outcomes a comparison may overlook, to tell a known fault from
    /// an unknown one. The property itself is always checked with none.
    struct Leniency: OptionSet {
        let rawValue: Int
        /// The kind of a record.
        static let kind = Leniency(rawValue: 1)
        /// A record's loser value that one outcome has and the other lacks.
        static let missingLoserValues = Leniency(rawValue: 2)
    }

    /// What must not depend on the order: the table's rows (and so which rows are live), and the
    /// records still standing.
    struct Outcome {
        var rows: [Int64: [SQLValue]]
        var records: [StandingRecord]
        var problems: [String]

        func same(as other: Outcome, leniency: Leniency = []) -> Bool {
            guard rows == other.rows else { return false }
            guard !leniency.isEmpty else { return records == other.records }
            func relaxed(_ r: StandingRecord) -> StandingRecord {
                var x = r
                if leniency.contains(.kind) { x.kind = nil }
                if leniency.contains(.missingLoserValues) { x.loserValue = nil }
                return x
            }
            let mine = records.map { (relaxed($0), $0.loserValue) }.sorted { $0.0 < $1.0 }
            let theirs = other.records.map { (relaxed($0), $0.loserValue) }.sorted { $0.0 < $1.0 }
            guard mine.map(\.0) == theirs.map(\.0) else { return false }
            // Only a value missing on one side is overlooked, never two different values.
            return zip(mine, theirs).allSatisfy { a, b in a.1 == b.1 || a.1 == nil || b.1 == nil }
        }
    }

    /// An arrival order: for each step, the replica whose next changeset arrives.
    typealias Order = [Int]

    /// Display names of the writers: the replicas' letters, "seed" and "master".
    var names: [UUID: String] {
        var names = [Self.seeder: "seed", Writer.master.id: "master"]
        for r in replicas { names[r.id] = r.name }
        return names
    }

    /// Which master merges the changesets: the in-memory model, a real `SQLiteMasterStore` on a
    /// file in a fresh temporary directory, or a real `PostgresMasterStore` on a fresh database.
    enum Engine {
        case model, store, postgres
    }

    /// The seed, then `changesets` in `order`, merged by `engine`.
    func outcome(
        _ order: Order, of changesets: [[Changeset]], snapshot: ModelMaster, on engine: Engine
    ) async throws -> Outcome {
        switch engine {
        case .model: Self.run(snapshot, changesets, order: order, names: names)
        case .store: try await storeOutcome(order: order, changesets: changesets).outcome
        case .postgres: try await postgresOutcome(order: order, changesets: changesets)
        }
    }

    static func run(_ snapshot: ModelMaster, _ changesets: [[Changeset]], order: Order, names: [UUID: String])
        -> Outcome
    {
        var m = snapshot
        var next = Array(repeating: 0, count: changesets.count)
        for r in order {
            try! m.push(changesets[r][next[r]])
            next[r] += 1
        }
        let records = m.records.filter(\.isStanding).map { rec in
            StandingRecord(
                key: rec.key, column: rec.column, kind: rec.kind,
                winner: names[m.writers[rec.winnerWriter]!.id] ?? "?", winnerStamp: rec.winnerStamp,
                winnerValue: rec.winnerValue,
                loser: names[m.writers[rec.loserWriter]!.id] ?? "?", loserStamp: rec.loserStamp,
                loserValue: rec.loserValue)
        }.sorted()
        return Outcome(rows: m.table, records: records, problems: m.problems)
    }

    static func randomOrder<G: RandomNumberGenerator>(_ counts: [Int], using g: inout G) -> Order {
        var remaining = counts
        var order: Order = []
        var total = counts.reduce(0, +)
        while total > 0 {
            var pick = Int.random(in: 0..<total, using: &g)
            var r = 0
            while pick >= remaining[r] {
                pick -= remaining[r]
                r += 1
            }
            order.append(r)
            remaining[r] -= 1
            total -= 1
        }
        return order
    }

    /// `order` made to fit `counts`: surplus steps of a replica dropped, missing ones appended.
    static func adapt(_ order: Order, to counts: [Int]) -> Order {
        var seen = Array(repeating: 0, count: counts.count)
        var out: Order = []
        for r in order where r < counts.count && seen[r] < counts[r] {
            seen[r] += 1
            out.append(r)
        }
        for r in counts.indices { out += Array(repeating: r, count: counts[r] - seen[r]) }
        return out
    }

    /// Every interleaving of `counts`, or nil if there are more than `limit`.
    static func allOrders(_ counts: [Int], limit: Int) -> [Order]? {
        var result: [Order] = []
        var remaining = counts
        var current: Order = []
        func go() -> Bool {
            if remaining.allSatisfy({ $0 == 0 }) {
                result.append(current)
                return result.count <= limit
            }
            for r in remaining.indices where remaining[r] > 0 {
                remaining[r] -= 1
                current.append(r)
                if !go() { return false }
                current.removeLast()
                remaining[r] += 1
            }
            return true
        }
        return go() ? result : nil
    }

    struct Counterexample {
        var scenario: MergeScenario
        var first: (order: Order, outcome: Outcome)
        var second: (order: Order, outcome: Outcome)
        var problems: [String]
        var engine: Engine
    }

    /// The orders to try: `extra` ones, then every interleaving if there are at most
    /// `exhaustiveLimit`, else each replica's changesets in a block (forwards and backwards) and
    /// `randomOrders` random interleavings.
    func orders(_ extra: [Order], counts: [Int], randomOrders: Int, seed: UInt64, exhaustiveLimit: Int) -> [Order] {
        var g = SplitMix64(seed: seed)
        var orders = extra.map { Self.adapt($0, to: counts) }
        if let all = Self.allOrders(counts, limit: exhaustiveLimit) {
            orders += all
        } else {
            orders.append(counts.indices.flatMap { Array(repeating: $0, count: counts[$0]) })
            orders.append(counts.indices.reversed().flatMap { Array(repeating: $0, count: counts[$0]) })
            for _ in 0..<randomOrders { orders.append(Self.randomOrder(counts, using: &g)) }
        }
        var seen = Set<Order>()
        return orders.filter { seen.insert($0).inserted }
    }

    /// The outcome of each order tried (see ``orders(_:counts:randomOrders:seed:exhaustiveLimit:)``).
    func outcomes(
        orders extra: [Order] = [], randomOrders: Int, seed: UInt64, exhaustiveLimit: Int = 0,
        on engine: Engine = .model
    ) async throws -> [(order: Order, outcome: Outcome)] {
        let snapshot = snapshot()
        let changesets = changesets(from: snapshot)
        var out: [(order: Order, outcome: Outcome)] = []
        for order in orders(
            extra, counts: changesets.map(\.count), randomOrders: randomOrders, seed: seed,
            exhaustiveLimit: exhaustiveLimit)
        {
            out.append((order, try await outcome(order, of: changesets, snapshot: snapshot, on: engine)))
        }
        return out
    }

    /// Two orders whose outcomes differ beyond `leniency`, or an order that broke a bookkeeping
    /// invariant; nil if there are none.
    func counterexample(
        in outcomes: [(order: Order, outcome: Outcome)], leniency: Leniency = [], on engine: Engine
    ) -> Counterexample? {
        guard let first = outcomes.first else { return nil }
        var problems = first.outcome.problems
        for other in outcomes.dropFirst() {
            problems += other.outcome.problems
            if !other.outcome.same(as: first.outcome, leniency: leniency) {
                return Counterexample(scenario: self, first: first, second: other, problems: problems, engine: engine)
            }
        }
        return problems.isEmpty
            ? nil : Counterexample(scenario: self, first: first, second: first, problems: problems, engine: engine)
    }

    /// Runs `orders` (plus random ones) and returns a counterexample beyond `leniency`, if any.
    func counterexample(
        orders extra: [Order] = [], randomOrders: Int, seed: UInt64, exhaustiveLimit: Int = 0,
        leniency: Leniency = [], on engine: Engine = .model
    ) async throws -> Counterexample? {
        let outcomes = try await outcomes(
            orders: extra, randomOrders: randomOrders, seed: seed, exhaustiveLimit: exhaustiveLimit, on: engine)
        return counterexample(in: outcomes, leniency: leniency, on: engine)
    }

    /// How an order dependence shows, from the most to the least serious. A scenario's class is
    /// the most lenient comparison under which its outcomes still differ.
    enum Failure: CaseIterable {
        /// Rows differ, or records differ in more than their kind and a missing loser value, or
        /// the store's bookkeeping broke.
        case state
        /// Only the kind of a standing record differs (besides missing loser values).
        case kind
        /// Only a record's loser value is missing in one order (a record made on resurrection
        /// once lacked it).
        case missingLoserValue

        var leniency: Leniency {
            switch self {
            case .state: [.kind, .missingLoserValues]
            case .kind: [.missingLoserValues]
            case .missingLoserValue: []
            }
        }

        var label: String {
            switch self {
            case .state: "[state] rows, records or bookkeeping differ"
            case .kind: "[kind] only the kind of a standing record differs"
            case .missingLoserValue: "[loser value] only a record's loser value is missing in one order"
            }
        }
    }

    /// The class of the order dependence among `outcomes`, and a counterexample showing it; nil if
    /// every outcome is the same.
    func classify(_ outcomes: [(order: Order, outcome: Outcome)], on engine: Engine) -> (Failure, Counterexample)? {
        for failure in Failure.allCases {
            if let cx = counterexample(in: outcomes, leniency: failure.leniency, on: engine) { return (failure, cx) }
        }
        return nil
    }

    /// Whether this scenario fails as `failure`, trying `orders` first; the counterexample if so.
    func fails(
        as failure: Failure, orders: [Order], randomOrders: Int, seed: UInt64, exhaustiveLimit: Int = 0,
        on engine: Engine = .model
    ) async throws -> Counterexample? {
        let outcomes = try await outcomes(
            orders: orders, randomOrders: randomOrders, seed: seed, exhaustiveLimit: exhaustiveLimit, on: engine)
        guard let (found, cx) = classify(outcomes, on: engine), found == failure else { return nil }
        return cx
    }

    // MARK: Minimising

    /// Every scenario one simplification away.
    func simplifications() -> [MergeScenario] {
        var out: [MergeScenario] = []
        for r in replicas.indices {
            var s = self
            s.replicas.remove(at: r)
            out.append(s)
        }
        for r in replicas.indices {
            for c in replicas[r].changesets.indices {
                var s = self
                s.replicas[r].changesets.remove(at: c)
                out.append(s)
            }
        }
        for r in replicas.indices {
            for c in replicas[r].changesets.indices where c > 0 {
                // Merge a changeset into the previous one.
                var s = self
                let moved = s.replicas[r].changesets.remove(at: c)
                s.replicas[r].changesets[c - 1] += moved
                out.append(s)
            }
        }
        for r in replicas.indices {
            for c in replicas[r].changesets.indices {
                for i in replicas[r].changesets[c].indices {
                    var s = self
                    s.replicas[r].changesets[c].remove(at: i)
                    out.append(s)
                    if case .update(let set) = replicas[r].changesets[c][i].action, set.count > 1 {
                        for column in set.keys {
                            var s = self
                            var smaller = set
                            smaller[column] = nil
                            s.replicas[r].changesets[c][i].action = .update(smaller)
                            out.append(s)
                        }
                    }
                }
            }
        }
        for k in seedRows.keys.sorted() {
            var s = self
            s.seedRows[k] = nil
            s.seedDeletes.removeAll { $0 == k }
            out.append(s)
        }
        for k in seedDeletes {
            var s = self
            s.seedDeletes.removeAll { $0 == k }
            out.append(s)
        }
        for r in replicas.indices where replicas[r].pulledBeforeSeedUpdates {
            var s = self
            s.replicas[r].pulledBeforeSeedUpdates = false
            out.append(s)
        }
        for k in seedUpdates.keys.sorted() {
            var s = self
            s.seedUpdates[k] = nil
            out.append(s)
        }
        if seedUpdateMilliseconds != 502 {
            var s = self
            s.seedUpdateMilliseconds = 502
            out.append(s)
        }
        for r in replicas.indices {
            for c in replicas[r].changesets.indices {
                for i in replicas[r].changesets[c].indices where !replicas[r].changesets[c][i].stale.isEmpty {
                    var s = self
                    s.replicas[r].changesets[c][i].stale = []
                    out.append(s)
                }
            }
        }
        return out
    }

    /// Shrinks a counterexample while `fails` still finds one in the smaller scenario. `fails`
    /// gets the candidate and the two failing orders of the current one, projected onto it.
    static func minimise(
        _ found: Counterexample, fails: (MergeScenario, [Order]) async throws -> Counterexample?
    ) async rethrows -> Counterexample {
        var best = found
        var improved = true
        while improved {
            improved = false
            for candidate in best.scenario.simplifications() {
                let orders = [best.first.order, best.second.order].map {
                    project($0, from: best.scenario, to: candidate)
                }
                if let cx = try await fails(candidate, orders) {
                    best = cx
                    improved = true
                    break
                }
            }
        }
        return best
    }

    /// Shrinks a counterexample of class `failure` to a smaller scenario of the same class. On the
    /// real store only the failing orders and the two block orders are tried, to keep it quick.
    static func minimise(_ found: Counterexample, as failure: Failure) async throws -> Counterexample {
        try await minimise(found) { candidate, orders in
            switch found.engine {
            case .model:
                try await candidate.fails(
                    as: failure, orders: orders, randomOrders: 40, seed: 99, exhaustiveLimit: 5_000, on: .model)
            case .store, .postgres:
                try await candidate.fails(as: failure, orders: orders, randomOrders: 0, seed: 99, on: found.engine)
            }
        }
    }

    /// An order of `from`'s changesets, restricted to the replicas that `to` still has.
    static func project(_ order: Order, from: MergeScenario, to: MergeScenario) -> Order {
        let kept = from.replicas.map { r in to.replicas.firstIndex { $0.id == r.id } }
        return order.compactMap { kept[$0] }
    }

    // MARK: Describing

    func describe(_ cx: Counterexample) -> String {
        let snapshot = snapshot()
        let changesets = changesets(from: snapshot)
        var lines: [String] = []
        let engines: [Engine: String] = [
            .model: "the model of the master", .store: "a real SQLiteMasterStore",
            .postgres: "a real PostgresMasterStore",
        ]
        lines.append("merged by \(engines[cx.engine]!)")
        lines.append(
            "table t(id TEXT PRIMARY KEY, c0, c1, c2); replica ids order as \(replicas.sorted { $0.id.bytes.lexicographicallyPrecedes($1.id.bytes) }.map(\.name).joined(separator: " < "))"
        )
        func rows(_ m: ModelMaster) {
            for k in m.meta.keys.sorted() {
                lines.append(
                    "  row \(k) version \(m.meta[k]!.version): \(m.table[k].map { "(\($0.map(\.description).joined(separator: ", ")))" } ?? "deleted")"
                )
            }
            if m.meta.isEmpty { lines.append("  (empty)") }
        }
        let (_, seeds, before) = seeded()
        if seeds.count > 1, seeds.last!.rows.first?.operation == .update {
            lines.append("master before the seeder's updates:")
            rows(before)
            lines.append(
                "the seeder's updates: "
                    + seeds.last!.rows.map { row in
                        "row \(row.primaryKey[0]) set \(row.columns.map { "c\($0.column)=\($0.value)" }.joined(separator: ", ")) @\(row.stamp)"
                    }.joined(separator: "; "))
        }
        let offline = replicas.filter(\.pulledBeforeSeedUpdates).map(\.name)
        lines.append(
            offline.isEmpty
                ? "snapshot every replica pulled:"
                : "snapshot the other replicas pulled (\(offline.joined(separator: ", ")) pulled only the state before the seeder's updates):"
        )
        rows(snapshot)
        for (r, replica) in replicas.enumerated() {
            for (i, c) in changesets[r].enumerated() {
                let rows = c.rows.map { row -> String in
                    guard case .text(let k) = row.primaryKey[0] else { return "?" }
                    switch row.operation {
                    case .delete: return "delete row \(k) (base \(row.version)) @\(row.stamp)"
                    case .update:
                        return
                            "update row \(k) set \(row.columns.map { "c\($0.column)=\($0.value)\($0.baseVersion.map { " (own base \($0))" } ?? "")" }.joined(separator: ", ")) (base \(row.version)) @\(row.stamp)"
                    case .upsert:
                        return
                            "upsert row \(k) = (\(row.columns.map(\.value.description).joined(separator: ", "))) (base \(row.version)) @\(row.stamp)"
                    }
                }
                lines.append("\(replica.name)\(i + 1): " + rows.joined(separator: "; "))
            }
        }
        func label(_ order: Order) -> String {
            var next = Array(repeating: 0, count: replicas.count)
            return order.map { r in
                next[r] += 1
                return "\(replicas[r].name)\(next[r])"
            }.joined(separator: ", ")
        }
        func show(_ o: Outcome) -> [String] {
            [
                "  rows: "
                    + (o.rows.keys.sorted().map { k in "\(k)=(\(o.rows[k]!.map(\.description).joined(separator: ", ")))"
                    }.joined(separator: " ").nilIfEmpty ?? "(none)")
            ]
                + o.records.map { "  record: \($0)" }
        }
        if cx.first.order != cx.second.order {
            lines.append("order \(label(cx.first.order)) gives:")
            lines += show(cx.first.outcome)
            lines.append("order \(label(cx.second.order)) gives:")
            lines += show(cx.second.outcome)
        }
        for p in Set(cx.problems).sorted() { lines.append("store invariant broken: \(p)") }
        return lines.joined(separator: "\n")
    }
}

extension MergeScenario {
    /// The seed and then `changesets` pushed to a real `SQLiteMasterStore` in `order`; its rows,
    /// open records and `_ks_rows`, with its bookkeeping checked: each row's `open_conflicts` is
    /// its number of open records, and its `deleted` flag, its clocks and the table agree.
    func storeOutcome(order: Order, changesets: [[Changeset]]) async throws -> (
        outcome: Outcome, meta: [Int64: ModelMaster.Meta]
    ) {
        let seeds = seeded().changesets
        let names = self.names
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "kotasync-order-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try SQLiteMasterStore(path: dir.appendingPathComponent("master.sqlite").path, config: Self.config)
        try await push(seeds, then: changesets, in: order, to: store)
        return try await store.pool.read { db in
            func key(_ pk: Data) throws -> Int64 {
                guard case .text(let text) = try PrimaryKeyCoding.decode([UInt8](pk)).first, let k = Int64(text) else {
                    return -1
                }
                return k
            }
            var rows: [Int64: [SQLValue]] = [:]
            for r in try Row.fetchAll(db, sql: "SELECT id, c0, c1, c2 FROM t") {
                rows[Int64(r[0] as String) ?? -1] = (1...3).map { SQLValue(r[$0] as DatabaseValue) }
            }
            var uuids: [Int64: UUID] = [0: Writer.master.id]
            for r in try Row.fetchAll(db, sql: "SELECT number, uuid FROM _ks_replicas") {
                uuids[r["number"]] = UUID(bytes: [UInt8](r["uuid"] as Data))
            }
            func name(_ number: Int64) -> String { uuids[number].flatMap { names[$0] } ?? "?" }
            var meta: [Int64: ModelMaster.Meta] = [:]
            var deleted: [Int64: Bool] = [:]
            for r in try Row.fetchAll(db, sql: "SELECT pk, version, deleted, open_conflicts, clocks FROM _ks_rows") {
                let k = try key(r["pk"])
                meta[k] = ModelMaster.Meta(
                    version: UInt64(r["version"] as Int64), openConflicts: r["open_conflicts"],
                    clocks: [UInt8](r["clocks"] as Data))
                deleted[k] = (r["deleted"] as Int) != 0
            }
            var problems: [String] = []
            let open = try Dictionary(
                Row.fetchAll(
                    db, sql: "SELECT pk, count(*) AS n FROM _ks_conflicts WHERE status IN ('open', 'auto') GROUP BY pk"
                )
                .map { (try key($0["pk"]), $0["n"] as Int) }, uniquingKeysWith: +)
            for (k, m) in meta {
                if m.openConflicts != open[k] ?? 0 {
                    problems.append(
                        "row \(k): open_conflicts is \(m.openConflicts) but \(open[k] ?? 0) records are open")
                }
                let clocks = try RowClocksCoding.decode(m.clocks, version: m.version, columnCount: 3) { n in
                    Writer(number: n, id: uuids[n] ?? .zero)
                }
                if clocks.isDeleted != deleted[k] || clocks.isDeleted != (rows[k] == nil) {
                    problems.append(
                        "row \(k): clocks say deleted=\(clocks.isDeleted), _ks_rows.deleted=\(deleted[k]!), the table \(rows[k] == nil ? "lacks" : "has") the row"
                    )
                }
            }
            var records: [StandingRecord] = []
            for r in try Row.fetchAll(
                db,
                sql: """
                    SELECT pk, col, kind, winner_writer, winner_stamp, winner_value, winner_has_value,
                        loser_writer, loser_stamp, loser_value, loser_has_value
                    FROM _ks_conflicts WHERE status IN ('open', 'auto')
                    """)
            {
                records.append(
                    StandingRecord(
                        key: try key(r["pk"]), column: (r["col"] as String?).flatMap { Int($0.dropFirst()) },
                        kind: ConflictReport.Kind(rawValue: r["kind"]),
                        winner: name(r["winner_writer"]),
                        winnerStamp: HLC(rawValue: UInt64(bitPattern: r["winner_stamp"])),
                        winnerValue: (r["winner_has_value"] as Int) == 1
                            ? SQLValue(r["winner_value"] as DatabaseValue) : nil,
                        loser: name(r["loser_writer"]), loserStamp: HLC(rawValue: UInt64(bitPattern: r["loser_stamp"])),
                        loserValue: (r["loser_has_value"] as Int) == 1
                            ? SQLValue(r["loser_value"] as DatabaseValue) : nil))
            }
            return (Outcome(rows: rows, records: records.sorted(), problems: problems), meta)
        }
    }
}

extension MergeScenario {
    /// Pushes `seeds`, then `changesets` in `order` (each replica's in its own order), to a real
    /// store, all from one device.
    func push(_ seeds: [Changeset], then changesets: [[Changeset]], in order: Order, to store: any SyncStore)
        async throws
    {
        let device = Device(tokenID: "t-pkm-a", opd: "pkm-a")
        for c in seeds { _ = try await store.push(c, from: device) }
        var next = Array(repeating: 0, count: changesets.count)
        for r in order {
            _ = try await store.push(changesets[r][next[r]], from: device)
            next[r] += 1
        }
    }

    /// The seed and then `changesets` pushed to a real `PostgresMasterStore` in `order`: its rows
    /// and standing records as the data browser and the review queue give them, with the same
    /// bookkeeping checks as on SQLite (`kotasync.rows` against the records and the table).
    func postgresOutcome(order: Order, changesets: [[Changeset]]) async throws -> Outcome {
        let seeds = seeded().changesets
        let names = self.names
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "kotasync-order-pg-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        return try await withMaster(.postgresql, config: Self.config, directory: dir) { master in
            let store = try #require(master.postgresStore)
            try await push(seeds, then: changesets, in: order, to: store)
            var rows: [Int64: [SQLValue]] = [:]
            for k in Self.keys {
                if let values = try await store.browseRow(table: "t", key: [.text(String(k))]) {
                    rows[k] = Array(values.dropFirst())
                }
            }
            var records: [StandingRecord] = []
            for status in ["open", "auto"] {
                for r in try await store.reviewConflicts(ReviewFilter(status: status, limit: 1000)).conflicts {
                    guard case .text(let text) = r.primaryKey.first, let key = Int64(text) else { continue }
                    func stamp(_ side: ConflictReport.Side?) -> HLC {
                        HLC(rawValue: side.flatMap { UInt64($0.stamp) } ?? 0)
                    }
                    records.append(
                        StandingRecord(
                            key: key, column: r.column.flatMap { Int($0.dropFirst()) }, kind: r.kind,
                            winner: r.winner.flatMap { names[$0.replicaId] } ?? "?", winnerStamp: stamp(r.winner),
                            winnerValue: r.winner?.value,
                            loser: r.loser.flatMap { names[$0.replicaId] } ?? "?", loserStamp: stamp(r.loser),
                            loserValue: r.loser?.value))
                }
            }
            var uuids: [Int64: UUID] = [0: Writer.master.id]
            for try await (number, uuid) in try await store.client.query(
                "SELECT number, uuid FROM kotasync.replicas", logger: store.logger
            ).decode((Int64, ByteBuffer).self) {
                uuids[number] = UUID(bytes: Array(buffer: uuid))
            }
            var problems: [String] = []
            let open = Dictionary(records.map { ($0.key, 1) }, uniquingKeysWith: +)
            for try await (pk, version, deleted, openConflicts, clocks) in try await store.client.query(
                "SELECT pk, version, deleted, open_conflicts::bigint, clocks FROM kotasync.rows", logger: store.logger
            ).decode((ByteBuffer, Int64, Bool, Int64, ByteBuffer).self) {
                guard case .text(let text) = try PrimaryKeyCoding.decode(Array(buffer: pk)).first, let k = Int64(text)
                else { continue }
                if Int(openConflicts) != open[k] ?? 0 {
                    problems.append("row \(k): open_conflicts is \(openConflicts) but \(open[k] ?? 0) records are open")
                }
                let decoded = try RowClocksCoding.decode(
                    Array(buffer: clocks), version: UInt64(version), columnCount: 3
                ) {
                    Writer(number: $0, id: uuids[$0] ?? .zero)
                }
                if decoded.isDeleted != deleted || decoded.isDeleted != (rows[k] == nil) {
                    problems.append(
                        "row \(k): clocks say deleted=\(decoded.isDeleted), kotasync.rows.deleted=\(deleted), the table \(rows[k] == nil ? "lacks" : "has") the row"
                    )
                }
            }
            return Outcome(rows: rows, records: records.sorted(), problems: problems)
        }
    }
}

extension String {
    fileprivate var nilIfEmpty: String? { isEmpty ? nil : self }
}

// MARK: - Tests

@Suite("Merge order independence")
struct MergeOrderIndependenceTests {
    typealias Failure = MergeScenario.Failure

    /// Merges the scenarios of `seeds` in many arrival orders each (each replica's changesets in
    /// its own order) on `engine`, and expects one outcome per scenario. The first counterexample
    /// of each class is minimised and printed.
    static func expectOrderIndependence(
        seeds: Range<UInt64>, randomOrders: Int, exhaustiveLimit: Int = 0, on engine: MergeScenario.Engine,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        var failing: [Failure: [UInt64]] = [:]
        var reports: [Failure: String] = [:]
        for seed in seeds {
            let scenario = MergeScenario.generate(seed: seed)
            let outcomes = try await scenario.outcomes(
                randomOrders: randomOrders, seed: seed, exhaustiveLimit: exhaustiveLimit, on: engine)
            guard let (failure, found) = scenario.classify(outcomes, on: engine) else { continue }
            failing[failure, default: []].append(seed)
            if reports[failure] == nil {
                let minimal = try await MergeScenario.minimise(found, as: failure)
                reports[failure] =
                    "\(failure.label) (scenario seed \(seed), minimised):\n" + minimal.scenario.describe(minimal)
            }
        }
        let total = failing.values.map(\.count).reduce(0, +)
        let seedsCount = seeds.count
        func message(_ failure: Failure) -> Comment {
            let seeds = failing[failure] ?? []
            return """
                The merge result depends on the arrival order in \(total) of \(seedsCount) scenarios; \(seeds.count) of them: \
                \(failure.label). Seeds: \(seeds.prefix(15).map(String.init).joined(separator: ", ")).
                \(reports[failure] ?? "")
                """
        }
        for failure in [Failure.state, .kind, .missingLoserValue] where failing[failure] != nil {
            Issue.record(message(failure), sourceLocation: sourceLocation)
        }
    }

    static let scenarioCount: UInt64 = 600
    static let storeScenarioCount: UInt64 = 120

    /// Random scenarios on the model of the master, each in up to 18 orders.
    @Test func mergedStateAndOpenConflictsDoNotDependOnArrivalOrder() async throws {
        try await Self.expectOrderIndependence(seeds: 0..<Self.scenarioCount, randomOrders: 16, on: .model)
    }

    /// Other random scenarios on the real store, one `SQLiteMasterStore` per order: every
    /// interleaving when there are at most six, else four orders.
    @Test func realStoreResultDoesNotDependOnArrivalOrder() async throws {
        try await Self.expectOrderIndependence(
            seeds: 100_000..<100_000 + Self.storeScenarioCount, randomOrders: 2, exhaustiveLimit: 6, on: .store)
    }

    /// The same on PostgreSQL, one database per order; fewer scenarios (a database each is slower
    /// to make than a file).
    @Test(.postgres) func postgresResultDoesNotDependOnArrivalOrder() async throws {
        try await Self.expectOrderIndependence(
            seeds: 100_000..<100_000 + Self.storeScenarioCount / 8, randomOrders: 2, exhaustiveLimit: 4,
            on: .postgres)
    }

    /// What the PostgreSQL check reads is what the SQLite one reads: the same scenarios, in the
    /// replicas' block order, give both masters one outcome, standing records included.
    @Test(.postgres) func postgresAndSQLiteMastersGiveOneOutcome() async throws {
        var records = 0
        for seed in UInt64(100_000)..<100_010 {
            let scenario = MergeScenario.generate(seed: seed)
            let changesets = scenario.changesets(from: scenario.snapshot())
            let order = changesets.indices.flatMap { Array(repeating: $0, count: changesets[$0].count) }
            let lite = try await scenario.storeOutcome(order: order, changesets: changesets).outcome
            let pg = try await scenario.postgresOutcome(order: order, changesets: changesets)
            #expect(
                pg.same(as: lite),
                "seed \(seed): PostgreSQL \(pg.rows) \(pg.records), SQLite \(lite.rows) \(lite.records)")
            #expect(pg.problems.isEmpty, "seed \(seed): \(pg.problems)")
            records += lite.records.count
        }
        #expect(records > 0, "the scenarios make conflict records")
    }

    // MARK: Fixed scenarios

    typealias Intent = MergeScenario.Intent

    static func at(_ ms: UInt64, _ counter: UInt16 = 0) -> HLC { HLC(milliseconds: ms, counter: counter) }

    static func replica(_ writer: Writer, _ name: String, _ changesets: [[Intent]]) -> MergeScenario.Replica {
        MergeScenario.Replica(name: name, id: writer.id, changesets: changesets)
    }

    /// Every arrival order of `scenario` and its outcome on the model and on the real store.
    static func everyOrder(_ scenario: MergeScenario) async throws -> [(MergeScenario.Order, MergeScenario.Outcome)] {
        let snapshot = scenario.snapshot()
        let changesets = scenario.changesets(from: snapshot)
        var out: [(MergeScenario.Order, MergeScenario.Outcome)] = []
        for order in MergeScenario.allOrders(changesets.map(\.count), limit: 1_000)! {
            for engine in [MergeScenario.Engine.model, .store] {
                out.append((order, try await scenario.outcome(order, of: changesets, snapshot: snapshot, on: engine)))
            }
        }
        return out
    }

    /// Merges `scenario` in every arrival order, on the model and on the real store, and expects
    /// one outcome; returns the model's for the replicas' changesets in a block each.
    @discardableResult
    static func expectOrderIndependent(_ scenario: MergeScenario, sourceLocation: SourceLocation = #_sourceLocation)
        async throws -> MergeScenario.Outcome
    {
        for engine in [MergeScenario.Engine.model, .store] {
            let outcomes = try await scenario.outcomes(randomOrders: 0, seed: 0, exhaustiveLimit: 1_000, on: engine)
            if let (failure, cx) = scenario.classify(outcomes, on: engine) {
                Issue.record(
                    "\(failure.label): the arrival order changes the result:\n\(scenario.describe(cx))",
                    sourceLocation: sourceLocation)
            }
        }
        let snapshot = scenario.snapshot()
        let changesets = scenario.changesets(from: snapshot)
        return MergeScenario.run(
            snapshot, changesets,
            order: changesets.indices.flatMap { Array(repeating: $0, count: changesets[$0].count) },
            names: scenario.names)
    }

    static let baseRow: [Int64: [SQLValue]] = [1: [.integer(0), .integer(0), .integer(0)]]

    @Test func threeConcurrentUpdatesOfOneColumnAgreeInEveryOrder() async throws {
        let outcome = try await Self.expectOrderIndependent(Self.threeConcurrentUpdates)
        #expect(outcome.rows == [1: [.integer(2), .integer(2), .integer(0)]])
        #expect(
            outcome.records.map(\.description) == [
                "row 1 c0 update_update: winner B@1003.0=2, loser A@1001.0=1",
                "row 1 c0 update_update: winner B@1003.0=2, loser C@1002.0=3",
            ])
    }

    static let threeConcurrentUpdates = MergeScenario(
        seedRows: baseRow, seedDeletes: [],
        replicas: [
            replica(W.a, "A", [[Intent(key: 1, action: .update([0: .integer(1)]), stamp: at(1001))]]),
            replica(W.b, "B", [[Intent(key: 1, action: .update([0: .integer(2), 1: .integer(2)]), stamp: at(1003))]]),
            replica(W.c, "C", [[Intent(key: 1, action: .update([0: .integer(3)]), stamp: at(1002))]]),
        ])

    @Test func deleteRacingUpdatesOfOtherColumnsAgreesInEveryOrder() async throws {
        let outcome = try await Self.expectOrderIndependent(
            MergeScenario(
                seedRows: Self.baseRow, seedDeletes: [],
                replicas: [
                    Self.replica(W.a, "A", [[Intent(key: 1, action: .delete, stamp: Self.at(1009))]]),
                    Self.replica(W.b, "B", [[Intent(key: 1, action: .update([0: .integer(2)]), stamp: Self.at(1002))]]),
                    Self.replica(W.c, "C", [[Intent(key: 1, action: .update([1: .integer(3)]), stamp: Self.at(1003))]]),
                ]))
        #expect(outcome.rows == [1: [.integer(2), .integer(3), .integer(0)]])
        #expect(
            outcome.records.map(\.description) == ["row 1 (row) delete_update: winner C@1003.0=-, loser A@1009.0=-"])
    }

    @Test func twoConcurrentDeletesAgreeInEveryOrder() async throws {
        let outcome = try await Self.expectOrderIndependent(
            MergeScenario(
                seedRows: Self.baseRow, seedDeletes: [],
                replicas: [
                    Self.replica(W.a, "A", [[Intent(key: 1, action: .delete, stamp: Self.at(1009))]]),
                    Self.replica(W.b, "B", [[Intent(key: 1, action: .delete, stamp: Self.at(1002))]]),
                ]))
        #expect(outcome.rows.isEmpty)
        #expect(outcome.records.isEmpty)
    }

    @Test func replicasLaterEditSupersedesItsLostRecordInEveryOrder() async throws {
        let outcome = try await Self.expectOrderIndependent(
            MergeScenario(
                seedRows: Self.baseRow, seedDeletes: [],
                replicas: [
                    Self.replica(
                        W.a, "A",
                        [
                            [Intent(key: 1, action: .update([0: .integer(1)]), stamp: Self.at(1001))],
                            [Intent(key: 1, action: .update([0: .integer(2)]), stamp: Self.at(1005))],
                        ]),
                    Self.replica(W.b, "B", [[Intent(key: 1, action: .update([0: .integer(3)]), stamp: Self.at(1003))]]),
                ]))
        #expect(outcome.rows == [1: [.integer(2), .integer(0), .integer(0)]])
        #expect(outcome.records.map(\.description) == ["row 1 c0 update_update: winner A@1005.0=2, loser B@1003.0=3"])
    }

    @Test func insertCollisionAgreesInEveryOrder() async throws {
        let outcome = try await Self.expectOrderIndependent(
            MergeScenario(
                seedRows: [:], seedDeletes: [],
                replicas: [
                    Self.replica(
                        W.a, "A",
                        [
                            [
                                Intent(
                                    key: 4, action: .insert([.integer(1), .integer(1), .integer(1)]),
                                    stamp: Self.at(1001))
                            ]
                        ]),
                    Self.replica(
                        W.b, "B",
                        [[Intent(key: 4, action: .insert([.integer(2), .integer(2), .null]), stamp: Self.at(1001))]]
                    ),
                ]))
        // Same stamp: B's higher id wins every column.
        #expect(outcome.rows == [4: [.integer(2), .integer(2), .null]])
        #expect(
            outcome.records.map(\.description) == [
                "row 4 c0 insert_insert: winner B@1001.0=2, loser A@1001.0=1",
                "row 4 c1 insert_insert: winner B@1001.0=2, loser A@1001.0=1",
                "row 4 c2 insert_insert: winner B@1001.0=NULL, loser A@1001.0=1",
            ])
    }

    // MARK: Counterexamples the engine before "Merge by heads" failed

    /// A edits c0 and, in a later changeset, deletes the row; B edits c0 concurrently with a lower
    /// stamp. The old engine deleted the row in B1, A1, A2 (A's delete counted A's own c0 clock as
    /// seen although it had replaced B's concurrent write) and kept it in A1, A2, B1.
    ///
    /// By heads: c0's heads are A1 and B1 (A1 wins); the row's are A2's delete and B1's write, so
    /// the row lives and A2's delete lost to B1.
    @Test func ownEditThenOwnDeleteRacingAnotherReplicasEditIsOrderIndependent() async throws {
        let outcome = try await Self.expectOrderIndependent(Self.ownEditThenOwnDelete)
        #expect(outcome.rows == [1: [.integer(1), .integer(0), .integer(0)]])
        #expect(
            outcome.records.map(\.description) == [
                "row 1 (row) delete_update: winner B@1001.0=-, loser A@1003.0=-",
                "row 1 c0 update_update: winner A@1002.0=1, loser B@1001.0=2",
            ])
    }

    static let ownEditThenOwnDelete = MergeScenario(
        seedRows: baseRow, seedDeletes: [],
        replicas: [
            replica(
                W.a, "A",
                [
                    [Intent(key: 1, action: .update([0: .integer(1)]), stamp: at(1002))],
                    [Intent(key: 1, action: .delete, stamp: at(1003))],
                ]),
            replica(W.b, "B", [[Intent(key: 1, action: .update([0: .integer(2)]), stamp: at(1001))]]),
        ])

    /// The same with inserts: A creates row 4 and later deletes it; B creates row 4 concurrently.
    /// The old engine kept B's row in A1, A2, B1 and deleted it in B1, A1, A2.
    @Test func ownInsertThenOwnDeleteRacingAnotherReplicasInsertIsOrderIndependent() async throws {
        let outcome = try await Self.expectOrderIndependent(Self.ownInsertThenOwnDelete)
        #expect(outcome.rows == [4: [.integer(1), .integer(1), .integer(1)]])
        #expect(
            outcome.records.map(\.description) == [
                "row 4 (row) delete_update: winner B@1001.0=-, loser A@1003.0=-",
                "row 4 c0 insert_insert: winner A@1002.0=1, loser B@1001.0=2",
                "row 4 c1 insert_insert: winner A@1002.0=1, loser B@1001.0=2",
                "row 4 c2 insert_insert: winner A@1002.0=1, loser B@1001.0=2",
            ])
    }

    static let ownInsertThenOwnDelete = MergeScenario(
        seedRows: [:], seedDeletes: [],
        replicas: [
            replica(
                W.a, "A",
                [
                    [Intent(key: 4, action: .insert([.integer(1), .integer(1), .integer(1)]), stamp: at(1002))],
                    [Intent(key: 4, action: .delete, stamp: at(1003))],
                ]),
            replica(
                W.b, "B", [[Intent(key: 4, action: .insert([.integer(2), .integer(2), .integer(2)]), stamp: at(1001))]]),
        ])

    /// A creates row 4 and, in a later changeset (before pulling), edits c2 (an update with base
    /// 0); B creates row 4 concurrently with a higher stamp. The old engine took the kind of the c2
    /// record from whichever change arrived last. By heads it depends on both sides: c0 and c1 are
    /// insert against insert, c2 is A's update against B's insert.
    @Test func conflictKindDoesNotDependOnWhichSideArrivesLast() async throws {
        let outcome = try await Self.expectOrderIndependent(Self.insertThenOwnUpdate)
        #expect(outcome.rows == [4: [.integer(1), .integer(1), .integer(1)]])
        #expect(
            outcome.records.map(\.description) == [
                "row 4 c0 insert_insert: winner B@1005.0=1, loser A@1000.0=0",
                "row 4 c1 insert_insert: winner B@1005.0=1, loser A@1000.0=0",
                "row 4 c2 update_update: winner B@1005.0=1, loser A@1001.0=1",
            ])
    }

    static let insertThenOwnUpdate = MergeScenario(
        seedRows: [:], seedDeletes: [],
        replicas: [
            replica(
                W.a, "A",
                [
                    [Intent(key: 4, action: .insert([.integer(0), .integer(0), .integer(0)]), stamp: at(1000))],
                    [Intent(key: 4, action: .update([2: .integer(1)]), stamp: at(1001))],
                ]),
            replica(
                W.b, "B", [[Intent(key: 4, action: .insert([.integer(1), .integer(1), .integer(1)]), stamp: at(1005))]]),
        ])

    /// Row 1 = (0, 0, 0) at version 1; the seeder then sets c0 = 1 (version 2). Replica B was
    /// offline and still bases on version 1; C pulled version 2.
    static func afterSeederUpdate(_ replicas: [MergeScenario.Replica]) -> MergeScenario {
        MergeScenario(seedRows: baseRow, seedDeletes: [], replicas: replicas, seedUpdates: [1: [0: .integer(1)]])
    }

    static func offline(_ replica: MergeScenario.Replica) -> MergeScenario.Replica {
        var r = replica
        r.pulledBeforeSeedUpdates = true
        return r
    }

    /// B (offline, base 1) sets c0 = 2 @1002; C (base 2, so it saw the seeder's c0 = 1) sets
    /// c0 = 3 @1005. The old engine, in B1, C1, re-pointed "the seeder's c0 lost to B" to C,
    /// although C saw the seeder's write. By heads the seeder's write is no head of c0 once C's
    /// write (which saw it) is merged: the only record is B's loss to C.
    @Test func laterWinnerThatSawTheLosersWriteGivesTheSameRecordsInEveryOrder() async throws {
        let outcome = try await Self.expectOrderIndependent(Self.repointToWinnerThatSawTheLoser)
        #expect(outcome.rows == [1: [.integer(3), .integer(0), .integer(0)]])
        #expect(outcome.records.map(\.description) == ["row 1 c0 update_update: winner C@1005.0=3, loser B@1002.0=2"])
    }

    static let repointToWinnerThatSawTheLoser = afterSeederUpdate([
        offline(replica(W.b, "B", [[Intent(key: 1, action: .update([0: .integer(2)]), stamp: at(1002))]])),
        replica(W.c, "C", [[Intent(key: 1, action: .update([0: .integer(3)]), stamp: at(1005))]]),
    ])

    /// B (offline, base 1) sets c0 = 2 @1002; C (base 2) deletes the row @1005. The old engine, in
    /// C1, B1, resurrected the row without comparing B's c0 with the seeder's write from before
    /// the delete, so the c0 record was missing. By heads, in every order: the row lives with
    /// c0 = 2; B's write beat the seeder's c0 = 1 and C's delete.
    ///
    /// The c0 record exists in every order, with the loser's value (restored from the row as it
    /// was deleted).
    @Test func resurrectingEditGivesTheSameColumnRecordsInEveryOrder() async throws {
        let expected = [
            "row 1 (row) delete_update: winner B@1002.0=-, loser C@1005.0=-",
            "row 1 c0 update_update: winner B@1002.0=2, loser seed@502.0=1",
        ]
        for (order, outcome) in try await Self.everyOrder(Self.resurrectionSkipsColumnConflict) {
            #expect(outcome.rows == [1: [.integer(2), .integer(0), .integer(0)]], "order \(order)")
            #expect(outcome.records.map(\.description) == expected, "order \(order)")
        }
        let outcome = try await Self.expectOrderIndependent(Self.resurrectionSkipsColumnConflict)
        #expect(outcome.records.map(\.description) == expected)
    }

    static let resurrectionSkipsColumnConflict = afterSeederUpdate([
        offline(replica(W.b, "B", [[Intent(key: 1, action: .update([0: .integer(2)]), stamp: at(1002))]])),
        replica(W.c, "C", [[Intent(key: 1, action: .delete, stamp: at(1005))]]),
    ])

    /// B (offline, base 1) deletes the row @1002; C (base 2) deletes it @1005. The old engine, in
    /// B1, C1, left "B's delete lost to the seeder's write" open on a row C then deleted. By heads
    /// C's delete saw the seeder's write, so the row's heads are the two deletes: deleted, no
    /// records.
    @Test func lostDeleteFollowedByAnotherDeleteGivesTheSameRecordsInEveryOrder() async throws {
        let outcome = try await Self.expectOrderIndependent(Self.lostDeleteThenDelete)
        #expect(outcome.rows.isEmpty)
        #expect(outcome.records.isEmpty)
    }

    static let lostDeleteThenDelete = afterSeederUpdate([
        offline(replica(W.b, "B", [[Intent(key: 1, action: .delete, stamp: at(1002))]])),
        replica(W.c, "C", [[Intent(key: 1, action: .delete, stamp: at(1005))]]),
    ])

    /// The seeder's clock ran ahead: its c0 = 1 is stamped @1005. B (offline, base 1) sets
    /// c0 = 2 @1003 and loses to it; C (base 2: it saw the seeder's write, but its clock did not
    /// take the stamp in) sets c0 = 3 @1001. C's write removes the seeder's head (C saw it) but not
    /// B's, which beats C's: in every order c0 = 2, and the only record is C's loss to B. In
    /// B1, C1 the value 2 comes back from B's record.
    @Test func aLosingWriteWinsAgainWhenTheWinnerIsOverwrittenByAWriteThatDidNotSeeIt() async throws {
        var scenario = Self.afterSeederUpdate([
            Self.offline(
                Self.replica(W.b, "B", [[Intent(key: 1, action: .update([0: .integer(2)]), stamp: Self.at(1003))]])),
            Self.replica(W.c, "C", [[Intent(key: 1, action: .update([0: .integer(3)]), stamp: Self.at(1001))]]),
        ])
        scenario.seedUpdateMilliseconds = 1005
        let outcome = try await Self.expectOrderIndependent(scenario)
        #expect(outcome.rows == [1: [.integer(2), .integer(0), .integer(0)]])
        #expect(outcome.records.map(\.description) == ["row 1 c0 update_update: winner B@1003.0=2, loser C@1001.0=3"])
    }

    // MARK: Records made on resurrection, on the store directly

    /// A record made on resurrection, as a push sees it: C deletes row 1, then B (which never saw the seeder's
    /// c0 = 1) resurrects it with c0 = 2. B's write beats the seeder's, and the record says so
    /// with the seeder's value (restored from the deleted row), in `_ks_conflicts` and in B's push reply.
    @Test func aRecordMadeOnResurrectionHasTheLosersValue() async throws {
        let scenario = Self.resurrectionSkipsColumnConflict
        let changesets = scenario.changesets(from: scenario.snapshot())
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "kotasync-resurrect-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try SQLiteMasterStore(
            path: dir.appendingPathComponent("master.sqlite").path, config: MergeScenario.config)
        let device = Device(tokenID: "t-pkm-a", opd: "pkm-a")
        for c in scenario.seeded().changesets { _ = try await store.push(c, from: device) }
        _ = try await store.push(changesets[1][0], from: device)
        let reply = try ProtocolJSON.decoder().decode(
            PushReply.self, from: try await store.push(changesets[0][0], from: device).reply)
        let report = try #require(reply.conflicts.first { $0.column == "c0" })
        #expect(report.kind == .updateUpdate)
        #expect(report.winner?.replicaId == W.b.id && report.winner?.value == .integer(2))
        #expect(report.loser?.replicaId == MergeScenario.seeder)
        let stored: (hasValue: Int, value: SQLValue)? = try await store.pool.read { db in
            try Row.fetchOne(db, sql: "SELECT loser_value, loser_has_value FROM _ks_conflicts WHERE col = 'c0'").map {
                ($0["loser_has_value"], SQLValue($0["loser_value"] as DatabaseValue))
            }
        }
        #expect(report.loser?.value == .integer(1), "in the push reply")
        #expect(stored?.hasValue == 1, "in _ks_conflicts")
        #expect(stored?.value == .integer(1), "in _ks_conflicts")
    }

    // MARK: The model against the real store

    /// The model is only as good as its fidelity: the same changesets in the same order must give
    /// the SQLite master store's rows, `_ks_rows` (version, open count, clocks) and open records.
    /// Covers the fixed scenarios above in every order, and random scenarios.
    @Test func modelMatchesTheSQLiteMasterStore() async throws {
        var cases: [(String, MergeScenario, MergeScenario.Order)] = []
        for (name, scenario) in [
            ("own edit then delete", Self.ownEditThenOwnDelete),
            ("own insert then delete", Self.ownInsertThenOwnDelete),
            ("insert then own update", Self.insertThenOwnUpdate),
            ("re-point to a winner that saw the loser", Self.repointToWinnerThatSawTheLoser),
            ("resurrection skips a column conflict", Self.resurrectionSkipsColumnConflict),
            ("lost delete then delete", Self.lostDeleteThenDelete),
            ("three concurrent updates", Self.threeConcurrentUpdates),
        ] {
            let counts = scenario.changesets(from: scenario.snapshot()).map(\.count)
            for order in MergeScenario.allOrders(counts, limit: 100)! { cases.append((name, scenario, order)) }
        }
        for seed in 0..<60 as Range<UInt64> {
            let scenario = MergeScenario.generate(seed: seed)
            var g = SplitMix64(seed: seed)
            let counts = scenario.changesets(from: scenario.snapshot()).map(\.count)
            cases.append(("seed \(seed)", scenario, MergeScenario.randomOrder(counts, using: &g)))
        }
        for (name, scenario, order) in cases {
            let (snapshot, _, _) = scenario.seeded()
            let changesets = scenario.changesets(from: snapshot)
            var model = snapshot
            var next = Array(repeating: 0, count: changesets.count)
            for r in order {
                try model.push(changesets[r][next[r]])
                next[r] += 1
            }
            let expected = MergeScenario.run(snapshot, changesets, order: order, names: scenario.names)
            let (actual, meta) = try await scenario.storeOutcome(order: order, changesets: changesets)
            #expect(actual.rows == expected.rows, "\(name), order \(order): rows")
            #expect(actual.records == expected.records, "\(name), order \(order): open records")
            #expect(meta == model.meta, "\(name), order \(order): _ks_rows")
            #expect(model.problems.isEmpty, "\(name): \(model.problems)")
            #expect(actual.problems.isEmpty, "\(name): \(actual.problems)")
        }
    }

    /// The scenarios must reach the merge paths the property is about, or the property says little.
    @Test func scenariosExerciseConflictsDeletesResurrectionsAndOlderBases() {
        var kinds: Set<ConflictReport.Kind> = []
        var repointed = 0
        var superseded = 0
        var resurrected = 0
        var returningLosers = 0
        var ownBases = 0
        var offline = 0
        var seederAhead = 0
        for seed in 0..<600 as Range<UInt64> {
            let scenario = MergeScenario.generate(seed: seed)
            var m = scenario.snapshot()
            let changesets = scenario.changesets(from: m)
            ownBases +=
                changesets.joined().flatMap(\.rows).filter { $0.columns.contains { $0.baseVersion != nil } }
                .count
            offline += scenario.replicas.filter(\.pulledBeforeSeedUpdates).count
            if scenario.seedUpdateMilliseconds != 502 { seederAhead += 1 }
            var g = SplitMix64(seed: seed)
            var next = Array(repeating: 0, count: changesets.count)
            for r in MergeScenario.randomOrder(changesets.map(\.count), using: &g) {
                let before = m
                try! m.push(changesets[r][next[r]])
                next[r] += 1
                for rec in m.records {
                    if let old = before.records.first(where: { $0.id == rec.id }) {
                        if old.winnerStamp != rec.winnerStamp || old.winnerWriter != rec.winnerWriter { repointed += 1 }
                        if old.isStanding && rec.status == "superseded" { superseded += 1 }
                    }
                }
                for (k, _) in m.table where before.table[k] == nil && before.meta[k] != nil {
                    resurrected += 1
                }
                // A loser's write that wins again: its value comes from its record.
                for (k, values) in m.table {
                    let clocks = try! RowClocksCoding.decode(
                        m.meta[k]!.clocks, version: m.meta[k]!.version, columnCount: 3, resolve: { m.writers[$0]! })
                    let previous = before.meta[k].map {
                        try! RowClocksCoding.decode($0.clocks, version: $0.version, columnCount: 3) {
                            before.writers[$0]!
                        }
                    }
                    for c in 0..<3 where previous != nil && clocks.columns[c] != previous!.columns[c] {
                        if before.records.contains(where: {
                            $0.key == k && $0.column == c && $0.isStanding
                                && $0.loserStamp == clocks.columns[c].stamp
                                && $0.loserWriter == clocks.columns[c].writer.number && $0.loserValue == values[c]
                        }) {
                            returningLosers += 1
                        }
                    }
                }
            }
            kinds.formUnion(m.records.map(\.kind))
        }
        #expect(kinds == [.updateUpdate, .insertInsert, .deleteUpdate])
        #expect(repointed > 60)
        #expect(superseded > 60)
        #expect(resurrected > 60)
        #expect(returningLosers > 3, "losing writes that win again once the winner is seen")
        #expect(ownBases > 60, "rows with per-column base versions")
        #expect(offline > 60, "replicas that missed the seeder's updates")
        #expect(seederAhead > 60, "scenarios whose seeder's stamps are in the replicas' range")
    }
}
