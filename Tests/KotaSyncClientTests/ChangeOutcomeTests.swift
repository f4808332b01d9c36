import Foundation
import KotaSyncCore
import Testing

@testable import KotaSyncClient

/// What a conflict record means for one replica's change, for every kind, status and decision;
/// and which records a pull fetches again.
struct ChangeOutcomeTests {
    static let me = UUID(uuidString: "AAAAAAAA-0000-4000-8000-00000000000A")!
    static let them = UUID(uuidString: "BBBBBBBB-0000-4000-8000-00000000000B")!

    static func record(
        id: Int64 = 7, kind: ConflictReport.Kind = .updateUpdate, policy: String = "lww", status: String,
        iLost: Bool = true, take: ResolutionChoice? = nil, decidedAt: String = "2026-11-29T09:56:43.441Z"
    ) -> ConflictReport {
        let mine = ConflictReport.Side(replicaId: me, opd: "pkm-a", stamp: HLC(rawValue: 1), value: .text("mine"))
        let theirs = ConflictReport.Side(replicaId: them, opd: "pkm-b", stamp: HLC(rawValue: 2), value: .text("theirs"))
        let columnKinds: Set<ConflictReport.Kind> = [.updateUpdate, .insertInsert]
        var report = ConflictReport(
            id: id, table: "patients", primaryKey: [.text("p1")], column: columnKinds.contains(kind) ? "phone" : nil,
            kind: kind, policy: policy, base: nil, winner: iLost ? theirs : mine, loser: iLost ? mine : theirs,
            status: status, decidedAt: decidedAt)
        if [.unique, .foreignKey, .queued].contains(kind) {
            report.related = RowReference(table: "patients", primaryKey: [.text("p0")])
        }
        if let take {
            report.resolution = Resolution(
                take: take, values: nil, note: "called", by: "Ani", at: "2026-11-30T01:00:00.000Z", masterVersion: 9)
        }
        return report
    }

    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        var report: ConflictReport
        var outcome: ChangeOutcome.Kind?
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "lost by policy", report: record(status: "auto"), outcome: .overridden),
        Case(
            name: "lost by policy, marked open by an older server", report: record(status: "open"), outcome: .overridden
        ),
        Case(name: "won by policy", report: record(status: "auto", iLost: false), outcome: nil),
        Case(name: "waits under manual", report: record(policy: "manual", status: "open"), outcome: .awaitingReview),
        Case(
            name: "delete lost to update", report: record(kind: .deleteUpdate, policy: "update-wins", status: "auto"),
            outcome: .overridden),
        Case(name: "superseded", report: record(status: "superseded"), outcome: nil),
        Case(name: "unknown status", report: record(status: "pondering"), outcome: nil),
        Case(
            name: "reviewer kept the other value", report: record(status: "resolved", take: .local),
            outcome: .overridden),
        Case(name: "reviewer took mine", report: record(status: "resolved", take: .remote), outcome: nil),
        Case(name: "reviewer merged", report: record(status: "resolved", take: .merged), outcome: .overridden),
        Case(
            name: "reviewer took the loser's over my win",
            report: record(status: "resolved", iLost: false, take: .remote),
            outcome: .overridden),
        Case(
            name: "reviewer kept my win", report: record(status: "resolved", iLost: false, take: .local), outcome: nil),
        Case(name: "quarantined", report: record(kind: .unique, status: "open"), outcome: .quarantined),
        Case(
            name: "quarantined row rejected", report: record(kind: .unique, status: "resolved", take: .local),
            outcome: .rejected),
        Case(
            name: "quarantined row kept", report: record(kind: .unique, status: "resolved", take: .remote), outcome: nil
        ),
        Case(
            name: "quarantined row merged", report: record(kind: .unique, status: "resolved", take: .merged),
            outcome: .overridden),
        Case(
            name: "the row mine collided with stays",
            report: record(kind: .unique, status: "resolved", iLost: false, take: .remote),
            outcome: nil),
        Case(name: "waits for its parent", report: record(kind: .foreignKey, status: "held"), outcome: .held),
        Case(name: "parent deleted", report: record(kind: .foreignKey, status: "open"), outcome: .awaitingReview),
        Case(
            name: "held row rejected", report: record(kind: .foreignKey, status: "resolved", take: .local),
            outcome: .rejected),
        Case(name: "queued behind a held row", report: record(kind: .queued, status: "held"), outcome: .held),
        Case(name: "queued behind a quarantined row", report: record(kind: .queued, status: "open"), outcome: .held),
        Case(
            name: "queued change rejected", report: record(kind: .queued, status: "resolved", take: .local),
            outcome: .rejected),
    ]

    @Test(arguments: cases)
    func eachRecordMeansOneOutcomeForThisReplicasChange(_ c: Case) {
        let outcome = ChangeOutcome.of(c.report, for: Self.me)
        #expect(outcome?.kind == c.outcome)
        if let outcome {
            #expect(outcome.conflictId == c.report.id)
            #expect(!outcome.why.isEmpty)
        }
        #expect(ChangeOutcome.of(c.report, for: UUID()) == nil, "a record of two other replicas means nothing here")
    }

    @Test func theReasonSaysWhoWonWithWhatAndWhoDecided() {
        let lost = ChangeOutcome.of(Self.record(status: "auto"), for: Self.me)
        #expect(lost?.why.contains("pkm-b") == true)
        #expect(lost?.why.contains("'theirs'") == true)
        let rejected = ChangeOutcome.of(Self.record(kind: .unique, status: "resolved", take: .local), for: Self.me)
        #expect(rejected?.why.contains("Ani: called") == true)
    }

    @Test func theCountsAddUpTheOutcomes() {
        let outcomes = Self.cases.compactMap { ChangeOutcome.of($0.report, for: Self.me) }
        let counts = ChangeOutcome.Counts(outcomes)
        #expect(counts.overridden == outcomes.count { $0.kind == .overridden })
        #expect(
            counts.overridden + counts.quarantined + counts.held + counts.rejected + counts.awaitingReview
                == outcomes.count)
        #expect(counts.quarantined == 1)
        #expect(counts.rejected == 3)
    }

    @Test func aPullFetchesAgainFromTheOldestRecordThatMayStillChange() throws {
        let replica = try makeReplica()
        let now = Date(timeIntervalSince1970: 1_780_000_000)
        func iso(_ date: Date) -> String { date.formatted(.iso8601) }
        #expect(try replica.conflictsAfter(now: now) == 0)
        let old = iso(now.addingTimeInterval(-30 * 86_400))
        let recent = iso(now.addingTimeInterval(-86_400))
        try replica.record(conflicts: [
            Self.record(id: 3, status: "resolved", decidedAt: old),
            Self.record(id: 5, status: "auto", decidedAt: old),
            Self.record(id: 8, status: "superseded", decidedAt: recent),
            Self.record(id: 9, status: "auto", decidedAt: recent),
            Self.record(id: 12, status: "resolved", decidedAt: recent),
        ])
        #expect(try replica.conflictsAfter(now: now) == 8, "from the recent auto record 9 on")

        try replica.record(conflicts: [Self.record(id: 4, kind: .unique, status: "open", decidedAt: old)])
        #expect(try replica.conflictsAfter(now: now) == 3, "an open record is fetched until it settles")

        try replica.record(conflicts: [
            Self.record(id: 4, kind: .unique, status: "resolved", take: .local, decidedAt: old),
            Self.record(id: 9, status: "resolved", take: .remote, decidedAt: recent),
        ])
        #expect(try replica.conflictsAfter(now: now) == 12, "nothing unsettled: after the newest")
        #expect(try replica.conflicts().map(\.id) == [3, 4, 5, 8, 9, 12])
        #expect(try replica.conflicts().first { $0.id == 9 }?.status == "resolved", "stored as it now stands")
    }
}
