import Foundation
import GRDB

/// Something watch mode did, for the command line to print.
public enum WatchEvent: Sendable {
    /// A sync finished.
    case synced(push: PushSummary, pull: PullSummary)
    /// A sync failed; the next attempt is in `retryIn` seconds. `failures` counts the failures in a row.
    case failed(ReplicaError, retryIn: Double, failures: Int)
}

/// Keeps a replica in sync: `kotasync sync --watch`.
///
/// Polls the replica once per ``pollInterval`` for local writes — `PRAGMA data_version` (which
/// moves only when another connection commits) and then the change log's highest sequence
/// number, so writes to tables that are not replicated do not wake it — and syncs as
/// ``WatchSchedule`` decides. Installs nothing on the OPD's connections. Runs until its task is
/// cancelled, or until an error that retrying cannot cure (the database is not a replica, or its
/// tables no longer match the server's): that error is thrown.
public struct Watcher: Sendable {
    /// The replica watched.
    public let replica: Replica
    /// When to sync; its first sync is due at once.
    public var schedule: WatchSchedule
    /// How often to look for local writes.
    public var pollInterval: Duration

    /// A watcher that syncs `replica` every `interval` seconds and soon after local changes.
    public init(replica: Replica, interval: Double, pollInterval: Duration = .seconds(1)) {
        self.replica = replica
        self.schedule = WatchSchedule(interval: interval, now: 0)
        self.pollInterval = pollInterval
    }

    /// Errors that no later attempt can cure: the operator must act on the replica itself.
    static func isFatal(_ error: ReplicaError) -> Bool {
        [.notInitialized, .alreadyInitialized, .schemaMismatch, .locked].contains(error.code)
    }

    /// Syncs with `sync` until the task is cancelled, reporting each outcome to `report`.
    public func run(
        sync: @Sendable () async throws -> (push: PushSummary, pull: PullSummary),
        report: @Sendable (WatchEvent) -> Void
    ) async throws {
        let clock = ContinuousClock()
        let start = clock.now
        func now() -> Double {
            let elapsed = (clock.now - start).components
            return Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
        }
        var schedule = self.schedule
        var seen = try replica.changeMark()
        var version = try replica.dataVersion()
        while !Task.isCancelled {
            if schedule.isDue(at: now()) {
                // Writes made from here on are new to the next round, even if this sync takes them.
                seen = (try? replica.changeMark()) ?? seen
                do {
                    let (pushed, pulled) = try await sync()
                    schedule.succeeded(at: now())
                    try? replica.recordError(nil)
                    report(.synced(push: pushed, pull: pulled))
                } catch {
                    if Task.isCancelled { return }
                    let failure =
                        error as? ReplicaError ?? ReplicaError(.database, "The local database failed: \(error)")
                    try? replica.recordError(failure)
                    if Self.isFatal(failure) { throw failure }
                    let wait = schedule.failed(at: now(), jitter: Double.random(in: 0...1))
                    report(.failed(failure, retryIn: wait, failures: schedule.failures))
                }
                continue
            }
            let pause = min(pollInterval, .milliseconds(Int64(max(0, schedule.nextSync - now()) * 1000) + 1))
            do {
                try await Task.sleep(for: pause)
            } catch {
                return
            }
            // A busy or failing database only delays the next look; the sync reports real errors.
            guard let current = try? replica.dataVersion(), current != version else { continue }
            version = current
            guard let mark = try? replica.changeMark() else { continue }
            if mark > seen {
                seen = mark
                schedule.localChange(at: now())
            }
        }
    }
}

extension Replica {
    /// The change log's highest sequence number: it grows with every captured local write.
    func changeMark() throws -> Int64 {
        try dbQueue.read { db in try Int64.fetchOne(db, sql: "SELECT max(seq) FROM _ks_log") ?? 0 }
    }

    /// SQLite's `data_version` on this replica's connection: it moves when another connection
    /// (the OPD's app, the sqlite3 shell) commits, and not for this connection's own writes.
    func dataVersion() throws -> Int64 {
        try dbQueue.read { db in try Int64.fetchOne(db, sql: "PRAGMA data_version") ?? 0 }
    }
}
