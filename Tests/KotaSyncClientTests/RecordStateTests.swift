import Foundation
import KotaSyncClient
import KotaSyncCore
import Testing

/// `status` follows each record's change from the log to the outbox to the server's answer.
struct RecordStateTests {
    static func states(_ replica: Replica) throws -> [String: [String]] {
        var out: [String: [String]] = [:]
        for record in try replica.status().records {
            out[record.state.rawValue, default: []].append(record.primaryKey.map(\.description).joined())
        }
        return out.mapValues { $0.sorted() }
    }

    @Test func aChangeGoesFromPendingToSentToAcknowledgedOrRejected() throws {
        let replica = try makeReplica()
        try sqlite3Shell(replica.path, "INSERT INTO notes (id, title) VALUES ('a', 'A'), ('b', 'B')")
        #expect(try Self.states(replica) == ["pending": ["'a'", "'b'"]])

        let sent = try #require(try replica.nextOutbound())
        try sqlite3Shell(replica.path, "INSERT INTO notes (id, title) VALUES ('c', 'C')")
        #expect(try Self.states(replica) == ["sent": ["'a'", "'b'"], "pending": ["'c'"]])

        var answer = reply(for: sent, replica: replica)
        answer.rejected = [
            RejectedRow(
                table: "notes", primaryKey: [.text("b")], code: "out_of_scope", message: "not yours", action: "restore")
        ]
        try replica.acknowledge(sent, reply: answer)
        #expect(
            try Self.states(replica) == [
                "pending": ["'c'"], "acknowledged": ["'a'", "'b'"], "rejected": ["'b'"],
            ])
        let status = try replica.status()
        #expect(status.recordCounts == ["pending": 1, "acknowledged": 2, "rejected": 1])
        #expect(status.records.first { $0.state == .rejected }?.detail == "not yours [out_of_scope]")
    }

    @Test func onlyTheMostRecentAcknowledgementsAreKept() throws {
        let replica = try makeReplica()
        for round in 0..<3 {
            let values = (0..<100).map { "('r\(round)-\($0)', 'x')" }.joined(separator: ", ")
            try sqlite3Shell(replica.path, "INSERT INTO notes (id, title) VALUES \(values)")
            let sent = try #require(try replica.nextOutbound())
            try replica.acknowledge(sent, reply: reply(for: sent, replica: replica))
        }
        let acknowledged = try replica.status().records.filter { $0.state == .acknowledged }
        #expect(acknowledged.count == Replica.acknowledgedMemory)
        // Newest first; the first round is forgotten.
        #expect(acknowledged.first?.primaryKey == [.text("r2-99")])
        #expect(!acknowledged.contains { $0.primaryKey == [.text("r0-99")] })
    }

    @Test func theLastErrorComesWithAdvice() throws {
        let replica = try makeReplica()
        try replica.recordError(ReplicaError(.serverUnreachable, "no route"))
        #expect(try replica.status().advice?.contains("kotasync export") == true)
        try replica.recordError(
            ReplicaError(.rejected, "bad", server: SyncError(.sequenceConflict, "restored from a backup?")))
        #expect(try replica.status().advice?.contains("kotasync init") == true)
        try replica.recordError(nil)
        #expect(try replica.status().advice == nil)
    }
}
