import Foundation
import GRDB
import KotaSyncClient
import KotaSyncCore
import Testing

/// The replica's log, outbox and pull application across restarts, acknowledgements and
/// concurrent local edits.
struct ReplicaSyncStateTests {
    @Test func pendingChangesAndTheOutboxSurviveARestart() throws {
        let replica = try makeReplica()
        let path = replica.path
        try sqlite3Shell(path, "INSERT INTO notes VALUES ('n1', 'a', NULL, NULL)")
        #expect(try Replica(path: path).status().pendingChanges == 1)

        let sent = try #require(try Replica(path: path).nextOutbound())
        // A crash after sending, before the reply: the same bytes go out again.
        let again = try #require(try Replica(path: path).nextOutbound())
        #expect(again == sent)
        #expect(try Replica(path: path).status().inFlight?.changesetId == sent.id)
    }

    @Test func anAcknowledgementRemovesOnlyWhatWasSent() throws {
        let replica = try makeReplica()
        try sqlite3Shell(replica.path, "INSERT INTO notes VALUES ('n1', 'a', NULL, NULL)")
        let sent = try #require(try replica.nextOutbound())
        try sqlite3Shell(
            replica.path,
            "INSERT INTO notes VALUES ('n2', 'b', NULL, NULL); UPDATE notes SET body = 'later' WHERE id = 'n1'")
        try replica.acknowledge(sent, reply: reply(for: sent, replica: replica))

        let status = try replica.status()
        #expect(status.inFlight == nil)
        #expect(status.pendingChanges == 2)
        let next = try #require(try nextPush(replica))
        #expect(next.firstSequence > sent.lastSequence)
        let byID = Dictionary(uniqueKeysWithValues: next.rows(of: "notes").map { ($0.primaryKey[0], $0) })
        #expect(byID[.text("n2")]?.operation == .upsert)
        #expect(byID[.text("n1")]?.operation == .update, "the server has n1 now, so the later edit is an update")
        #expect(next.values(try #require(byID[.text("n1")])) == ["body": .text("later")])
    }

    @Test func sequenceNumbersAreNeverReusedAfterTheLogEmpties() throws {
        let replica = try makeReplica()
        var last: UInt64 = 0
        for round in 0..<3 {
            try sqlite3Shell(replica.path, "INSERT INTO notes VALUES ('n\(round)', 'a', NULL, NULL)")
            let sent = try #require(try replica.nextOutbound())
            #expect(sent.firstSequence > last, "round \(round) reuses a sequence number")
            try replica.acknowledge(sent, reply: reply(for: sent, replica: replica))
            #expect(try replica.status().logEntries == 0)
            last = sent.lastSequence
        }
        // A row created and deleted offline cancels out, and still moves the sequence on.
        try sqlite3Shell(
            replica.path, "INSERT INTO notes VALUES ('tmp', 'a', NULL, NULL); DELETE FROM notes WHERE id = 'tmp'")
        #expect(try replica.nextOutbound() == nil)
        try sqlite3Shell(replica.path, "INSERT INTO notes VALUES ('after', 'a', NULL, NULL)")
        #expect(try #require(try replica.nextOutbound()).firstSequence > last + 2)
    }

    @Test func anOutboxDamagedOnDiskIsRebuiltFromTheLog() throws {
        let replica = try makeReplica()
        try sqlite3Shell(replica.path, "INSERT INTO notes VALUES ('n1', 'a', NULL, NULL)")
        let damaged = try #require(try replica.nextOutbound())
        try sqlite3Shell(replica.path, "UPDATE _ks_outbox SET body = substr(body, 1, length(body) - 4) || x'00000000'")
        let rebuilt = try #require(try replica.nextOutbound())
        #expect(rebuilt.id != damaged.id)
        #expect(try ChangesetCodec.decode(rebuilt.body).rows.count == 1)
    }

    @Test func aRefusedChangesetIsRebuiltFromTheLogWithTheCorrectedRow() throws {
        let replica = try makeReplica()
        try sqlite3Shell(replica.path, "INSERT INTO notes VALUES ('n1', 'salah', NULL, NULL)")
        let refused = try #require(try replica.nextOutbound())
        try replica.discard(refused)
        try sqlite3Shell(replica.path, "UPDATE notes SET title = 'benar' WHERE id = 'n1'")
        let rebuilt = try #require(try nextPush(replica))
        #expect(rebuilt.id != refused.id)
        #expect(rebuilt.values(try #require(rebuilt.rows(of: "notes").first))["title"] == .text("benar"))
    }

