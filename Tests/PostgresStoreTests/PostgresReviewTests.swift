import Foundation
import KotaSyncCore
import KotaSyncTesting
import Testing

@testable import KotaSyncServer

/// The review role on PostgreSQL: the queue lists and filters as on SQLite, and a reviewer's
/// decision is carried out by the same procedure, as a new change of the master.
@Suite(.postgres)
struct PostgresReviewTests {
    @Test func aReviewerListsAndResolvesConflictsAsOnSQLite() async throws {
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
                (
                    a.device,
                    a.changeset(
                        [.upsert("patients", "p1", ["nik": .text("N1"), "name": .text("Ani")])], stamp: 3_000,
                        config: config)
                ),
                (
                    b.device,
                    b.changeset(
                        [.upsert("patients", "p2", ["nik": .text("N1"), "name": .text("Budi")])], stamp: 4_000,
                        config: config)
                ),
            ]
            let masters = [MergeBackend.postgres(store), .sqlite(sqlite)]
            for master in masters {
                for (device, changeset) in pushes { _ = try await master.reply(changeset, from: device) }
            }
            let postgres = masters[0]
            let open = try await postgres.reviewConflicts(ReviewFilter(status: "open"))
            #expect(Set(open.conflicts.map(\.kind)) == [.insertInsert, .unique])
            #expect(open.conflicts.allSatisfy { $0.status == "open" })
            let byOPD = try await postgres.reviewConflicts(ReviewFilter(table: "patients", opd: "pkm-b"))
            #expect(byOPD.conflicts.map(\.kind) == [.unique])
            let paged = try await postgres.reviewConflicts(ReviewFilter(limit: 1))
            #expect(paged.conflicts.count == 1 && paged.next == paged.conflicts.first?.id)
            await #expect(throws: SyncError.self) {
                _ = try await postgres.reviewConflicts(ReviewFilter(status: "nope"))
            }

            for master in masters {
                #expect(
                    try await master.reviewConflicts(ReviewFilter()).conflicts.map(MasterDump.timeless)
                        == (try await masters[1].reviewConflicts(ReviewFilter()).conflicts.map(MasterDump.timeless)))
            }
            // The manual column: the reviewer takes the losing value; the quarantined patient:
            // kept with another NIK.
            let manual = try #require(open.conflicts.first { $0.kind == .insertInsert && $0.column == "manual_col" })
            let unique = try #require(open.conflicts.first { $0.kind == .unique })
            var decided: [[ConflictReport]] = []
            for master in masters {
                decided.append([
                    MasterDump.timeless(try await master.resolveConflict(id: manual.id, ResolveRequest(take: .remote))),
                    MasterDump.timeless(
                        try await master.resolveConflict(
                            id: unique.id,
                            ResolveRequest(take: .remote, set: ["nik": .text("N9")], note: "checked the KTP"))),
                ])
            }
            #expect(decided[0] == decided[1])
            #expect(decided[0].allSatisfy { $0.status == "resolved" }, "\(decided[0])")
            // The same master, but for the stamps of the reviewer's changes (the moment of the decision).
            let pg = try await postgres.dump().withoutMasterStamps
            #expect(pg == (try await masters[1].dump().withoutMasterStamps))
            #expect(pg.tables["patients"]?.contains([.text("p2"), .text("N9"), .text("Budi")]) == true)
            // A decided record cannot be decided again, and a missing one is not found.
            let again = await #expect(throws: SyncError.self) {
                _ = try await postgres.resolveConflict(id: manual.id, ResolveRequest(take: .local))
            }
            #expect(again?.code == .alreadyResolved)
            let missing = await #expect(throws: SyncError.self) {
                _ = try await store.reviewConflict(id: 999)
            }
            #expect(missing?.code == .notFound)
            #expect(try await store.reviewConflict(id: unique.id).status == "resolved")
        }
    }
}
