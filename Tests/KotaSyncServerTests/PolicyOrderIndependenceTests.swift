import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite
import KotaSyncTesting
import Testing

@testable import KotaSyncServer

/// Random changesets from 2–5 replicas of different OPDs, merged by the real store in several
/// arrival orders, under every policy at once (each column and table of ``PolicyBench`` has its
/// own): the master's rows and the standing conflict records must not depend on the order.
///
/// `manual` promises something else — the master keeps what it held first — so for its column
/// the check is that every concurrent value is either the master's or waiting in an `open`
/// record, exactly one is the master's, and the set of values involved is the same in every order.
@Suite("Policy order independence")
struct PolicyOrderIndependenceTests {
    typealias Change = PolicyBench.Change

    static let rows: [(table: String, id: String)] = [
        ("items", "i1"), ("items", "i2"), ("uw", "r1"), ("uw", "r2"), ("dw", "r1"), ("dw", "r2"),
    ]
    static let itemColumns = ["lww_col", "server_col", "auth_col", "manual_col", "qty"]
    static let opds = ["dinkes", "pkm-a", "pkm-b"]

    struct Scenario {
        struct Replica {
            var opd: String
            var id: UUID
            /// Changesets, each a list of changes with one stamp.
            var changesets: [(changes: [Change], stamp: UInt64)]
        }

        var replicas: [Replica]
    }

    static func generate(seed: UInt64, bases: [String: UInt64]) -> Scenario {
        var g = SplitMix64(seed: seed)
        let count = Int.random(in: 2...5, using: &g)
        var replicas: [Scenario.Replica] = []
        for r in 0..<count {
            var stamp = UInt64.random(in: 1_000...1_020, using: &g)
            var deleted = Set<String>()
            var changesets: [(changes: [Change], stamp: UInt64)] = []
            for _ in 0..<Int.random(in: 1...2, using: &g) {
                var changes: [Change] = []
                for _ in 0..<Int.random(in: 1...4, using: &g) {
                    let (table, id) = rows.randomElement(using: &g)!
                    let key = "\(table):\(id)"
                    guard !deleted.contains(key) else { continue }
                    let base = bases[key]!
                    if table != "items", Int.random(in: 0..<3, using: &g) == 0 {
                        deleted.insert(key)
                        changes.append(.delete(table, id, base: base))
                    } else if table == "items" {
                        var values: [String: SQLValue] = [:]
                        for column in itemColumns where Bool.random(using: &g) {
                            values[column] =
                                column == "qty"
                                ? .integer(Int64.random(in: 0...20, using: &g))
                                : .text("\(column.prefix(1))\(r)-\(Int.random(in: 0...2, using: &g))")
                        }
                        if values.isEmpty { values["lww_col"] = .text("l\(r)") }
                        changes.append(.update(table, id, values, base: base))
                    } else {
                        changes.append(.update(table, id, ["v": .text("v\(r)-\(changes.count)")], base: base))
                    }
                }
                // One change per row per changeset, as a client coalesces them.
                var seen = Set<String>()
                changes = changes.reversed().filter { seen.insert("\($0.table):\($0.id)").inserted }.reversed()
                if !changes.isEmpty { changesets.append((changes, stamp)) }
                stamp += UInt64.random(in: 1...5, using: &g)
            }
            replicas.append(
                Scenario.Replica(
                    opd: opds.randomElement(using: &g)!,
                    id: UUID(uuidString: String(format: "00000000-0000-4000-8000-%012d", r + 1))!,
                    changesets: changesets))
        }
        return Scenario(replicas: replicas.filter { !$0.changesets.isEmpty })
    }

    /// What must not depend on the order.
    struct Outcome: Equatable {
        var rows: [String: [String: SQLValue]]
        var records: Set<String>
        /// For the manual column, per row: every value involved, and how many wait.
        var manual: [String: (values: Set<String>, waiting: Int)]

        static func == (a: Outcome, b: Outcome) -> Bool {
            a.rows == b.rows && a.records == b.records
                && a.manual.mapValues { "\($0.values.sorted())/\($0.waiting)" }
                    == b.manual.mapValues { "\($0.values.sorted())/\($0.waiting)" }
        }
    }

    static func seed(_ bench: PolicyBench) async throws -> [String: UInt64] {
        var seeder = PolicyBench.Replica(opd: "pkm-a", id: UUID(uuidString: "5EED0000-0000-4000-8000-000000000000")!)
        var changes: [Change] = []
        for (table, id) in rows {
            changes.append(
                table == "items"
                    ? .upsert(
                        table, id,
                        [
                            "lww_col": .text("l"), "server_col": .text("s"), "auth_col": .text("a"),
                            "manual_col": .text("m"), "qty": .integer(10),
                        ])
                    : .upsert(table, id, ["v": .text("v")]))
        }
        try await seeder.push(bench, changes, stamp: 500)
        var bases: [String: UInt64] = [:]
        for (table, id) in rows { bases["\(table):\(id)"] = try await bench.version(table, id) }
        return bases
    }