    @Test func aPullKeepsAPendingLocalEditAndRemembersItsBase() throws {
        let replica = try makeReplica()
        _ = try replica.apply(page: try page(after: 0, [note("n1", version: 5, title: "lama", body: "lama", score: 1)]))
        try sqlite3Shell(replica.path, "UPDATE notes SET title = 'lokal' WHERE id = 'n1'")

        let result = try replica.apply(
            page: try page(after: 5, [note("n1", version: 9, title: "pusat", body: "pusat", score: 2)]))
        #expect(result.keptLocal == 1)
        #expect(
            try rows(replica.path, "SELECT title, body, score FROM notes") == [
                [.text("lokal"), .text("pusat"), .integer(2)]
            ],
            "the pending column keeps the local value; the others take the master's")

        let push = try #require(try nextPush(replica))
        let row = try #require(push.rows(of: "notes").first)
        #expect(row.operation == .update)
        #expect(row.version == 9)
        #expect(row.columns.map(\.baseVersion) == [5], "the title edit was made on version 5, not 9")
        #expect(push.values(row) == ["title": .text("lokal")])
    }

    @Test func aRowDeletedLocallyIsNotBroughtBackByAPull() throws {
        let replica = try makeReplica()
        _ = try replica.apply(page: try page(after: 0, [note("n1", version: 1, title: "a", body: nil, score: nil)]))
        try sqlite3Shell(replica.path, "DELETE FROM notes WHERE id = 'n1'")
        _ = try replica.apply(page: try page(after: 1, [note("n1", version: 2, title: "b", body: nil, score: nil)]))
        #expect(try rows(replica.path, "SELECT count(*) FROM notes") == [[.integer(0)]])
        let push = try #require(try nextPush(replica))
        let row = try #require(push.rows(of: "notes").first)
        #expect(row.operation == .delete)
        #expect(row.version == 1, "the delete was made on version 1")
    }

    @Test func aPageThatDoesNotStartAtTheCursorIsRefused() throws {
        let replica = try makeReplica()
        #expect(throws: ReplicaError.self) {
            try replica.apply(page: try page(after: 7, [note("n1", version: 8, title: "a", body: nil, score: nil)]))
        }
        #expect(try replica.cursor() == 0)
    }

    @Test func anExistingDatabaseWithMatchingTablesIsAdoptedAndItsRowsQueued() throws {
        let path = try makeTemporaryDirectory().appendingPathComponent("app.sqlite").path
        try sqlite3Shell(
            path,
            """
            CREATE TABLE notes (id TEXT PRIMARY KEY, title TEXT, body TEXT, score INTEGER, local_flag INTEGER);
            INSERT INTO notes VALUES ('old1', 'dari aplikasi', NULL, 1, 0);
            CREATE TABLE app_settings (k TEXT PRIMARY KEY, v TEXT);
            """)
        let adopted = try Replica.create(
            at: path, schema: try testSchema(), serverURL: URL(string: "http://127.0.0.1:9")!, token: "t")
        #expect(adopted == 1)
        let replica = try Replica(path: path)
        let push = try #require(try nextPush(replica))
        #expect(push.rows(of: "notes").map(\.primaryKey) == [[.text("old1")]])
        try sqlite3Shell(path, "INSERT INTO app_settings VALUES ('theme', 'dark')")
        #expect(try replica.status().logEntries == 1, "tables that do not replicate are not captured")
    }

    @Test func anExistingTableWithADifferentKeyIsRefused() throws {
        let path = try makeTemporaryDirectory().appendingPathComponent("app.sqlite").path
        try sqlite3Shell(path, "CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT, body TEXT, score INTEGER)")
        #expect {
            try Replica.create(
                at: path, schema: try testSchema(), serverURL: URL(string: "http://127.0.0.1:9")!, token: "t")
        } throws: { ($0 as? ReplicaError)?.code == .schemaMismatch }
        #expect(throws: ReplicaError.self) { try Replica(path: path) }
    }

    @Test func initialisingTwiceIsRefused() throws {
        let replica = try makeReplica()
        #expect {
            try Replica.create(
                at: replica.path, schema: try testSchema(), serverURL: URL(string: "http://127.0.0.1:9")!, token: "t")
        } throws: { ($0 as? ReplicaError)?.code == .alreadyInitialized }
    }
}
