import Foundation
import Testing

@testable import KotaSyncCore
@testable import KotaSyncServer

/// `MergeEngine.decide` case by case. Versions up to 5 are the seed (every replica saw them);
/// anything above 5 was merged after the replicas' snapshot.
@Suite("Merge engine")
struct MergeEngineTests {
    static func decide(
        _ current: RowClocks?, _ change: IncomingChange, losers: [ConflictRecord] = [], newVersion: UInt64 = 10
    ) -> MergeDecision {
        MergeEngine.decide(current: current, losers: losers, change: change, columnCount: 3, newVersion: newVersion)
    }

    /// The head `change` becomes when merged at `version`.
    static func mine(_ change: IncomingChange, _ version: UInt64 = 10) -> Head {
        Head(
            writer: change.writer, version: version, stamp: change.stamp,
            isInsert: change.operation == .upsert && change.rowBase == 0, isDelete: change.operation == .delete)
    }

    static func record(_ column: Int?, _ kind: ConflictReport.Kind, loser: Head, winner: Head) -> ConflictRecord {
        ConflictRecord(
            column: column, kind: kind, loser: loser, winner: winner, policy: column == nil ? "update-wins" : "lww")
    }

    /// The seeded row after `writer` updated `columns` at `version` (a write every replica missed).
    static func updated(by writer: Writer, _ columns: [Int], version: UInt64 = 8, stamp: UInt64) -> RowClocks {
        var row = seededRow()
        let h = head(version, stamp, writer)
        for c in columns { row.columns[c] = h }
        row.existence = [h]
        row.version = version
        return row
    }

    // MARK: - Clean writes

    @Test func updateFromTheHeldVersionAppliesCleanly() {
        let ch = change(.update, by: W.a, stamp: 100, base: 5, columns: [1])
        let d = Self.decide(seededRow(), ch)
        #expect(d.effect == .update)
        #expect(d.values == [1: .incoming])
        #expect(d.records.isEmpty)
        var expected = seededRow()
        expected.version = 10
        expected.columns[1] = Self.mine(ch)
        expected.existence = [Self.mine(ch)]
        #expect(d.clocks == expected)
    }

    @Test func staleBaseIsCleanWhenTheColumnDidNotChangeSince() {
        // The replica last saw version 3; columns 0 and 1 were written at 1 and 3 and not since.
        let d = Self.decide(seededRow(), change(.update, by: W.a, stamp: 1, base: 3, columns: [0, 1]))
        #expect(d.records.isEmpty)
        #expect(d.values == [0: .incoming, 1: .incoming])
        #expect(d.effect == .update)
    }

    @Test func staleBaseConflictsWithALaterWriteOfTheColumn() {
        // Column 2 was written at 5, after the replica's base 3, with a higher stamp.
        let ch = change(.update, by: W.a, stamp: 1, base: 3, columns: [2])
        let d = Self.decide(seededRow(), ch)
        #expect(d.records == [Self.record(2, .updateUpdate, loser: Self.mine(ch), winner: head(5, 30, .master))])
        #expect(d.values.isEmpty)
        #expect(d.effect == .none)
        #expect(d.clocks?.version == 10, "a lost change still moves the row so its replica pulls the winner")
    }

    @Test func concurrentEditsToDifferentColumnsBothSurvive() {
        let row = Self.updated(by: W.b, [0], stamp: 500)
        let ch = change(.update, by: W.a, stamp: 100, base: 5, columns: [1])
        let d = Self.decide(row, ch)
        #expect(d.effect == .update)
        #expect(d.records.isEmpty)
        #expect(d.values == [1: .incoming])
        #expect(d.clocks?.columns[0] == head(8, 500, W.b))
        #expect(d.clocks?.columns[1] == Self.mine(ch))
        #expect(d.clocks?.existence == [head(8, 500, W.b), Self.mine(ch)])
    }

    @Test func sameReplicasLaterChangeIsNeverAConflict() {
        let row = Self.updated(by: W.a, [2], stamp: 900)
        // Base 5, lower stamp than its own earlier write: still its own write, so clean.
        let ch = change(.update, by: W.a, stamp: 100, base: 5, columns: [2])
        let d = Self.decide(row, ch)
        #expect(d.records.isEmpty)
        #expect(d.values == [2: .incoming])
        #expect(d.effect == .update)
        #expect(d.clocks?.columns[2] == Self.mine(ch))
        #expect(d.clocks?.existence == [Self.mine(ch)])
    }

