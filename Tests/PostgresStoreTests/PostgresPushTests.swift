import Foundation
import KotaSyncCore
import KotaSyncTesting
import PostgresNIO
import Testing

@testable import KotaSyncServer

/// The merge on PostgreSQL: the same procedure as on SQLite over the PostgreSQL port, checked
/// against the SQLite master given the same pushes (a backend-neutral dump of both), and the
/// guarantees a push makes: exact values, one application per changeset, all or nothing, and
/// one merge at a time across servers.
@Suite(.postgres)
struct PostgresPushTests {
    func policyConfig() throws -> ServerConfig { try storeConfig(policyYAML) }

    // MARK: - Values

    @Test func pushedValuesOfEveryStorageClassArriveExactlyAsOnSQLite() async throws {
        let (sqlite, config) = try sqliteMaster(storeYAML)
        let table = try #require(config.tables.first { $0.name == "vals" })
        var changes: [TestReplica.Change] = []
        for (column, values) in PostgresValueMappingTests.cases {
            for (n, value) in values.enumerated() {
                changes.append(.upsert("vals", "\(column)-\(n)", [column: value]))
            }
        }
        var replica = TestReplica(opd: "pkm-a")
        let changeset = replica.changeset(changes, stamp: 1_000, config: config)
        try await withStore(config: config) { store in
            let postgres = MergeBackend.postgres(store)
            let reply = try await postgres.reply(changeset, from: replica.device)
            let sqliteReply = try await MergeBackend.sqlite(sqlite).reply(changeset, from: replica.device)
            #expect(reply.applied == changes.count)
            #expect(reply == sqliteReply)
            let pg = try await postgres.dump()
            let lite = try await MergeBackend.sqlite(sqlite).dump()
            #expect(pg.tables["vals"]?.count == changes.count)
            #expect(pg == lite)
            // And as pushed: each value in its column (after the column's affinity), NULL elsewhere.
            let c = { (name: String) in table.columns.firstIndex { $0.name == name }! }
            for row in pg.tables["vals"] ?? [] {
                guard case .text(let id) = row[0] else { continue }
                let parts = id.split(separator: "-")
                let column = String(parts[0])
                let value = PostgresValueMappingTests.cases.first { $0.column == column }!.values[Int(parts[1])!]
                #expect(row[1 + c(column)] == table.columns[c(column)].affinity.stored(value))
            }
        }
    }

    /// A push read again from its bytes as it is merged (a request body, an upload), longer
    /// than one window of keys, merges on PostgreSQL as the decoded push does on SQLite.
    @Test func aStreamedPushOfSeveralWindowsMergesAsTheDecodedOneOnSQLite() async throws {
        let (sqlite, config) = try sqliteMaster(policyYAML)
        var a = TestReplica(opd: "pkm-a")
        var b = TestReplica(opd: "pkm-b")
        let count = PostgresMergeStore.chunk * 2 + 37
        let first = a.changeset(
            stride(from: 0, to: count, by: 50).map {
                .upsert("items", "i\($0)", ["lww_col": .text("a\($0)"), "qty": .integer(1)])
            },
            stamp: 1_000, config: config)
        let second = b.changeset(
            (0..<count).map { .upsert("items", "i\($0)", ["lww_col": .text("b\($0)"), "qty": .integer(2)]) },
            stamp: 2_000, config: config)
        try await withStore(config: config) { store in
            _ = try await MergeBackend.postgres(store).reply(first, from: a.device)
            _ = try await MergeBackend.sqlite(sqlite).reply(first, from: a.device)
            let checked = try CheckedPush(
                ChangesetCodec.encode(second), limits: config.limits.decodeLimits, schema: config.tables)
            let streamed = try await store.push(checked, from: b.device)
            let decoded = try await MergeBackend.sqlite(sqlite).reply(second, from: b.device)
            let reply = try ProtocolJSON.decoder().decode(PushReply.self, from: streamed.reply)
            #expect(reply.applied == count && !reply.conflicts.isEmpty)
            #expect(MasterDump.timelessReply(reply) == MasterDump.timelessReply(decoded))
            #expect(try await MergeBackend.postgres(store).dump() == (try await MergeBackend.sqlite(sqlite).dump()))
        }
    }

