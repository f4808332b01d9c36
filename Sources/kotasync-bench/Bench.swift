import Foundation
import KotaSyncCore

/// Shared plumbing of the benchmark.
enum Bench {
    /// Applies `ops` in transactions of `batch`.
    static func apply(_ ops: [Operation], to db: RawDatabase, batch: Int) throws {
        var index = 0
        while index < ops.count {
            try db.execute("BEGIN")
            for op in ops[index..<min(index + batch, ops.count)] { try op.apply(to: db) }
            try db.execute("COMMIT")
            index += batch
        }
    }

    /// Seconds taken by `body`.
    static func time(_ body: () throws -> Void) rethrows -> Double {
        let start = ContinuousClock.now
        try body()
        return (ContinuousClock.now - start).seconds
    }

    /// Seconds taken by `body` and the CPU seconds the calling thread spent in it. On a shared
    /// machine the CPU time is the steadier of the two for work that stays on one thread (a
    /// replica's apply runs on the caller's thread: GRDB's `write` is a `DispatchQueue.sync`).
    static func timeWithCPU(_ body: () throws -> Void) rethrows -> (wall: Double, cpu: Double) {
        func threadCPU() -> Double {
            var t = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
            return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
        }
        let cpu = threadCPU()
        let wall = try time(body)
        return (wall, threadCPU() - cpu)
    }

    /// Runs blocking work (SQLite writes and their fsyncs) on a Dispatch thread rather than on
    /// Swift's cooperative pool, which has one thread per core: simulated devices waiting on the
    /// disk there held the threads every other device needed to send its request.
    static func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
        }
    }

    static func timeAsync(_ body: () async throws -> Void) async rethrows -> Double {
        let start = ContinuousClock.now
        try await body()
        return (ContinuousClock.now - start).seconds
    }

    /// A clean copy of the database at `source` (including its triggers), in WAL mode.
    static func copy(_ source: String, to destination: String) throws {
        try? FileManager.default.removeItem(atPath: destination)
        let db = try RawDatabase(path: source)
        try db.execute("VACUUM INTO '\(destination.replacingOccurrences(of: "'", with: "''"))'")
        try RawDatabase(path: destination).execute("PRAGMA journal_mode = WAL")
    }

    /// The value at quantile `q` (0...1) of `values`.
    static func percentile(_ values: [Double], _ q: Double) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        return sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * q).rounded()))]
    }

    /// Every row of the benchmark tables, in key order, for equality checks.
    static func contents(_ db: RawDatabase) throws -> [[[SQLValue]]] {
        try ClinicData.tables.map { t in
            try db.query(
                "SELECT \(ClinicData.columns[ClinicData.tables.firstIndex(of: t)!].joined(separator: ", ")) FROM \(t) ORDER BY id"
            )
        }
    }

    /// The peak resident set of process `pid` in bytes (VmHWM), Linux only.
    static func peakRSS(pid: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") })
        else { return nil }
        return line.split(separator: " ").compactMap { Int($0) }.first.map { $0 * 1024 }
    }
}

extension Duration {
    var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }
}