    @Test func perColumnBaseDecidesForItsColumn() {
        let row = Self.updated(by: W.b, [0, 1], stamp: 50)
        // Row base 8 (pulled B's write), but column 1 kept a pending edit based on version 5.
        let ch = change(.update, by: W.a, stamp: 40, base: 8, columns: [0, 1], bases: [1: 5])
        let d = Self.decide(row, ch)
        #expect(d.values == [0: .incoming])
        #expect(d.records == [Self.record(1, .updateUpdate, loser: Self.mine(ch), winner: head(8, 50, W.b))])
        #expect(d.clocks?.existence == [Self.mine(ch)], "the row base saw B's write")
    }

    // MARK: - Concurrent writes to one column

    struct SameColumnCase: Sendable, CustomTestStringConvertible {
        var name: String
        var held: Head
        var writer: Writer
        var stamp: UInt64
        var incomingWins: Bool
        var testDescription: String { name }
    }

    static let sameColumnCases: [SameColumnCase] = [
        .init(name: "higher incoming stamp wins", held: head(8, 200, W.b), writer: W.a, stamp: 300, incomingWins: true),
        .init(
            name: "lower incoming stamp loses", held: head(8, 200, W.b), writer: W.a, stamp: 100, incomingWins: false),
        .init(
            name: "tie: higher incoming id wins", held: head(8, 200, W.a), writer: W.b, stamp: 200, incomingWins: true),
        .init(
            name: "tie: lower incoming id loses", held: head(8, 200, W.b), writer: W.a, stamp: 200, incomingWins: false),
        .init(
            name: "tie: id decides, not number", held: head(8, 200, W.z), writer: W.a, stamp: 200, incomingWins: true),
        .init(
            name: "tie: id decides, not number (other way)", held: head(8, 200, W.a), writer: W.z, stamp: 200,
            incomingWins: false),
        .init(
            name: "stamps compare as unsigned", held: head(8, 1 << 63, W.b), writer: W.a, stamp: (1 << 63) - 1,
            incomingWins: false),
    ]

    @Test("Same column concurrently: higher stamp wins, then higher replica id", arguments: sameColumnCases)
    func sameColumnConcurrentEdits(_ c: SameColumnCase) {
        var row = seededRow()
        row.columns[0] = c.held
        row.existence = [c.held]
        row.version = 8
        let ch = change(.update, by: c.writer, stamp: c.stamp, base: 5, columns: [0])
        let d = Self.decide(row, ch)
        #expect(d.clocks?.version == 10, "a lost change still moves the row so its replica pulls the winner")
        #expect(d.clocks?.existence == [c.held, Self.mine(ch)])
        if c.incomingWins {
            #expect(d.records == [Self.record(0, .updateUpdate, loser: c.held, winner: Self.mine(ch))])
            #expect(d.values == [0: .incoming])
            #expect(d.effect == .update)
            #expect(d.clocks?.columns[0] == Self.mine(ch))
        } else {
            #expect(d.records == [Self.record(0, .updateUpdate, loser: Self.mine(ch), winner: c.held)])
            #expect(d.values.isEmpty)
            #expect(d.effect == .none)
            #expect(d.clocks?.columns[0] == c.held)
        }
    }