    static func run(_ scenario: Scenario, order: [Int], on backend: MasterBackend) async throws -> Outcome {
        try await PolicyBench.with(backend, "order") { bench in try await run(scenario, order: order, on: bench) }
    }

    static func run(_ scenario: Scenario, order: [Int], on bench: PolicyBench) async throws -> Outcome {
        _ = try await seed(bench)
        var replicas = scenario.replicas.map { PolicyBench.Replica(opd: $0.opd, id: $0.id) }
        var next = Array(repeating: 0, count: replicas.count)
        for r in order {
            let (changes, stamp) = scenario.replicas[r].changesets[next[r]]
            next[r] += 1
            try await replicas[r].push(bench, changes, stamp: stamp)
        }
        var outcome = Outcome(rows: [:], records: [], manual: [:])
        for (table, id) in rows {
            if var row = try await bench.row(table, id) {
                row["manual_col"] = nil
                outcome.rows["\(table):\(id)"] = row
            }
        }
        let names = Dictionary(uniqueKeysWithValues: scenario.replicas.enumerated().map { ($1.id, "R\($0)") })
        func who(_ side: ConflictReport.Side?) -> String { side.map { names[$0.replicaId] ?? $0.opd } ?? "-" }
        for record in try await bench.records() where record.status == "auto" || record.status == "open" {
            guard case .text(let id) = record.primaryKey.first else { continue }
            let key = "\(record.table):\(id)"
            if record.policy == "manual", record.column != nil {
                var entry = outcome.manual[key] ?? (values: [], waiting: 0)
                entry.values.insert(who(record.winner) + "=" + (record.winner?.value?.description ?? "-"))
                entry.values.insert(who(record.loser) + "=" + (record.loser?.value?.description ?? "-"))
                entry.waiting += 1
                outcome.manual[key] = entry
                continue
            }
            // Additive merges are recorded for review, in arrival order; their result is in the rows.
            if record.policy == "additive" { continue }
            outcome.records.insert(
                [
                    key, record.column ?? "-", record.kind.rawValue, record.policy, record.status,
                    who(record.loser), record.loser?.value?.description ?? "-", who(record.winner),
                    record.winner?.value?.description ?? "-",
                ].joined(separator: " "))
        }
        // The manual column's master value must be one of the values involved.
        for (key, entry) in outcome.manual {
            let parts = key.split(separator: ":")
            let value = try await bench.value(String(parts[0]), String(parts[1]), "manual_col")
            #expect(
                entry.values.contains { $0.hasSuffix("=" + (value?.description ?? "-")) },
                "manual: the master holds one of the concurrent values")
        }
        return outcome
    }

    static func randomOrder(_ counts: [Int], using g: inout SplitMix64) -> [Int] {
        var left = counts
        var order: [Int] = []
        while left.contains(where: { $0 > 0 }) {
            let choices = left.indices.filter { left[$0] > 0 }
            let r = choices.randomElement(using: &g)!
            left[r] -= 1
            order.append(r)
        }
        return order
    }

    /// Scenarios per backend: PostgreSQL makes a database per order, so it checks fewer.
    static func scenarios(_ backend: MasterBackend) -> Int { backend == .sqlite ? 40 : 12 }

    @Test(arguments: MasterBackend.enabled)
    func mergedRowsAndStandingRecordsDoNotDependOnArrivalOrderUnderAnyPolicy(backend: MasterBackend) async throws {
        var checked = 0
        let bases = try await PolicyBench.with(backend, "bases") { try await Self.seed($0) }
        for seed in UInt64(0)..<UInt64(Self.scenarios(backend)) {
            let scenario = Self.generate(seed: seed, bases: bases)
            let counts = scenario.replicas.map(\.changesets.count)
            var g = SplitMix64(seed: seed &+ 1_000)
            var reference: (order: [Int], outcome: Outcome)?
            for _ in 0..<4 {
                let order = Self.randomOrder(counts, using: &g)
                let outcome = try await Self.run(scenario, order: order, on: backend)
                checked += 1
                guard let reference else {
                    reference = (order, outcome)
                    continue
                }
                #expect(
                    outcome == reference.outcome,
                    """
                    seed \(seed): order \(order) differs from \(reference.order)
                    rows: \(outcome.rows == reference.outcome.rows ? "same" : "\(outcome.rows) vs \(reference.outcome.rows)")
                    only in this order: \(outcome.records.subtracting(reference.outcome.records).sorted())
                    only in the first: \(reference.outcome.records.subtracting(outcome.records).sorted())
                    manual: \(outcome.manual.mapValues { "\($0)" }) vs \(reference.outcome.manual.mapValues { "\($0)" })
                    """)
            }
        }
        #expect(checked == 4 * Self.scenarios(backend))
    }
}
