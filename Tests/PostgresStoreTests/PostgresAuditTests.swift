import Foundation
import KotaSyncCore
import PostgresNIO
import Testing

@testable import KotaSyncServer

/// The hash-chained audit log on the PostgreSQL master: entries written in batches, listed with
/// filters, checked by `verifyAudit`, and one chain when several servers append at once.
@Suite(.postgres)
struct PostgresAuditTests {
    static func entry(_ n: Int, opd: String? = nil, at: Date = Date()) -> AuditEntry {
        AuditEntry(
            at: at, actor: "token-\(n)", actorKind: "device", opd: opd, replica: nil, address: "127.0.0.1",
            action: "push", status: 200, detail: ["rows": "\(n)"])
    }

    @Test func entriesAreWrittenInOrderListedWithFiltersAndTheChainIsIntact() async throws {
        try await withStore { store in
            #expect(try await store.verifyAudit().checked == 0)
            let old = Date(timeIntervalSince1970: 1_700_000_000)
            for n in 1...5 { store.recordAudit(Self.entry(n, opd: n % 2 == 0 ? "pkm-a" : "pkm-b", at: old)) }
            try await store.flushAudit()
            for n in 6...8 { store.recordAudit(Self.entry(n, opd: "pkm-a")) }
            try await store.flushAudit()
            let all = try await store.auditEntries(since: nil, opd: nil, after: 0, limit: 100)
            #expect(all.map(\.id) == Array(1...8))
            #expect(all.map(\.actor) == (1...8).map { "token-\($0)" })
            #expect(all[0].detail == #"{"rows":"1"}"#)
            #expect(all[0].status == 200)
            #expect(
                try await store.auditEntries(since: nil, opd: "pkm-a", after: 0, limit: 100).map(\.id) == [
                    2, 4, 6, 7, 8,
                ])
            #expect(try await store.auditEntries(since: nil, opd: nil, after: 3, limit: 2).map(\.id) == [4, 5])
            let recent = try await store.auditEntries(
                since: Date().addingTimeInterval(-3600), opd: nil, after: 0, limit: 100)
            #expect(recent.map(\.id) == [6, 7, 8])
            let verified = try await store.verifyAudit()
            #expect(verified.checked == 8)
            #expect(verified.problem == nil)
        }
    }

    /// The same checks `audit verify` makes on SQLite: an edited entry, an entry deleted inside
    /// the log, entries deleted from its end, an entry inserted.
    @Test func verifyFindsAnEditedDeletedOrInsertedEntry() async throws {
        try await withStore { store in
            for n in 1...6 { store.recordAudit(Self.entry(n)) }
            try await store.flushAudit()
            let client = store.client
            try await client.query("UPDATE kotasync.audit SET status = 500 WHERE id = 3")
            #expect(try await store.verifyAudit().problem?.id == 3)
            #expect(try await store.verifyAudit().problem?.message.contains("edited") == true)
            try await client.query("UPDATE kotasync.audit SET status = 200 WHERE id = 3")
            #expect(try await store.verifyAudit().problem == nil)

            try await client.query("DELETE FROM kotasync.audit WHERE id = 6")
            let end = try await store.verifyAudit().problem
            #expect(end?.id == 6)
            #expect(end?.message.contains("deleted from the end") == true)

            try await client.query("DELETE FROM kotasync.audit WHERE id = 2")
            let inside = try await store.verifyAudit().problem
            #expect(inside?.id == 3)
            #expect(inside?.message.contains("deleted") == true)
        }
    }

    /// Two servers append to one master at the same time, in many small batches each: the log
    /// stays one chain with consecutive ids and every entry in it. Without the audit lock both
    /// read the same last entry: the second append collides on the id (or forks the chain).
    @Test func twoServersAppendingAtOnceKeepOneChain() async throws {
        try await withStores(2) { stores in
            let perServer = 40
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (s, store) in stores.enumerated() {
                    group.addTask {
                        for n in 0..<perServer {
                            store.recordAudit(Self.entry(s * 1000 + n))
                            try await store.flushAudit()
                        }
                    }
                }
                try await group.waitForAll()
            }
            let verified = try await stores[1].verifyAudit()
            #expect(verified.problem == nil)
            #expect(verified.checked == 2 * perServer)
            let all = try await stores[0].auditEntries(since: nil, opd: nil, after: 0, limit: 1000)
            #expect(all.map(\.id) == Array(1...Int64(2 * perServer)))
            #expect(Set(all.map(\.actor)).count == 2 * perServer)
        }
    }

    /// A batch is written in one transaction: the head recorded with it names its last entry,
    /// and a batch larger than one statement's rows still chains.
    @Test func aLargeBatchChainsAcrossStatements() async throws {
        try await withStore { store in
            let entries = (1...2_500).map { Self.entry($0) }
            try await store.master.transaction { connection in
                try await PostgresMasterStore.append(entries, connection)
            }
            let verified = try await store.verifyAudit()
            #expect(verified.checked == 2_500)
            #expect(verified.problem == nil)
        }
    }
}
