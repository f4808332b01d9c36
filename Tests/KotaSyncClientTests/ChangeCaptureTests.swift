import Foundation
import GRDB
import KotaSyncClient
import KotaSyncCore
import Testing

/// Writes by any program land in the change log, exactly.
struct ChangeCaptureTests {
    @Test func writesFromTheSqlite3ShellAreCaptured() throws {
        let replica = try makeReplica()
        try sqlite3Shell(
            replica.path,
            """
            INSERT INTO notes VALUES ('n1', 'Posyandu', 'Jadwal imunisasi', 3);
            INSERT INTO pairs VALUES ('x', 7, x'cafe');
            INSERT INTO notes VALUES ('n2', 'tmp', NULL, NULL);
            DELETE FROM notes WHERE id = 'n2';
            """)
        let push = try #require(try nextPush(replica))
        let notes = push.rows(of: "notes")
        #expect(notes.count == 1, "a row created and deleted before any push sends nothing")
        #expect(notes[0].operation == .upsert)
        #expect(notes[0].primaryKey == [.text("n1")])
        #expect(
            push.values(notes[0]) == [
                "title": .text("Posyandu"), "body": .text("Jadwal imunisasi"), "score": .integer(3),
            ])
        let pairs = push.rows(of: "pairs")
        #expect(pairs.map(\.primaryKey) == [[.text("x"), .integer(7)]])
        #expect(push.values(pairs[0]) == ["v": .blob([0xCA, 0xFE])])
    }

    @Test func writesFromPythonAreCaptured() throws {
        let replica = try makeReplica()
        try python(
            replica.path,
            """
            import sqlite3, sys
            c = sqlite3.connect(sys.argv[1])
            c.execute("INSERT INTO notes VALUES ('py', 'dari python', NULL, 9007199254740993)")
            c.commit()
            """)
        let push = try #require(try nextPush(replica))
        let row = try #require(push.rows(of: "notes").first)
        #expect(push.values(row)["score"] == .integer(9_007_199_254_740_993))
    }

    @Test func everyStorageClassIsCapturedBitExact() throws {
        let replica = try makeReplica()
        try sqlite3Shell(
            replica.path,
            """
            INSERT INTO kinds VALUES ('a', 9223372036854775807, 0.1, '007', x'', -0.0);
            INSERT INTO kinds VALUES ('b', -9223372036854775808, 1e308, '', x'00000000', '1.50');
            INSERT INTO kinds VALUES ('c', NULL, 4.9e-324, 'Puskesmas 🏥 Binjai', NULL, 12);
            """)
        let push = try #require(try nextPush(replica))
        let byID = Dictionary(uniqueKeysWithValues: push.rows(of: "kinds").map { ($0.primaryKey[0], push.values($0)) })
        #expect(
            byID[.text("a")] == [
                "i": .integer(.max), "r": .real(0.1), "t": .text("007"), "b": .blob([]), "anything": .real(-0.0),
            ])
        #expect(
            byID[.text("b")] == [
                "i": .integer(.min), "r": .real(1e308), "t": .text(""), "b": .blob([0, 0, 0, 0]),
                "anything": .text("1.50"),
            ])
        #expect(
            byID[.text("c")] == [
                "i": .null, "r": .real(4.9e-324), "t": .text("Puskesmas 🏥 Binjai"), "b": .null,
                "anything": .integer(12),
            ])
    }

    @Test func anUpdateOfAPulledRowSendsOnlyTheColumnsThatChanged() throws {
        let replica = try makeReplica()
        _ = try replica.apply(page: try page(after: 0, [note("n1", version: 4, title: "a", body: "b", score: 1)]))
        try sqlite3Shell(replica.path, "UPDATE notes SET body = 'baru', score = score WHERE id = 'n1'")
        let push = try #require(try nextPush(replica))
        let row = try #require(push.rows(of: "notes").first)
        #expect(row.operation == .update)
        #expect(row.version == 4, "the change is based on the version last pulled")
        #expect(push.values(row) == ["body": .text("baru")])
    }

    @Test func changingOnlyTheStorageClassIsAChange() throws {
        let replica = try makeReplica()
        _ = try replica.apply(page: try page(after: 0, [note("n1", version: 1, title: "a", body: "b", score: 1)]))
        try sqlite3Shell(
            replica.path, "UPDATE kinds SET anything = 1; UPDATE notes SET body = CAST('b' AS BLOB) WHERE id = 'n1'")
        let push = try #require(try nextPush(replica))
        #expect(push.values(try #require(push.rows(of: "notes").first)) == ["body": .blob(Array("b".utf8))])
    }

    @Test func changingAKeyIsADeleteOfTheOldKeyAndAnInsertOfTheNew() throws {
        let replica = try makeReplica()
        _ = try replica.apply(page: try page(after: 0, [note("old", version: 1, title: "t", body: nil, score: nil)]))
        try sqlite3Shell(replica.path, "UPDATE notes SET id = 'new' WHERE id = 'old'")
        let push = try #require(try nextPush(replica))
        let ops = Dictionary(uniqueKeysWithValues: push.rows(of: "notes").map { ($0.primaryKey[0], $0.operation) })
        #expect(ops == [.text("old"): .delete, .text("new"): .upsert])
    }

    @Test func pulledChangesAreNotCapturedAsLocalChanges() throws {
        let replica = try makeReplica()
        let applied = try replica.apply(
            page: try page(
                after: 0,
                [
                    note("n1", version: 1, title: "a", body: nil, score: nil),
                    note("n2", version: 2, title: "b", body: nil, score: 2),
                ]))
        #expect(applied.applied == 2)
        #expect(try replica.status().logEntries == 0)
        #expect(try nextPush(replica) == nil)
        #expect(
            try rows(replica.path, "SELECT id, score FROM notes ORDER BY id") == [
                [.text("n1"), .null], [.text("n2"), .integer(2)],
            ])
        #expect(try replica.cursor() == 2)
    }

    @Test func theAppsOwnWritesDuringAPullAreStillCaptured() throws {
        // The marker that suppresses capture lives inside the pull's transaction only.
        let replica = try makeReplica()
        _ = try replica.apply(page: try page(after: 0, [note("n1", version: 1, title: "a", body: nil, score: nil)]))
        try sqlite3Shell(replica.path, "INSERT INTO notes VALUES ('mine', 'x', NULL, NULL)")
        #expect(try replica.status().pendingChanges == 1)
    }
}
