import Foundation
import KotaSyncCore
import Testing

@testable import KotaSyncServer

/// The access service's answers, checked exhaustively against the rules stated again here, apart
/// from `SyncRules` and `AccessPolicy`: every OPD × table × scope value, every role pair, and the
/// device view of each kind of conflict record.
@Suite("Access policy")
struct AccessPolicyTests {
    static let policy: AccessPolicy = try! ServerConfig.parse(
        yaml: AccessOracleTests.yaml, baseURL: URL(fileURLWithPath: "/")
    ).access

    /// OPDs plus an unknown one; scope values every OPD, an unknown OPD, a non-text value and none.
    static let opds = AccessOracleTests.opds + ["ghost"]
    static let scopes: [SQLValue?] =
        AccessOracleTests.opds.map { SQLValue.text($0) } + [.text("ghost"), .integer(1), .null, nil]
    static let tables = ["patients", "villages", "reports", "notes", "unconfigured"]

    /// The scope values `opd` sees, from the oracle's statement; empty for an unknown OPD.
    static func seen(by opd: String) -> Set<String> { AccessOracleTests.sees[opd] ?? [] }

    /// The rule in words: up tables are sent to nobody; a table without a scope to everyone; a
    /// scoped row to the OPDs whose subtree holds its scope value.
    static func expectedSees(_ opd: String, _ table: String, _ scope: SQLValue?) -> Bool {
        switch table {
        case "reports": false
        case "patients":
            if case .text(let value)? = scope { seen(by: opd).contains(value) } else { false }
        default: true
        }
    }