    @Test func winningAndLosingColumnsInOneChange() {
        var row = seededRow()
        row.columns[0] = head(8, 100, W.b)
        row.columns[1] = head(9, 900, W.c)
        row.existence = [head(8, 100, W.b), head(9, 900, W.c)]
        row.version = 9
        let ch = change(.update, by: W.a, stamp: 500, base: 5, columns: [0, 1, 2])
        let d = Self.decide(row, ch)
        #expect(d.values == [0: .incoming, 2: .incoming])
        #expect(
            d.records == [
                Self.record(0, .updateUpdate, loser: head(8, 100, W.b), winner: Self.mine(ch)),
                Self.record(1, .updateUpdate, loser: Self.mine(ch), winner: head(9, 900, W.c)),
            ])
        #expect(d.effect == .update)
    }

    // MARK: - Inserts

    @Test func insertOnMissingRowCreatesIt() {
        let ch = change(.upsert, by: W.a, stamp: 100, base: 0, columns: [0, 1, 2])
        let d = Self.decide(nil, ch)
        #expect(d.effect == .create)
        #expect(d.values == [0: .incoming, 1: .incoming, 2: .incoming])
        #expect(d.records.isEmpty)
        #expect(Self.mine(ch).isInsert)
        #expect(
            d.clocks
                == RowClocks(
                    version: 10, columns: Array(repeating: Self.mine(ch), count: 3), existence: [Self.mine(ch)])
        )
    }

    static let insertedByB = RowClocks(
        version: 8, columns: Array(repeating: head(8, 200, W.b, insert: true), count: 3),
        existence: [head(8, 200, W.b, insert: true)])

    @Test func insertAgainstAnotherReplicasInsertIsInsertInsert() {
        let bInsert = head(8, 200, W.b, insert: true)
        let won = change(.upsert, by: W.a, stamp: 300, base: 0, columns: [0, 1, 2])
        let d = Self.decide(Self.insertedByB, won)
        #expect(d.records == (0..<3).map { Self.record($0, .insertInsert, loser: bInsert, winner: Self.mine(won)) })
        #expect(d.values == [0: .incoming, 1: .incoming, 2: .incoming])
        #expect(d.effect == .update)
        #expect(d.clocks?.existence == [bInsert, Self.mine(won)])

        let lostChange = change(.upsert, by: W.a, stamp: 100, base: 0, columns: [0, 1, 2])
        let lost = Self.decide(Self.insertedByB, lostChange)
        #expect(
            lost.records
                == (0..<3).map { Self.record($0, .insertInsert, loser: Self.mine(lostChange), winner: bInsert) })
        #expect(lost.values.isEmpty)
        #expect(lost.effect == .none)
    }

    /// A inserted the row (v6) and, before pulling, updated c2 (v7); B's insert arrives after.
    /// Columns 0 and 1 are insert against insert; column 2 is A's update against B's insert.
    static let insertedAndUpdatedByA = RowClocks(
        version: 7, columns: [head(6, 100, W.a, insert: true), head(6, 100, W.a, insert: true), head(7, 110, W.a)],
        existence: [head(7, 110, W.a)])

    @Test("The kind depends on both sides being inserts, not on which arrived last", arguments: [50, 500] as [UInt64])
    func insertInsertKindDependsOnBothSides(_ stamp: UInt64) {
        let ch = change(.upsert, by: W.b, stamp: stamp, base: 0, columns: [0, 1, 2])
        let d = Self.decide(Self.insertedAndUpdatedByA, ch)
        let kinds = Dictionary(uniqueKeysWithValues: d.records.map { ($0.column, $0.kind) })
        #expect(kinds == [0: .insertInsert, 1: .insertInsert, 2: .updateUpdate])
        #expect(d.records.allSatisfy { ($0.winner == Self.mine(ch)) == (stamp == 500) })

        // The same three changes with A's update arriving last: the same kinds.
        let aInsert = head(6, 100, W.a, insert: true)
        let bInsert = Head(writer: W.b, version: 7, stamp: HLC(rawValue: stamp), isInsert: true)
        let afterB = MergeEngine.decide(
            current: RowClocks(version: 6, columns: Array(repeating: aInsert, count: 3), existence: [aInsert]),
            losers: [], change: ch, columnCount: 3, newVersion: 7)
        let update = change(.update, by: W.a, stamp: 110, base: 0, columns: [2])
        let last = Self.decide(afterB.clocks, update, losers: afterB.records, newVersion: 8)
        let lastKinds = Dictionary(uniqueKeysWithValues: last.records.map { ($0.column, $0.kind) })
        #expect(lastKinds == [0: .insertInsert, 1: .insertInsert, 2: .updateUpdate])
        #expect(last.records.first { $0.column == 2 }?.loser.key == (stamp == 500 ? update : ch).stampKey)
        #expect(
            last.records.filter { $0.column != 2 }.allSatisfy {
                $0.loser.key == (stamp == 500 ? aInsert : bInsert).key
            })
    }

    @Test func upsertWithABaseIsUpdateUpdate() {
        let row = Self.updated(by: W.b, [0], stamp: 200)
        let d = Self.decide(row, change(.upsert, by: W.a, stamp: 300, base: 5, columns: [0, 1, 2]))
        #expect(d.records.map(\.kind) == [.updateUpdate])
        #expect(d.records.first?.loser == head(8, 200, W.b))
    }

    // MARK: - Deletes

    @Test func deleteThatSawEverythingDeletes() {
        let ch = change(.delete, by: W.a, stamp: 100, base: 5)
        let d = Self.decide(seededRow(), ch)
        #expect(d.effect == .delete)
        #expect(d.records.isEmpty)
        #expect(d.values.isEmpty)
        #expect(d.clocks?.existence == [Self.mine(ch)])
        #expect(d.clocks?.isDeleted == true)
        #expect(d.clocks?.version == 10)
        #expect(d.clocks?.columns == seededRow().columns)
    }

    @Test func deleteAfterOwnUpdateIsClean() {
        let row = Self.updated(by: W.a, [1], stamp: 50)
        let d = Self.decide(row, change(.delete, by: W.a, stamp: 60, base: 5))
        #expect(d.effect == .delete)
        #expect(d.records.isEmpty)
    }

    @Test func deleteRacingAnUpdateLosesAndMovesTheRow() {
        let row = Self.updated(by: W.b, [1], stamp: 50)
        // Even with a higher stamp: update wins.
        let ch = change(.delete, by: W.a, stamp: 9_999, base: 5)
        let d = Self.decide(row, ch)
        #expect(d.effect == .none)
        #expect(d.clocks?.version == 10)
        #expect(d.clocks?.isDeleted == false)
        #expect(d.clocks?.columns == row.columns)
        #expect(d.clocks?.existence == [head(8, 50, W.b), Self.mine(ch)])
        #expect(d.records == [Self.record(nil, .deleteUpdate, loser: Self.mine(ch), winner: head(8, 50, W.b))])
    }

    @Test func deleteLosingToSeveralUpdatesNamesTheStrongest() {
        var row = seededRow()
        row.existence = [head(7, 70, W.b), head(9, 90, W.c), head(8, 90, W.z)]
        row.version = 9
        let ch = change(.delete, by: W.a, stamp: 1, base: 5)
        let d = Self.decide(row, ch)
        // Stamps 90 tie; C's id is higher than Z's (Z's number is higher: it must not decide).
        #expect(d.records == [Self.record(nil, .deleteUpdate, loser: Self.mine(ch), winner: head(9, 90, W.c))])
    }

    @Test func deleteOfAMissingRowDoesNothing() {
        let d = Self.decide(nil, change(.delete, by: W.a, stamp: 1, base: 5))
        #expect(d == MergeDecision())
    }

    @Test func deleteLeavesTheColumnsHeadsAndTheirRecords() {
        // B's c0 write lost to C's; A saw both and deletes: the row goes, the column record stays.
        var row = seededRow()
        row.columns[0] = head(8, 300, W.c)
        row.existence = [head(7, 200, W.b), head(8, 300, W.c)]
        row.version = 8
        let lost = Self.record(0, .updateUpdate, loser: head(7, 200, W.b), winner: head(8, 300, W.c))
        let d = Self.decide(row, change(.delete, by: W.a, stamp: 400, base: 8), losers: [lost])
        #expect(d.effect == .delete)
        #expect(d.records == [lost])
        #expect(d.clocks?.columns == row.columns)
    }

    // MARK: - Tombstones

    static func tombstone(_ deletes: [Head], columns: [Head]? = nil, version: UInt64 = 8) -> RowClocks {
        RowClocks(version: version, columns: columns ?? seededRow().columns, existence: deletes)
    }

    @Test func updateOnAnUnseenTombstoneResurrectsAndRecordsDeleteUpdate() {
        let delete = head(8, 500, W.b, delete: true)
        let ch = change(.update, by: W.a, stamp: 100, base: 5, columns: [1])
        let d = Self.decide(Self.tombstone([delete]), ch)
        #expect(d.effect == .resurrect)
        #expect(d.values == [1: .incoming])
        #expect(d.records == [Self.record(nil, .deleteUpdate, loser: delete, winner: Self.mine(ch))])
        #expect(d.clocks?.isDeleted == false)
        #expect(d.clocks?.version == 10)
        #expect(d.clocks?.columns[1] == Self.mine(ch))
        #expect(d.clocks?.columns[0] == seededRow().columns[0])
        #expect(d.clocks?.existence == [delete, Self.mine(ch)])
    }

    /// C wrote c0 at 7; B saw it and deleted the row at 8. A, which saw neither, edits c0 and c1:
    /// c0 is compared with C's write as if the row had never been deleted.
    @Test(
        "A resurrecting update is compared per column with the winners from before the delete",
        arguments: [100, 1_000] as [UInt64])
    func resurrectingUpdateIsComparedPerColumn(_ stamp: UInt64) {
        let delete = head(8, 500, W.b, delete: true)
        let cWrite = head(7, 900, W.c)
        var columns = seededRow().columns
        columns[0] = cWrite
        let ch = change(.update, by: W.a, stamp: stamp, base: 5, columns: [0, 1])
        let d = Self.decide(Self.tombstone([delete], columns: columns), ch)
        #expect(d.effect == .resurrect)
        let deleteRecord = Self.record(nil, .deleteUpdate, loser: delete, winner: Self.mine(ch))
        if stamp > 900 {
            #expect(d.values == [0: .incoming, 1: .incoming])
            #expect(
                Set(d.records) == [Self.record(0, .updateUpdate, loser: cWrite, winner: Self.mine(ch)), deleteRecord])
            #expect(d.clocks?.columns[0] == Self.mine(ch))
        } else {
            #expect(d.values == [1: .incoming])
            #expect(
                Set(d.records) == [Self.record(0, .updateUpdate, loser: Self.mine(ch), winner: cWrite), deleteRecord])
            #expect(d.clocks?.columns[0] == cWrite)
        }
    }

    @Test func updateOnATombstoneRecordsEveryUnseenDelete() {
        let deletes = [head(7, 500, W.b, delete: true), head(8, 600, W.c, delete: true)]
        let ch = change(.upsert, by: W.a, stamp: 1, base: 5, columns: [0, 1, 2])
        let d = Self.decide(Self.tombstone(deletes), ch)
        #expect(d.records == deletes.map { Self.record(nil, .deleteUpdate, loser: $0, winner: Self.mine(ch)) })
        #expect(d.effect == .resurrect)
    }

    @Test func insertAfterASeenDeleteResurrectsWithoutConflict() {
        let d = Self.decide(
            Self.tombstone([head(8, 500, W.b, delete: true)]),
            change(.upsert, by: W.a, stamp: 1, base: 8, columns: [0, 1, 2]))
        #expect(d.effect == .resurrect)
        #expect(d.records.isEmpty)
        #expect(d.values == [0: .incoming, 1: .incoming, 2: .incoming])
    }

    @Test func twoConcurrentDeletesAgree() {
        let bDelete = head(8, 500, W.b, delete: true)
        let ch = change(.delete, by: W.a, stamp: 700, base: 5)
        let d = Self.decide(Self.tombstone([bDelete]), ch)
        #expect(d.effect == .none)
        #expect(d.records.isEmpty)
        #expect(d.values.isEmpty)
        #expect(d.clocks?.isDeleted == true)
        #expect(d.clocks?.existence == [bDelete, Self.mine(ch)])
    }

    @Test func aReplicasLaterDeleteReplacesItsEarlierOne() {
        let d = Self.decide(
            Self.tombstone([head(7, 500, W.b, delete: true), head(8, 600, W.a, delete: true)]),
            change(.delete, by: W.a, stamp: 800, base: 5))
        #expect(d.clocks?.existence == [head(7, 500, W.b, delete: true), head(10, 800, W.a, delete: true)])
        #expect(d.records.isEmpty)
    }

    // MARK: - Heads leaving and re-pointed records

    /// B's write of c0 (v8, stamp 200) beat A's (v7, stamp 100).
    static let aLostToB: (row: RowClocks, record: ConflictRecord) = {
        var row = seededRow()
        row.columns[0] = head(8, 200, W.b)
        row.existence = [head(7, 100, W.a), head(8, 200, W.b)]
        row.version = 8
        return (row, record(0, .updateUpdate, loser: head(7, 100, W.a), winner: head(8, 200, W.b)))
    }()

    @Test("A replica's later write removes its own earlier losing head", arguments: [150, 300] as [UInt64])
    func laterWriteOfTheLosingReplicaRemovesItsHead(_ stamp: UInt64) {
        let (row, lost) = Self.aLostToB
        let ch = change(.update, by: W.a, stamp: stamp, base: 5, columns: [0])
        let d = Self.decide(row, ch, losers: [lost])
        #expect(!d.records.map(\.key).contains(lost.key))
        if stamp > 200 {
            #expect(d.records == [Self.record(0, .updateUpdate, loser: head(8, 200, W.b), winner: Self.mine(ch))])
            #expect(d.values == [0: .incoming])
        } else {
            #expect(d.records == [Self.record(0, .updateUpdate, loser: Self.mine(ch), winner: head(8, 200, W.b))])
            #expect(d.values.isEmpty)
        }
        #expect(d.clocks?.existence == [head(8, 200, W.b), Self.mine(ch)])
    }

    @Test func aWinnerThatSawTheLosersWriteRemovesIt() {
        let (row, lost) = Self.aLostToB
        // C pulled version 8: it saw both A's and B's writes.
        let ch = change(.update, by: W.c, stamp: 50, base: 8, columns: [0])
        let d = Self.decide(row, ch, losers: [lost])
        #expect(d.records.isEmpty)
        #expect(d.values == [0: .incoming])
        #expect(d.clocks?.columns[0] == Self.mine(ch))
        #expect(d.clocks?.existence == [Self.mine(ch)])
    }

    @Test func aWriteThatSawOnlyTheLoserRemovesOnlyTheLoser() {
        let (row, lost) = Self.aLostToB
        // C pulled version 7: it saw A's write, not B's; B's higher stamp still wins.
        let ch = change(.update, by: W.c, stamp: 50, base: 7, columns: [0])
        let d = Self.decide(row, ch, losers: [lost])
        #expect(d.records == [Self.record(0, .updateUpdate, loser: Self.mine(ch), winner: head(8, 200, W.b))])
    }

    @Test func aStrongerConcurrentWriteTakesOverTheColumnsRecords() {
        let (row, lost) = Self.aLostToB
        let ch = change(.update, by: W.c, stamp: 300, base: 5, columns: [0])
        let d = Self.decide(row, ch, losers: [lost])
        #expect(
            Set(d.records) == [
                Self.record(0, .updateUpdate, loser: head(7, 100, W.a), winner: Self.mine(ch)),
                Self.record(0, .updateUpdate, loser: head(8, 200, W.b), winner: Self.mine(ch)),
            ])
    }

    @Test func aLoserWinsAgainWhenTheWinnerIsSeenButItIsNot() {
        // B won c0 at 7; C's concurrent write at 8 lost to it. A pulled version 7 (saw B, not C)
        // and writes c0 with a lower stamp than C's: C's value comes back.
        var row = seededRow()
        row.columns[0] = head(7, 200, W.b)
        row.existence = [head(7, 200, W.b), head(8, 150, W.c)]
        row.version = 8
        let cLost = Self.record(0, .updateUpdate, loser: head(8, 150, W.c), winner: head(7, 200, W.b))
        let ch = change(.update, by: W.a, stamp: 100, base: 7, columns: [0])
        let d = Self.decide(row, ch, losers: [cLost])
        #expect(d.values == [0: .loser(head(8, 150, W.c))])
        #expect(d.effect == .update)
        #expect(d.clocks?.columns[0] == head(8, 150, W.c))
        #expect(d.records == [Self.record(0, .updateUpdate, loser: Self.mine(ch), winner: head(8, 150, W.c))])
    }

    @Test func aLostDeleteIsRepointedOnlyToAStrongerWrite() {
        var row = seededRow()
        row.columns[0] = head(8, 200, W.b)
        row.existence = [head(8, 200, W.b), head(7, 100, W.c, delete: true)]
        row.version = 8
        let weaker = Self.decide(row, change(.update, by: W.a, stamp: 150, base: 5, columns: [1]))
        #expect(weaker.values == [1: .incoming])
        #expect(
            weaker.records == [
                Self.record(nil, .deleteUpdate, loser: head(7, 100, W.c, delete: true), winner: head(8, 200, W.b))
            ])
        let strongerChange = change(.update, by: W.a, stamp: 250, base: 5, columns: [1])
        let stronger = Self.decide(row, strongerChange)
        #expect(
            stronger.records == [
                Self.record(
                    nil, .deleteUpdate, loser: head(7, 100, W.c, delete: true), winner: Self.mine(strongerChange))
            ])
    }

    @Test func recordsOfOtherColumnsAreLeftAlone() {
        var row = seededRow()
        row.columns[2] = head(8, 200, W.b)
        row.existence = [head(7, 100, W.c), head(8, 200, W.b)]
        row.version = 8
        let other = Self.record(2, .updateUpdate, loser: head(7, 100, W.c), winner: head(8, 200, W.b))
        let d = Self.decide(row, change(.update, by: W.a, stamp: 300, base: 5, columns: [0]), losers: [other])
        #expect(d.records == [other])
        #expect(d.values == [0: .incoming])
    }
}

extension IncomingChange {
    /// The key of the head this change becomes.
    fileprivate var stampKey: HeadKey { HeadKey(writer: writer.number, stamp: stamp) }
}
