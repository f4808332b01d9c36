import Foundation
import KotaSyncClient
import Synchronization
import Testing

/// The watch loop against a real replica and a stand-in for the server.
struct WatcherTests {
    /// Counts sync calls; fails them while `failing` is set.
    final class FakeServer: Sendable {
        let calls = Mutex(0)
        let failing = Mutex(false)

        func sync() throws -> (push: PushSummary, pull: PullSummary) {
            calls.withLock { $0 += 1 }
            if failing.withLock({ $0 }) { throw ReplicaError(.serverUnreachable, "down") }
            return (PushSummary(), PullSummary())
        }
    }

    static func waitFor(_ what: String, _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(180)
        while !condition() {
            guard ContinuousClock.now < deadline else { throw WatchTimeout(what: what) }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    struct WatchTimeout: Error {
        var what: String
    }

    @Test func aLocalWriteTriggersASyncLongBeforeTheIntervalAndCancellingStopsTheLoop() async throws {
        let replica = try makeReplica()
        var watcher = Watcher(replica: replica, interval: 3_600)
        watcher.pollInterval = .milliseconds(50)
        let server = FakeServer()
        let task = Task { try await watcher.run(sync: { try server.sync() }, report: { _ in }) }
        try await Self.waitFor("the first sync") { server.calls.withLock { $0 } == 1 }
        try sqlite3Shell(replica.path, "INSERT INTO notes (id, title) VALUES ('w', 'written by another program')")
        try await Self.waitFor("a sync after the write") { server.calls.withLock { $0 } == 2 }
        task.cancel()
        try await task.value
        #expect(server.calls.withLock { $0 } == 2)
    }

    @Test func writesToTablesThatAreNotReplicatedDoNotTriggerASync() async throws {
        let replica = try makeReplica()
        try sqlite3Shell(replica.path, "CREATE TABLE app_settings (k TEXT PRIMARY KEY, v TEXT)")
        var watcher = Watcher(replica: replica, interval: 3_600)
        watcher.pollInterval = .milliseconds(20)
        watcher.schedule.settle = 0
        let server = FakeServer()
        let task = Task { try await watcher.run(sync: { try server.sync() }, report: { _ in }) }
        try await Self.waitFor("the first sync") { server.calls.withLock { $0 } == 1 }
        try sqlite3Shell(replica.path, "INSERT INTO app_settings VALUES ('theme', 'dark')")
        // With no settle delay a sync would follow within a poll or two; give it 25.
        try await Task.sleep(for: .milliseconds(500))
        #expect(server.calls.withLock { $0 } == 1)
        // A replicated write is what triggers the second sync.
        try sqlite3Shell(replica.path, "INSERT INTO notes (id, title) VALUES ('n', 'n')")
        try await Self.waitFor("a sync after the replicated write") { server.calls.withLock { $0 } == 2 }
        task.cancel()
        try await task.value
        #expect(server.calls.withLock { $0 } == 2)
    }

    @Test func failuresAreReportedWithAGrowingWaitAndRecordedForStatus() async throws {
        let replica = try makeReplica()
        var watcher = Watcher(replica: replica, interval: 3_600)
        watcher.schedule.minimumBackoff = 0.05
        watcher.schedule.maximumBackoff = 0.4
        watcher.pollInterval = .milliseconds(10)
        let server = FakeServer()
        server.failing.withLock { $0 = true }
        let waits = Mutex<[Double]>([])
        let task = Task {
            try await watcher.run(
                sync: { try server.sync() },
                report: { event in
                    if case .failed(_, let wait, _) = event { waits.withLock { $0.append(wait) } }
                })
        }
        try await Self.waitFor("five failures") { waits.withLock { $0.count } >= 5 }
        task.cancel()
        try await task.value
        let seen = waits.withLock { $0 }
        // Each wait lies in the upper half of 0.05·2^(n−1), capped at 0.4.
        for (n, wait) in seen.enumerated() {
            let whole = min(0.4, 0.05 * Double(1 << n))
            #expect(wait >= whole / 2 && wait <= whole, "failure \(n + 1): \(wait)")
        }
        #expect(try replica.status().lastError?.code == "server_unreachable")
    }

    @Test func anErrorNoRetryCanCureEndsTheWatch() async throws {
        let replica = try makeReplica()
        let watcher = Watcher(replica: replica, interval: 3_600)
        await #expect(throws: ReplicaError.self) {
            try await watcher.run(
                sync: { throw ReplicaError(.schemaMismatch, "the server's tables changed") }, report: { _ in })
        }
    }
}
