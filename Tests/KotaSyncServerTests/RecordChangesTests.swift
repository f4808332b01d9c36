import Testing

@testable import KotaSyncCore
@testable import KotaSyncServer

/// Stored open records follow what the merge wants: new ones inserted, changed winners
/// re-pointed, the rest superseded.
@Suite("Record changes")
struct RecordChangesTests {
    static let lostToA = ConflictRecord(
        column: 0, kind: .updateUpdate, loser: head(2, 100, W.b), winner: head(3, 200, W.a))
    static let deleteLostToA = ConflictRecord(
        column: nil, kind: .deleteUpdate, loser: head(4, 150, W.c, delete: true), winner: head(3, 200, W.a))

    @Test func aRecordNotStoredYetIsInsertedAndOneNoLongerWantedIsSuperseded() {
        let changes = RecordChanges(wanted: [Self.lostToA], stored: [Self.deleteLostToA.key: Self.deleteLostToA])
        #expect(changes.inserted == [Self.lostToA])
        #expect(changes.superseded == [Self.deleteLostToA.key])
        #expect(changes.repointed.isEmpty)
    }

    @Test func aStandingRecordWhoseWinnerChangedIsRepointedAndAnUnchangedOneLeftAlone() {
        var lostToC = Self.lostToA
        lostToC.winner = head(5, 300, W.c)
        let changes = RecordChanges(
            wanted: [lostToC, Self.deleteLostToA],
            stored: [Self.lostToA.key: Self.lostToA, Self.deleteLostToA.key: Self.deleteLostToA])
        #expect(changes.repointed == [lostToC])
        #expect(changes.inserted.isEmpty && changes.superseded.isEmpty)
    }

    @Test func aNewRecordKeepsTheIncomingValueWhenTheIncomingChangeLostAndTheDisplacedValueOtherwise() {
        let change = IncomingChange(
            operation: .update, writer: W.b, stamp: HLC(rawValue: 100), rowBase: 1, columns: [0])
        let prior: [SQLValue] = [.text("held"), .null]
        #expect(
            RecordChanges.loserValue(of: Self.lostToA, change: change, incoming: [0: .text("mine")], prior: prior)
                == .text("mine"))
        var displaced = Self.lostToA
        displaced.loser = head(2, 90, W.c)
        #expect(
            RecordChanges.loserValue(of: displaced, change: change, incoming: [0: .text("mine")], prior: prior)
                == .text("held"))
        #expect(
            RecordChanges.loserValue(of: Self.deleteLostToA, change: change, incoming: [:], prior: prior) == nil)
    }
}