    /// Changes whose base is older than their rows' versions record conflicts that take their
    /// base values from the history. Over several windows of one push, rows changed twice in it
    /// among them, PostgreSQL gives the records SQLite gives — and reads each window's history
    /// ahead in a statement per table, not a statement per record.
    @Test func conflictsWithOlderBasesTakeTheirBasesFromTheHistoryReadPerWindowNotPerRecord() async throws {
        let (sqlite, config) = try sqliteMaster(policyYAML)
        var a = TestReplica(opd: "pkm-a")
        var b = TestReplica(opd: "pkm-b")
        var c = TestReplica(opd: "pkm-a")
        let count = PostgresMergeStore.chunk * 2 + 37
        // a makes the rows (versions 1...count), b changes each once after seeing a's version,
        // and c changes them from a's versions, unaware of b (some twice, in a later window).
        let first = a.changeset(
            (0..<count).map { .upsert("items", "i\($0)", ["lww_col": .text("a\($0)"), "qty": .integer(1)]) },
            stamp: 1_000, config: config)
        let second = b.changeset(
            (0..<count).map { .update("items", "i\($0)", ["lww_col": .text("b\($0)")], base: UInt64($0 + 1)) },
            stamp: 2_000, config: config)
        let third = c.changeset(
            (0..<count).map { .update("items", "i\($0)", ["lww_col": .text("c\($0)")], base: UInt64($0 + 1)) }
                + stride(from: 0, to: count, by: 7).map {
                    .update("items", "i\($0)", ["lww_col": .text("d\($0)"), "qty": .integer(3)], base: UInt64($0 + 1))
                },
            stamp: 1_500, config: config)
        try await withStore(config: config) { store in
            let postgres = MergeBackend.postgres(store)
            for (changeset, device) in [(first, a.device), (second, b.device)] {
                _ = try await postgres.reply(changeset, from: device)
                _ = try await MergeBackend.sqlite(sqlite).reply(changeset, from: device)
            }
            let before = store.master.blockingStatements.total
            let reply = try await postgres.reply(third, from: c.device)
            let statements = store.master.blockingStatements.total - before
            let lite = try await MergeBackend.sqlite(sqlite).reply(third, from: c.device)
            #expect(MasterDump.timelessReply(reply) == MasterDump.timelessReply(lite))
            #expect(try await postgres.dump() == (try await MergeBackend.sqlite(sqlite).dump()))
            // Every record names a's value, the one c's change was based on, as its base.
            let based = reply.conflicts.filter { $0.column == "lww_col" }
            #expect(based.count >= count)
            for record in based {
                guard case .text(let id) = record.primaryKey[0] else { continue }
                #expect(record.base == .text("a" + id.dropFirst()))
            }
            #expect(statements < count / 4, "\(statements) statements for \(based.count) records")
        }
    }

    // MARK: - Replays and refusals

