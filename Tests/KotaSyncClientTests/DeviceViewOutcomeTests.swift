import Foundation
import KotaSyncCore
import Testing

@testable import KotaSyncClient

/// A device's view of a record whose other side is another OPD's row (`Protocol/access.md` §5):
/// one side absent, no related row. The client still says what happened to its change, in words
/// that name nothing it was not told.
struct DeviceViewOutcomeTests {
    static let me = UUID(uuidString: "AAAAAAAA-0000-4000-8000-00000000000A")!
    static let mine = ConflictReport.Side(replicaId: me, opd: "pkm-a", stamp: HLC(rawValue: 1), value: .text("3171"))

    static func view(kind: ConflictReport.Kind, status: String, column: String?) -> ConflictReport {
        var report = ConflictReport(
            id: 4, table: "patients", primaryKey: [.text("p1")], column: column, kind: kind, policy: "quarantine",
            base: nil, winner: nil, loser: mine, status: status, decidedAt: "2026-12-01T00:00:00.000Z")
        report.reason = "Another record in the city already uses this nik; the Command Center reviews both."
        return report
    }

    @Test func aQuarantinedRowWithoutTheOtherSideIsToldItWaits() throws {
        let outcome = try #require(
            ChangeOutcome.of(Self.view(kind: .unique, status: "open", column: "nik"), for: Self.me))
        #expect(outcome.kind == .quarantined)
        #expect(outcome.why.contains("another row"))
        #expect(outcome.why.contains("Another record in the city"))
    }

    @Test func aLostColumnWithoutTheWinnerNamesNoValueOrOPD() throws {
        var report = Self.view(kind: .updateUpdate, status: "auto", column: "phone")
        report.policy = "lww"
        let outcome = try #require(ChangeOutcome.of(report, for: Self.me))
        #expect(outcome.kind == .overridden)
        #expect(outcome.why.contains("another device"))
        #expect(!outcome.why.contains("the deletion"), "an absent side is not a delete: \(outcome.why)")
    }

    @Test func aRecordDecodesWithEitherSideAbsent() throws {
        let json = """
            {"id": 4, "table": "patients", "primary_key": [{"type": "text", "value": "p1"}], "kind": "unique",
             "policy": "quarantine", "status": "open", "decided_at": "2026-12-01T00:00:00.000Z",
             "loser": {"opd": "pkm-a", "replica_id": "AAAAAAAA-0000-4000-8000-00000000000A", "stamp": "1"}}
            """
        let report = try ProtocolJSON.decoder().decode(ConflictReport.self, from: Data(json.utf8))
        #expect(report.winner == nil && report.loser?.replicaId == Self.me)
    }
}
