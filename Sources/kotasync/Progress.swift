import Foundation
import KotaSyncClient
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Draws a ``ProgressLine`` on stderr, redrawn in place on one line, at most ten times a second.
/// Silent when `quiet` (`--json`) or when stderr is not a terminal, so scripts and logs get only
/// the final result.
///
/// With a ``LinkMeter`` the line also shows the bytes moved, chunks and resumes, redrawn once a
/// second even while no row completes (a large upload is one changeset of many chunks).
final class TerminalProgress: Sendable {
    private struct State {
        var line: ProgressLine
        var start = ContinuousClock.now
        var lastDraw: ContinuousClock.Instant?
        var drawn = false
        var rows = 0
        var bytes = 0
        var ticker: Task<Void, Never>?
    }

    private let enabled: Bool
    private let state: Mutex<State>
    private let meter: LinkMeter?

    init(_ line: ProgressLine, meter: LinkMeter? = nil, quiet: Bool) {
        enabled = !quiet && isatty(STDERR_FILENO) == 1
        state = Mutex(State(line: line))
        self.meter = meter
        guard enabled, meter != nil else { return }
        let ticker = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                guard let self else { return }
                self.redraw()
            }
        }
        state.withLock { $0.ticker = ticker }
    }

    /// Starts a new step: the label and total change, the clock restarts.
    func restart(_ line: ProgressLine) {
        state.withLock { state in
            state.line = line
            state.start = .now
            state.lastDraw = nil
            state.rows = 0
            state.bytes = 0
        }
    }

    func update(rows: Int, bytes: Int = 0) {
        guard enabled else { return }
        state.withLock { state in
            state.rows = rows
            state.bytes = bytes
        }
        redraw()
    }

    /// Draws the line with the latest counts, unless it was drawn less than 0.1 s ago.
    private func redraw() {
        guard enabled else { return }
        let link = meter?.stats
        state.withLock { state in
            let now = ContinuousClock.now
            if let last = state.lastDraw, now - last < .milliseconds(100) { return }
            state.lastDraw = now
            state.drawn = true
            let elapsed = (now - state.start).components
            let seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
            let bytes = max(state.bytes, link.map { $0.bytesSent + $0.bytesReceived } ?? 0)
            let text = state.line.render(rows: state.rows, bytes: bytes, elapsed: seconds, link: link)
            FileHandle.standardError.write(Data("\r\(text)\u{1B}[K".utf8))
        }
    }

    /// Stops the redraws and clears the line, so the result printed next stands alone.
    func finish() {
        state.withLock { state in
            state.ticker?.cancel()
            state.ticker = nil
            if enabled, state.drawn { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
            state.drawn = false
        }
    }
}

/// The rows a push will send, for the progress line's total: only worth reading on a terminal.
private func pendingRows(_ sync: Synchronizer, quiet: Bool) -> Int? {
    guard !quiet, isatty(STDERR_FILENO) == 1 else { return nil }
    return try? sync.replica.status().pendingChanges
}

func pushWithProgress(_ sync: Synchronizer, quiet: Bool) async throws -> PushSummary {
    let progress = TerminalProgress(
        ProgressLine(label: "push", totalRows: pendingRows(sync, quiet: quiet)), meter: sync.meter, quiet: quiet)
    defer { progress.finish() }
    return try await sync.push(progress: { progress.update(rows: $0.rows, bytes: $0.bytes) })
}

func pullWithProgress(_ sync: Synchronizer, quiet: Bool) async throws -> PullSummary {
    let progress = TerminalProgress(ProgressLine(label: "pull"), meter: sync.meter, quiet: quiet)
    defer { progress.finish() }
    return try await sync.pull(progress: { progress.update(rows: $0.rows) })
}

func syncWithProgress(_ sync: Synchronizer, quiet: Bool) async throws -> (push: PushSummary, pull: PullSummary) {
    let progress = TerminalProgress(
        ProgressLine(label: "push", totalRows: pendingRows(sync, quiet: quiet)), meter: sync.meter, quiet: quiet)
    defer { progress.finish() }
    let pulling = Mutex(false)
    return try await sync.sync(
        pushProgress: { progress.update(rows: $0.rows, bytes: $0.bytes) },
        pullProgress: { summary in
            let first = pulling.withLock { started in
                defer { started = true }
                return !started
            }
            if first { progress.restart(ProgressLine(label: "pull")) }
            progress.update(rows: summary.rows)
        })
}
