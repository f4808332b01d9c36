import Foundation
import PostgresNIO
import Testing

@testable import KotaSyncTesting

#if canImport(Glibc)
    import Glibc
#endif

/// The tests' private PostgreSQL cluster does not outlive its test process, and starting it
/// does not wait for the server it leaves running.
@Suite(.postgres)
struct PostgresClusterTests {
    /// `pg_ctl start` ends while the server it started (its grandchild) keeps running. The
    /// harness must return when the program ends: Foundation's `Process.waitUntilExit()` waits
    /// for the grandchild too, which hung the test run with the cluster up and no CPU used.
    @Test func runReturnsWhenTheProgramEndsThoughItLeavesAChildRunning() throws {
        let pidFile = FileManager.default.temporaryDirectory
            .appendingPathComponent("kotasync-pg-run-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: pidFile) }
        try PostgresCluster.run(
            "/bin/sh", ["-c", "sleep 600 & echo $! > \(pidFile.path)"], what: "a program that leaves a child")
        let child = try #require(
            pid_t(try String(contentsOf: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(kill(child, 0) == 0)  // still running: run() did not wait for it
        kill(child, SIGKILL)
    }

    /// A test process that is killed runs no exit handler; its cluster's watchdog then stops the
    /// server and removes the folder. Closing the watchdog's pipe here is what the kernel does
    /// when the process ends, however it ends.
    @Test func aClusterWhoseProcessEndsWithoutItsExitHandlerIsStoppedAndRemoved() async throws {
        let bin = try PostgresCluster.findBinaries()
        let folder = FileManager.default.temporaryDirectory
            .appendingPathComponent("kotasync-pg-\(getpid())-watchdog-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let watchdog = try PostgresCluster.startWatchdog(folder: folder, bin: bin)
        let cluster: PostgresCluster
        do {
            cluster = try await PostgresCluster.startServer(in: folder, bin: bin)
        } catch {
            close(watchdog.trigger)
            throw error
        }
        try await cluster.checkConnection()
        let pidFile = folder.appendingPathComponent("data/postmaster.pid")
        let server = try #require(
            pid_t(try String(contentsOf: pidFile, encoding: .utf8).split(separator: "\n").first ?? ""))
        #expect(Self.isRunning(server))

        close(watchdog.trigger)
        var status: Int32 = 0
        while waitpid(watchdog.pid, &status, 0) == -1 && errno == EINTR {}
        #expect(!Self.isRunning(server))
        #expect(!FileManager.default.fileExists(atPath: folder.path))
    }

    /// Whether process `pid` exists and has not ended (a zombie has: the server's parent, once
    /// `pg_ctl` is gone, may be slow to reap it).
    static func isRunning(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return false }
        let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
        return state != "Z" && state != "X"
    }
}
