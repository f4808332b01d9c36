import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An exclusive lock on a replica for one process: only the holder pushes, pulls, exports or
/// imports.
///
/// Two syncs at once on one replica would both build a changeset from the same log, or both
/// apply a page at the same cursor; the protocol survives it (the outbox and the cursor check
/// refuse the second), but the user sees confusing errors. The lock is `flock(2)` on the file
/// `<db>.lock` beside the database: the kernel releases it when the process ends, however it
/// ends (`kill -9`, a power cut), so a stale lock never blocks a replica. The lock file itself
/// stays; it is empty but for the holder's process id, which the refusal message quotes.
public final class ProcessLock: Sendable {
    /// The lock file.
    public let path: String
    private let descriptor: Int32

    /// Takes the lock for the replica at `databasePath`, or throws ``ReplicaError/Code/locked``
    /// at once if another process holds it (it never waits).
    public init(replicaAt databasePath: String) throws {
        path = databasePath + ".lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw ReplicaError(
                .database, "Cannot open the lock file \(path): \(String(cString: strerror(errno))).")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let reason = errno
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines)
            close(fd)
            guard reason == EWOULDBLOCK else {
                throw ReplicaError(.database, "Cannot lock \(path): \(String(cString: strerror(reason))).")
            }
            let who = holder.flatMap { $0.isEmpty ? nil : " (process \($0))" } ?? ""
            throw ReplicaError(
                .locked,
                "Another kotasync process\(who) is syncing \(databasePath). Only one sync runs at a time on a replica; wait for it to finish, or stop it (a `kotasync sync --watch` stops on Ctrl-C)."
            )
        }
        descriptor = fd
        // The holder's pid, for the message a second process prints; the lock is the flock, not this.
        _ = ftruncate(fd, 0)
        let pid = Array("\(getpid())\n".utf8)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }

    deinit {
        // Closing the descriptor releases the flock.
        close(descriptor)
    }
}
