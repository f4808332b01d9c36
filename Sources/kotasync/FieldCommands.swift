import ArgumentParser
import Foundation
import KotaSyncClient
import KotaSyncCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// "30s", "5m", "1h", "90" (seconds) → seconds; nil if not a duration.
func parseInterval(_ text: String) -> Double? {
    let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600]
    guard let last = text.last else { return nil }
    if let unit = units[last] { return Double(text.dropLast()).map { $0 * unit } }
    return Double(text)
}

/// `kotasync sync --watch`: holds the replica's lock and syncs until SIGINT or SIGTERM.
func runWatch(options: ReplicaOptions, interval: Double, transport: HTTPTransport) async throws {
    let watcher: Watcher
    let lock: ProcessLock
    do {
        lock = try ProcessLock(replicaAt: options.db)
        watcher = Watcher(replica: try Replica(path: options.db), interval: interval)
    } catch let error as ReplicaError {
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode(error.code.exitCode)
    }
    let synchronizer = try Synchronizer(replica: watcher.replica, transport: transport)
    let json = options.json
    let task = Task {
        try await watcher.run(
            sync: { try await synchronizer.sync() }, report: { event in watchLine(event, json: json) })
    }
    // The default action would end the process mid-write; instead the watch task is cancelled,
    // which ends its wait or its request, and the lock is released on the way out.
    var sources: [any DispatchSourceSignal] = []
    for number in [SIGINT, SIGTERM] {
        signal(number, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
        source.setEventHandler { task.cancel() }
        source.resume()
        sources.append(source)
    }
    FileHandle.standardError.write(
        Data("Watching \(options.db): syncing every \(Int(interval))s and after local changes; Ctrl-C stops.\n".utf8))
    do {
        try await task.value
        FileHandle.standardError.write(Data("Stopped.\n".utf8))
    } catch let error as ReplicaError {
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode(error.code.exitCode)
    }
    withExtendedLifetime((lock, sources)) {}
}

/// One watch event: a sync on stdout (only if it moved something, so an idle watch stays quiet),
/// a failure on stderr; a JSON object per line with `--json`.
private func watchLine(_ event: WatchEvent, json: Bool) {
    let at = ISO8601DateFormatter().string(from: Date())
    switch event {
    case .synced(let pushed, let pulled):
        if json {
            let line = WatchRecord(at: at, event: "synced", push: pushed, pull: pulled)
            print(String(decoding: (try? ProtocolJSON.encoder().encode(line)) ?? Data(), as: UTF8.self))
        } else if pushed.rows > 0 || pulled.rows > 0 {
            print("\(at) synced: pushed \(pushed.rows) row(s), pulled \(pulled.rows) row(s); cursor \(pulled.cursor)")
        }
        fflush(nil)
    case .failed(let error, let wait, let failures):
        let code = error.server?.code.rawValue ?? error.code.rawValue
        if json {
            let line = WatchRecord(
                at: at, event: "failed", error: ["code": code, "message": error.message],
                retryIn: wait.rounded(), failures: failures)
            print(String(decoding: (try? ProtocolJSON.encoder().encode(line)) ?? Data(), as: UTF8.self))
            fflush(nil)
        } else {
            FileHandle.standardError.write(
                Data("\(at) sync failed [\(code)], \(failures) in a row; next try in \(Int(wait.rounded()))s\n".utf8))
        }
    }
}

/// A line of `kotasync sync --watch --json`.
struct WatchRecord: Codable {
    var at: String
    var event: String
    var push: PushSummary?
    var pull: PullSummary?
    var error: [String: String]?
    var retryIn: Double?
    var failures: Int?
}

struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the pending changes to a file to carry to the Command Center (no network needed).",
        discussion: """
            The file holds the changeset the next push would send, authenticated with this device's \\
            token (the token itself is not in it) and checked for damage. At the Command Center: \\
            `kotasync-server import FILE` merges it and writes FILE.reply.json; bring that back and run \\
            `kotasync import FILE.reply.json`. Until then the changes stay pending, and a network push \\
            sends the same changeset (the server applies it once). The file is not encrypted: it \\
            holds the rows themselves; carry it as you would the paper records.
            """)

    @OptionGroup var options: ReplicaOptions

    @Option(help: "The file to write.")
    var out: String

    func run() async throws {
        try await report(json: options.json, recordingOn: options.db, offline: true) {
            let lock = try ProcessLock(replicaAt: options.db)
            defer { withExtendedLifetime(lock) {} }
            let replica = try Replica(path: options.db)
            guard let (file, summary) = try replica.exportPush() else {
                return (
                    ExportSummary(
                        changesetId: nil, rows: 0, bytes: 0, remainingEntries: 0, cursor: try replica.cursor()),
                    "Nothing to export: no pending changes."
                )
            }
            do {
                try file.encoded().write(to: URL(fileURLWithPath: out), options: .atomic)
            } catch {
                throw ReplicaError(.database, "Cannot write \(out): \(error.localizedDescription)")
            }
            var text = """
                Exported changeset \(summary.changesetId!) (\(summary.rows) row(s), \(summary.bytes) bytes) to \(out).
                At the Command Center: kotasync-server import \(out)   (writes \(out).reply.json)
                Back here: kotasync import --db \(options.db) \(out).reply.json
                To bring this replica the others' changes: kotasync-server export --opd \(replica.schema.opd) --since \(summary.cursor) --out FILE
                """
            if summary.remainingEntries > 0 {
                text +=
                    "\n\(summary.remainingEntries) more captured write(s) wait for the next file: export again after importing the reply."
            }
            return (summary, text)
        }
    }
}