    @Test func aDeviceSeesExactlyTheRowsOfItsSubtreeAndTheUnscopedTables() {
        for opd in Self.opds {
            for table in Self.tables {
                for scope in Self.scopes {
                    #expect(
                        Self.policy.sees(opd: opd, table: table, scope: scope) == Self.expectedSees(opd, table, scope),
                        "\(opd) \(table) \(String(describing: scope))")
                }
            }
        }
    }

    @Test func aDeviceWritesOnlyRowsThatStayInItsSubtreeAndNoReferenceTable() {
        func inSubtree(_ opd: String, _ scope: SQLValue?) -> Bool {
            if case .text(let value)? = scope { Self.seen(by: opd).contains(value) } else { false }
        }
        for opd in Self.opds {
            for table in Self.tables {
                for old in Self.scopes {
                    for new in Self.scopes {
                        let refusal = Self.policy.writeRefusal(opd: opd, table: table, old: old, new: new)
                        switch table {
                        case "villages":
                            #expect(refusal?.code == .readOnlyTable)
                        case "patients", "reports":
                            // nil is "no row before" / "a delete"; every other value must be the device's.
                            let allowed = (old == nil || inSubtree(opd, old)) && (new == nil || inSubtree(opd, new))
                            #expect(
                                (refusal == nil) == allowed,
                                "\(opd) \(table) \(String(describing: old)) → \(String(describing: new))")
                            if !allowed { #expect(refusal?.code == .outOfScope) }
                        default:
                            #expect(refusal == nil)
                        }
                    }
                }
            }
        }
    }

    @Test func aPullWalksTheTablesAsTheRowsAreSeen() {
        for opd in Self.opds {
            #expect(Self.policy.pullReach(opd: opd, table: "reports") == .none)
            #expect(Self.policy.pullReach(opd: opd, table: "villages") == .whole)
            #expect(Self.policy.pullReach(opd: opd, table: "notes") == .whole)
            guard case .scopes(let scopes) = Self.policy.pullReach(opd: opd, table: "patients") else {
                Issue.record("patients is scoped")
                continue
            }
            // An OPD that is not in the config reaches no scoped row.
            #expect(Set(scopes) == Self.seen(by: opd))
        }
        #expect(Self.policy.hiddenColumns(table: "patients") == ["secret"])
        #expect(Self.policy.hiddenColumns(table: "notes").isEmpty)
    }

    @Test func staffRolesAreRankedOnceAndADeviceOpensNoStaffRoute() {
        let staff: [Device.Role] = [.viewer, .reviewer, .admin]
        for held in Device.Role.allCases {
            for needed in Device.Role.allCases {
                let expected =
                    held != .device && needed != .device
                    && staff.firstIndex(of: held)! >= staff.firstIndex(of: needed)!
                #expect(AccessPolicy.grants(held, needed) == expected, "\(held) for \(needed)")
            }
            #expect(AccessPolicy.isDevice(held) == (held == .device))
        }
    }

    @Test func aDeviceReportIsKeptOnlyForAReplicaOfItsOwnOPD() {
        for opd in Self.opds {
            for replicaOPD in Self.opds + [""] {
                #expect(Self.policy.acceptsReport(from: opd, aboutReplicaOf: replicaOPD) == (opd == replicaOPD))
            }
            #expect(!Self.policy.acceptsReport(from: opd, aboutReplicaOf: nil))
        }
        #expect(!Self.policy.acceptsReport(from: "", aboutReplicaOf: ""))
    }

    // MARK: - Device view of conflict records

    static let a = ConflictReport.Side(
        replicaId: UUID(uuidString: "00000000-0000-0000-0000-00000000000A")!, opd: "pkm-a",
        stamp: HLC(rawValue: 10), value: .text("3171000000000001"))
    static let b = ConflictReport.Side(
        replicaId: UUID(uuidString: "00000000-0000-0000-0000-00000000000B")!, opd: "pkm-b",
        stamp: HLC(rawValue: 20), value: .text("3171000000000001"))
    static let master = ConflictReport.Side(replicaId: .zero, opd: "master", stamp: .zero, value: nil)

    /// B's patient quarantined against A's: the record's row is B's, the related row A's.
    static var quarantine: ConflictReport {
        var r = ConflictReport(
            id: 7, table: "patients", primaryKey: [.text("pb")], column: "name", kind: .unique, policy: "quarantine",
            base: nil, winner: a, loser: b, status: "open", decidedAt: "2026-12-01T00:00:00Z")
        r.reason = "UNIQUE constraint failed: collides with patients pa. Quarantined until a reviewer decides."
        r.held = HeldRow(
            operation: "upsert", values: ["id": .text("pb"), "clinic_id": .text("pkm-b"), "name": .text("Siti")])
        r.related = RowReference(table: "patients", primaryKey: [.text("pa")])
        r.resolution = Resolution(
            take: .merged, values: ["name": .text("Siti A")], note: "same person as pa", by: "Ani", at: "t",
            masterVersion: 9)
        return r
    }

    @Test func aQuarantinedRowIsShownToItsWriterWithoutTheRowItCollidedWith() throws {
        let scopes = ConflictScopes(row: .text("pkm-b"), related: .text("pkm-a"))
        let view = try #require(Self.policy.deviceView(of: Self.quarantine, for: "pkm-b", scopes: scopes))
        #expect(view.loser == Self.b)
        #expect(view.winner == nil)
        #expect(view.related == nil)
        #expect(view.base == nil)
        #expect(view.held == Self.quarantine.held)
        #expect(view.primaryKey == [.text("pb")])
        #expect(view.reason?.contains("pa") == false)
        #expect(view.reason?.contains("Another record in the city") == true)
        #expect(view.resolution?.values == nil && view.resolution?.note == nil && view.resolution?.masterVersion == nil)
        #expect(view.resolution?.take == .merged)
        // Nothing of A's row or replica anywhere in what B is sent.
        let text = String(decoding: try ProtocolJSON.encoder().encode(view), as: UTF8.self)
        for leak in ["pa", Self.a.replicaId.uuidString.lowercased(), Self.a.replicaId.uuidString, "pkm-a", "Siti A"] {
            #expect(!text.contains("\"\(leak)\""), "\(leak) in \(text)")
        }
    }

    @Test func theOtherClinicHearsNothingOfARowQuarantinedAgainstItsOwn() {
        let scopes = ConflictScopes(row: .text("pkm-b"), related: .text("pkm-a"))
        #expect(Self.policy.deviceView(of: Self.quarantine, for: "pkm-a", scopes: scopes) == nil)
        // A third OPD took no part.
        #expect(Self.policy.deviceView(of: Self.quarantine, for: "bappeda", scopes: scopes) == nil)
    }

    @Test func theHealthOfficeSeesTheWholeRecordOfItsClinics() {
        var record = Self.quarantine
        record.loser = ConflictReport.Side(replicaId: UUID(), opd: "dinkes", stamp: HLC(rawValue: 30), value: nil)
        let scopes = ConflictScopes(row: .text("pkm-b"), related: .text("pkm-a"))
        #expect(Self.policy.deviceView(of: record, for: "dinkes", scopes: scopes) == record)
    }

    @Test func aQuarantineWithinOneClinicIsShownWhole() {
        var record = Self.quarantine
        record.winner = ConflictReport.Side(replicaId: UUID(), opd: "pkm-b", stamp: HLC(rawValue: 5), value: nil)
        let scopes = ConflictScopes(row: .text("pkm-b"), related: .text("pkm-b"))
        #expect(Self.policy.deviceView(of: record, for: "pkm-b", scopes: scopes) == record)
    }

    @Test func aHeldRowLooksTheSameWhetherItsParentIsAbsentOrAnotherClinics() throws {
        var record = ConflictReport(
            id: 8, table: "patients", primaryKey: [.text("pb")], column: nil, kind: .foreignKey, policy: "hold",
            base: nil, winner: Self.master, loser: Self.b, status: "held", decidedAt: "2026-12-01T00:00:00Z")
        record.related = RowReference(table: "patients", primaryKey: [.text("parent")])
        record.reason = "Refers to patients parent, which the master does not have yet; merged when it arrives."
        record.held = HeldRow(operation: "upsert", values: ["id": .text("pb")])
        let absent = Self.policy.deviceView(
            of: record, for: "pkm-b", scopes: ConflictScopes(row: .text("pkm-b"), related: nil))
        let elsewhere = Self.policy.deviceView(
            of: record, for: "pkm-b", scopes: ConflictScopes(row: .text("pkm-b"), related: .text("pkm-a")))
        #expect(absent == elsewhere)
        let view = try #require(absent)
        #expect(view.related == record.related, "the parent key the device sent itself")
        #expect(view.held == record.held)
        // In its own scope (a parent it may see but that was deleted): the record as it stands.
        #expect(
            Self.policy.deviceView(
                of: record, for: "pkm-b", scopes: ConflictScopes(row: .text("pkm-b"), related: .text("pkm-b")))
                == record)
    }

    @Test func aQueuedChangeBehindAnotherClinicsPendingRowNamesNoRecord() throws {
        var record = ConflictReport(
            id: 9, table: "patients", primaryKey: [.text("pb")], column: nil, kind: .queued, policy: "hold",
            base: nil, winner: Self.master, loser: Self.a, status: "held", decidedAt: "2026-12-01T00:00:00Z")
        record.related = RowReference(table: "patients", primaryKey: [.text("pb")])
        record.reason = "Waits behind conflict record 7 of the same row; merged in order when it is resolved."
        let view = try #require(
            Self.policy.deviceView(
                of: record, for: "pkm-a", scopes: ConflictScopes(row: .text("pkm-a"), related: .text("pkm-b"))))
        #expect(view.reason?.contains("7") == false)
        #expect(view.related == nil && view.winner == nil)
        #expect(view.loser == Self.a)
    }

    @Test func aColumnConflictOnARowInScopeIsShownWholeAndOtherwiseOnlyTheDevicesSide() throws {
        var record = ConflictReport(
            id: 10, table: "patients", primaryKey: [.text("pa")], column: "name", kind: .updateUpdate, policy: "lww",
            base: .text("old"), winner: Self.b, loser: Self.a, status: "auto", decidedAt: "2026-12-01T00:00:00Z")
        record.reason = "lww: the later stamp wins"
        #expect(
            Self.policy.deviceView(of: record, for: "pkm-a", scopes: ConflictScopes(row: .text("pkm-a"), related: nil))
                == record)
        let view = try #require(
            Self.policy.deviceView(of: record, for: "pkm-a", scopes: ConflictScopes(row: .text("pkm-b"), related: nil)))
        #expect(view.winner == nil && view.base == nil && view.loser == Self.a)
        #expect(view.reason != record.reason)
        // The winner's OPD is told of its own side only, as the row is not in its scope either.
        let other = try #require(
            Self.policy.deviceView(of: record, for: "pkm-b", scopes: ConflictScopes(row: .text("pkm-a"), related: nil)))
        #expect(other.loser == nil && other.winner == Self.b)
    }
}