    @Test func aReplayedChangesetGetsItsStoredReplyThroughEitherServerAndNothingTwice() async throws {
        let config = try policyConfig()
        try await withStores(2, config: config) { stores in
            let (first, second) = (MergeBackend.postgres(stores[0]), MergeBackend.postgres(stores[1]))
            var replica = TestReplica(opd: "pkm-a")
            let changeset = replica.changeset(
                [
                    .upsert("items", "k1", ["qty": .integer(5), "lww_col": .text("a")]),
                    .upsert("marks", "m1", ["n": .integer(1)]),
                ],
                stamp: 1_000, config: config)
            let original = try await first.push(changeset, from: replica.device)
            #expect(!original.replayed)
            let before = try await first.dump()
            let again = try await first.push(changeset, from: replica.device)
            let elsewhere = try await second.push(changeset, from: replica.device)
            #expect(again.replayed && elsewhere.replayed)
            #expect(again.reply == original.reply && elsewhere.reply == original.reply)
            #expect(try await first.dump() == before)
            // Another OPD may not even see the reply.
            await #expect(throws: SyncError.self) {
                _ = try await second.push(changeset, from: Device(tokenID: "t-b", opd: "pkm-b"))
            }
        }
    }

    @Test func aRefusedPushLeavesNothingAndTheNextPushOnTheSameStoreWorks() async throws {
        let config = try policyConfig()
        try await withStore(config: config) { store in
            let master = MergeBackend.postgres(store)
            var replica = TestReplica(opd: "pkm-a")
            // The second row creates a patient without its NOT NULL name: the whole push is refused.
            let bad = replica.changeset(
                [
                    .upsert("patients", "p1", ["nik": .text("1"), "name": .text("Ani")]),
                    .upsert("patients", "p2", ["nik": .text("2")]),
                ],
                stamp: 1_000, config: config)
            let error = await #expect(throws: SyncError.self) { _ = try await master.push(bad, from: replica.device) }
            #expect(error?.code == .constraintViolation)
            let empty = try await master.dump()
            #expect(empty.tables.values.allSatisfy(\.isEmpty) && empty.heads.isEmpty && empty.history.isEmpty)
            let replicas = try await store.client.query("SELECT count(*) FROM kotasync.replicas", logger: store.logger)
            for try await count in replicas.decode(Int64.self) { #expect(count == 0) }

            let good = replica.changeset(
                [.upsert("patients", "p1", ["nik": .text("1"), "name": .text("Ani")])], stamp: 2_000, config: config)
            let reply = try await master.reply(good, from: replica.device)
            #expect(reply.applied == 1 && reply.masterSequence == 1)
            #expect(try await master.dump().tables["patients"] == [[.text("p1"), .text("1"), .text("Ani")]])
        }
    }

    // MARK: - Quarantines and holds

    /// A quarantined row waits for a reviewer (it is not released by the other row moving), and
    /// the reviewer's decision merges it.
    @Test func aUniqueCollisionIsQuarantinedAndReleasedByAReviewer() async throws {
        let (sqlite, config) = try sqliteMaster(policyYAML)
        try await withStore(config: config) { store in
            var a = TestReplica(opd: "pkm-a")
            var b = TestReplica(opd: "pkm-b")
            let pushes = [
                (
                    a.device,
                    a.changeset(
                        [.upsert("patients", "p1", ["nik": .text("N1"), "name": .text("Ani")])], stamp: 1_000,
                        config: config)
                ),
                (
                    b.device,
                    b.changeset(
                        [.upsert("patients", "p2", ["nik": .text("N1"), "name": .text("Budi")])], stamp: 2_000,
                        config: config)
                ),
                (
                    a.device,
                    a.changeset(
                        [.upsert("patients", "p1", ["nik": .text("N2"), "name": .text("Ani")])], stamp: 3_000,
                        config: config)
                ),
            ]
            var replies: [PushReply] = []
            for master in [MergeBackend.postgres(store), .sqlite(sqlite)] {
                for (device, changeset) in pushes { replies.append(try await master.reply(changeset, from: device)) }
            }
            let quarantine = try #require(replies[1].conflicts.first)
            #expect(quarantine.kind == .unique && quarantine.status == "open")
            #expect(quarantine.related == RowReference(table: "patients", primaryKey: [.text("p1")]))
            let waiting = try await MergeBackend.postgres(store).dump()
            #expect(waiting.tables["patients"] == [[.text("p1"), .text("N2"), .text("Ani")]])
            #expect(waiting.conflicts.first { $0.id == quarantine.id }?.status == "open")
            for master in [MergeBackend.postgres(store), .sqlite(sqlite)] {
                let decided = try await master.resolveConflict(id: quarantine.id, ResolveRequest(take: .remote))
                #expect(decided.status == "resolved")
            }
            let pg = try await MergeBackend.postgres(store).dump()
            #expect(
                pg.tables["patients"] == [
                    [.text("p1"), .text("N2"), .text("Ani")], [.text("p2"), .text("N1"), .text("Budi")],
                ])
            #expect(pg == (try await MergeBackend.sqlite(sqlite).dump()))
            #expect(Array(replies[0..<3].map(MasterDump.timelessReply)) == replies[3...].map(MasterDump.timelessReply))
        }
    }

    @Test func aChildWaitsForItsParentAndIsMergedWhenItArrives() async throws {
        let (sqlite, config) = try sqliteMaster(policyYAML)
        try await withStore(config: config) { store in
            var a = TestReplica(opd: "pkm-a")
            var b = TestReplica(opd: "pkm-b")
            let pushes = [
                (
                    a.device,
                    a.changeset(
                        [.upsert("visits", "v1", ["patient_id": .text("p9"), "note": .text("demam")])], stamp: 1_000,
                        config: config)
                ),
                (
                    b.device,
                    b.changeset(
                        [.upsert("patients", "p9", ["nik": .text("9"), "name": .text("Citra")])], stamp: 2_000,
                        config: config)
                ),
            ]
            for master in [MergeBackend.postgres(store), .sqlite(sqlite)] {
                let held = try await master.reply(pushes[0].1, from: pushes[0].0)
                #expect(held.conflicts.map(\.kind) == [.foreignKey] && held.conflicts.first?.status == "held")
                #expect(try await master.dump().tables["visits", default: []].isEmpty)
                _ = try await master.reply(pushes[1].1, from: pushes[1].0)
                #expect(try await master.dump().tables["visits"] == [[.text("v1"), .text("p9"), .text("demam")]])
            }
            #expect(try await MergeBackend.postgres(store).dump() == (try await MergeBackend.sqlite(sqlite).dump()))
        }
    }

    /// UNIQUE values moving between rows inside one push — one row moving off a value another
    /// then takes, a swap, a delete freeing a value — quarantine exactly what SQLite quarantines
    /// and never pass through a duplicate on the way (which would abort PostgreSQL's transaction).
    @Test func uniqueValuesMovingBetweenRowsInOnePushMergeAsOnSQLite() async throws {
        let (sqlite, config) = try sqliteMaster(policyYAML)
        var a = TestReplica(opd: "pkm-a")
        func patient(_ id: String, _ nik: String) -> TestReplica.Change {
            .upsert("patients", id, ["nik": .text(nik), "name": .text(id)])
        }
        let pushes = [
            a.changeset([patient("p1", "N1"), patient("p2", "N2"), patient("p3", "N3")], stamp: 1_000, config: config),
            // p1 moves off N1, p2 takes it; p3 and p2 then swap N3 and N1 (a collision for one of them).
            a.changeset(
                [patient("p1", "N4"), patient("p2", "N1"), patient("p3", "N1"), patient("p2", "N3")], stamp: 2_000,
                config: config),
            // A delete frees N4 for a new row in the same push.
            a.changeset(
                [.delete("patients", "p1", base: 4), patient("p5", "N4"), patient("p6", "N4")], stamp: 3_000,
                config: config),
        ]
        try await withStore(config: config) { store in
            for changeset in pushes {
                let pg = try await Self.outcome {
                    try await MergeBackend.postgres(store).reply(changeset, from: a.device)
                }
                let lite = try await Self.outcome {
                    try await MergeBackend.sqlite(sqlite).reply(changeset, from: a.device)
                }
                #expect(pg == lite)
            }
            let pg = try await MergeBackend.postgres(store).dump()
            #expect(pg == (try await MergeBackend.sqlite(sqlite).dump()))
            #expect(pg.conflicts.contains { $0.kind == .unique })
        }
    }

    // MARK: - Every policy, against SQLite

    /// Random pushes under every policy — conflicting updates, deletes against updates, UNIQUE
    /// collisions, children ahead of parents — give PostgreSQL the master SQLite gives: the same
    /// rows, versions, clocks, history, records and replies.
    @Test(arguments: 1...8)
    func randomPushesUnderEveryPolicyGiveTheMasterSQLiteGives(seed: UInt64) async throws {
        let (sqlite, config) = try sqliteMaster(policyYAML)
        var rng = SeededGenerator(state: seed)
        var replicas = [
            TestReplica(opd: "pkm-a"), TestReplica(opd: "pkm-b"), TestReplica(opd: "dinkes"), TestReplica(opd: "pkm-a"),
        ]
        var pushes: [(Device, Changeset)] = []
        for n in 0..<40 {
            let r = Int.random(in: 0..<replicas.count, using: &rng)
            let changes = randomChanges(&rng, count: Int.random(in: 1...5, using: &rng))
            let stamp = UInt64.random(in: 1_000..<1_100, using: &rng) + UInt64(n)
            pushes.append((replicas[r].device, replicas[r].changeset(changes, stamp: stamp, config: config)))
        }
        try await withStore(config: config) { store in
            for (device, changeset) in pushes {
                let pg = try await Self.outcome {
                    try await MergeBackend.postgres(store).reply(changeset, from: device)
                }
                let lite = try await Self.outcome {
                    try await MergeBackend.sqlite(sqlite).reply(changeset, from: device)
                }
                #expect(pg == lite)
            }
            let pg = try await MergeBackend.postgres(store).dump()
            let lite = try await MergeBackend.sqlite(sqlite).dump()
            #expect(pg.tables == lite.tables)
            #expect(pg.heads == lite.heads)
            #expect(pg.history == lite.history)
            #expect(pg.conflicts == lite.conflicts)
            #expect(!pg.conflicts.isEmpty)
        }
    }

    /// A push's reply without its times, or the code of its refusal.
    static func outcome(_ push: () async throws -> PushReply) async throws -> String {
        do {
            let reply = MasterDump.timelessReply(try await push())
            return String(decoding: try ProtocolJSON.encoder().encode(reply), as: UTF8.self)
        } catch let error as SyncError {
            return "refused: \(error.code.rawValue)"
        }
    }

    // MARK: - Several servers

    /// Two servers merging conflicting pushes to the same rows at the same time end in the master
    /// one server gives when it merges the same pushes in the order they committed, and their
    /// versions are distinct and gapless.
    @Test func twoServersMergingConflictingPushesAtOnceGiveTheMasterOneServerGives() async throws {
        let (sqlite, config) = try sqliteMaster(policyYAML)
        var rng = SeededGenerator(state: 42)
        var replicas = (0..<6).map { TestReplica(opd: ["pkm-a", "pkm-b", "dinkes"][$0 % 3]) }
        // Per replica, its pushes in sequence order; each writes a new `marks` row, so that every
        // push takes at least one version and the commit order can be read from the replies.
        var plans: [[(Device, Changeset)]] = []
        var mark = 0
        for r in replicas.indices {
            var plan: [(Device, Changeset)] = []
            for _ in 0..<6 {
                mark += 1
                let changes =
                    randomChanges(&rng, count: Int.random(in: 1...4, using: &rng))
                    + [.upsert("marks", "m\(mark)", ["n": .integer(Int64(mark))])]
                let stamp = UInt64.random(in: 1_000..<1_050, using: &rng)
                plan.append((replicas[r].device, replicas[r].changeset(changes, stamp: stamp, config: config)))
            }
            plans.append(plan)
        }
        try await withStores(2, config: config) { stores in
            let committed = try await withThrowingTaskGroup(of: [(UInt64, Device, Changeset)].self) { group in
                for (r, plan) in plans.enumerated() {
                    let master = MergeBackend.postgres(stores[r % 2])
                    group.addTask {
                        var done: [(UInt64, Device, Changeset)] = []
                        for (device, changeset) in plan {
                            let reply = try await master.reply(changeset, from: device)
                            done.append((reply.masterSequence, device, changeset))
                        }
                        return done
                    }
                }
                var all: [(UInt64, Device, Changeset)] = []
                for try await done in group { all += done }
                return all.sorted { $0.0 < $1.0 }
            }
            // Every push took versions of its own.
            #expect(Set(committed.map(\.0)).count == committed.count)
            for (_, device, changeset) in committed {
                _ = try await MergeBackend.sqlite(sqlite).reply(changeset, from: device)
            }
            let pg = try await MergeBackend.postgres(stores[0]).dump()
            let lite = try await MergeBackend.sqlite(sqlite).dump()
            #expect(pg.tables == lite.tables)
            #expect(pg.heads == lite.heads)
            #expect(pg.history == lite.history)
            #expect(pg.conflicts == lite.conflicts)
            #expect(pg.versions == lite.versions)
            #expect(pg.tables["marks"]?.count == mark)
        }
    }

    // MARK: - Conflicts of a replica

    @Test func aDeviceListsTheConflictsOfItsReplicaAsOnSQLite() async throws {
        let (sqlite, config) = try sqliteMaster(policyYAML)
        try await withStore(config: config) { store in
            var a = TestReplica(opd: "pkm-a")
            var b = TestReplica(opd: "pkm-b")
            let pushes = [
                (
                    a.device,
                    a.changeset(
                        [.upsert("items", "k1", ["manual_col": .text("a"), "lww_col": .text("a")])], stamp: 1_000,
                        config: config)
                ),
                (
                    b.device,
                    b.changeset(
                        [.upsert("items", "k1", ["manual_col": .text("b"), "lww_col": .text("b")])], stamp: 2_000,
                        config: config)
                ),
            ]
            for master in [MergeBackend.postgres(store), .sqlite(sqlite)] {
                for (device, changeset) in pushes { _ = try await master.reply(changeset, from: device) }
            }
            let pg = try await MergeBackend.postgres(store).conflicts(involving: a.id, of: a.device)
            let lite = try await MergeBackend.sqlite(sqlite).conflicts(involving: a.id, of: a.device)
            #expect(pg.conflicts.count == 2)
            #expect(pg.conflicts.map(MasterDump.timeless) == lite.conflicts.map(MasterDump.timeless))
            // Another OPD's device learns nothing of a's replica.
            let other = try await MergeBackend.postgres(store).conflicts(involving: a.id, of: b.device)
            #expect(other.conflicts.isEmpty && other.next == nil)
        }
    }
}

extension MasterDump {
    static func timelessReply(_ reply: PushReply) -> PushReply {
        var reply = reply
        // In id order: the merge reports re-pointed records in no particular order.
        reply.conflicts = reply.conflicts.map(timeless).sorted { $0.id < $1.id }
        return reply
    }
}