struct Import: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply transfer files from the Command Center: a push reply, or merged changes.",
        discussion: """
            A reply file (FILE.reply.json from `kotasync-server import`) acknowledges the exported \\
            changes; a file from `kotasync-server export` applies the merged changes, which must start \\
            at this replica's cursor (`kotasync status`). Each file must be authenticated for this \\
            device's token. Importing a file twice changes nothing. Replies are applied before \\
            merged changes, whatever the order given.
            """)

    @OptionGroup var options: ReplicaOptions

    @Argument(help: "The transfer files.")
    var files: [String]

    func run() async throws {
        try await report(json: options.json, recordingOn: options.db, offline: true) {
            let lock = try ProcessLock(replicaAt: options.db)
            defer { withExtendedLifetime(lock) {} }
            let replica = try Replica(path: options.db)
            var loaded: [(String, Data)] = []
            for path in files {
                do {
                    loaded.append((path, try Data(contentsOf: URL(fileURLWithPath: path))))
                } catch {
                    throw ReplicaError(.invalidTransferFile, "Cannot read \(path): \(error.localizedDescription)")
                }
            }
            // Replies first, as in a sync: the push is acknowledged before merged rows arrive.
            let ordered = loaded.sorted { a, b in isReply(a.1) && !isReply(b.1) }
            var results: [ImportSummary] = []
            var lines: [String] = []
            for (path, data) in ordered {
                let summary = try replica.importTransfer(data)
                results.append(summary)
                switch summary.kind {
                case "push_reply":
                    lines.append(
                        "\(path): \(summary.acknowledged) changeset(s) acknowledged"
                            + (summary.alreadyAcknowledged > 0
                                ? ", \(summary.alreadyAcknowledged) acknowledged before (no effect)" : "") + ".")
                default:
                    lines.append(
                        "\(path): \(summary.rows) row(s) in \(summary.pages) page(s) applied"
                            + (summary.skippedPages > 0 ? ", \(summary.skippedPages) page(s) applied before" : "")
                            + "; cursor \(summary.cursor).")
                }
            }
            return (results, lines.joined(separator: "\n"))
        }
    }

    private func isReply(_ data: Data) -> Bool {
        (try? TransferFile.read(data).decodedBody().kind) == .pushReply
    }
}
