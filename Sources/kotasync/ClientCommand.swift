import ArgumentParser
import Foundation
import KotaSyncClient
import KotaSyncCore

@main
struct ClientCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kotasync",
        abstract: "Keep an OPD's SQLite database in sync with the KotaSync server.",
        discussion: """
            Exit status: 0 success; 2 the database is not (or already) a replica, or its tables do not \
            match; 3 the server cannot be reached (local changes are kept; try again later); 4 the \
            server refused the request; 5 the device token was refused; 6 another kotasync process is \
            syncing this replica; 7 a transfer file is damaged, forged or not for this replica; 1 \
            anything else.
            """,
        subcommands: [
            Init.self, Status.self, Conflicts.self, Push.self, Pull.self, Sync.self, Export.self, Import.self,
        ]
    )
}

struct ReplicaOptions: ParsableArguments {
    @Option(help: "The replica's SQLite database.")
    var db: String

    @Flag(help: "Print the result as JSON.")
    var json = false
}

struct Init: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a database a replica: create (or adopt) the tables, capture changes, download the rows.")

    @OptionGroup var options: ReplicaOptions
    @OptionGroup var link: LinkOptions

    @Option(help: "The server's URL, e.g. http://127.0.0.1:8080.")
    var server: String

    @Option(help: "The device token from `kotasync-server token create`.")
    var token: String

    func run() async throws {
        guard let url = URL(string: server), url.scheme == "http" || url.scheme == "https" else {
            throw ValidationError("--server must be an http:// or https:// URL.")
        }
        try await withTransport(link) { transport in
            try await report(json: options.json) {
                let lock = try ProcessLock(replicaAt: options.db)
                defer { withExtendedLifetime(lock) {} }
                let meter = LinkMeter()
                let progress = TerminalProgress(ProgressLine(label: "download"), meter: meter, quiet: options.json)
                defer { progress.finish() }
                let (replica, adopted, pulled) = try await Synchronizer.initialize(
                    path: options.db, serverURL: url, token: token, transport: transport, meter: meter,
                    deadline: link.deadlineInstant, progress: { progress.update(rows: $0.rows) })
                let result = InitResult(
                    replicaId: replica.id, adoptedRows: adopted, pulledRows: pulled.rows, cursor: pulled.cursor,
                    link: meter.stats)
                return (
                    result,
                    "Replica \(replica.id) created in \(options.db) for OPD \(replica.schema.opd): "
                        + "\(pulled.rows) rows downloaded"
                        + (adopted > 0 ? ", \(adopted) existing rows adopted and queued for push." : ".")
                        + linkLine(meter.stats)
                )
            }
        }
    }
}

struct InitResult: Codable {
    var replicaId: UUID
    var adoptedRows: Int
    var pulledRows: Int
    var cursor: UInt64
    var link: LinkStats
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show pending changes, sync times, errors and conflicts.")

    @OptionGroup var options: ReplicaOptions

    func run() async throws {
        try await report(json: options.json) {
            let status = try Replica(path: options.db).status()
            var lines = [
                "Replica \(status.replicaId) (OPD \(status.opd)) → \(status.server)",
                "Schema version: \(status.schemaVersion)",
                "Pending changes: \(status.pendingChanges) row(s) from \(status.logEntries) captured write(s)",
                "Cursor: \(status.cursor)",
                "Last push: \(status.lastPushAt ?? "never")   last pull: \(status.lastPullAt ?? "never")   last sync: \(status.lastSyncAt ?? "never")",
            ]
            if let inFlight = status.inFlight {
                lines.append(
                    "In the outbox: changeset \(inFlight.changesetId) (\(inFlight.rows) row(s)), awaiting the server's acknowledgement; the next push sends it again"
                )
            }
            if let error = status.lastError {
                lines.append("Last error (\(error.at)): \(error.message) [\(error.code)]")
                if let advice = status.advice { lines.append("  What to do: \(advice)") }
            }
            lines += recordLines(status)
            if !status.conflicts.isEmpty {
                let counts = status.outcomeCounts
                lines.append(
                    "Conflicts reported by the server: \(status.conflicts.count). Your changes: "
                        + "\(counts.overridden) overridden, \(counts.quarantined) quarantined, \(counts.held) held, "
                        + "\(counts.rejected) rejected, \(counts.awaitingReview) awaiting review")
                let outcomes = Dictionary(uniqueKeysWithValues: status.outcomes.map { ($0.conflictId, $0) })
                for c in status.conflicts {
                    lines.append("  " + describe(c, replica: status.replicaId))
                    if let outcome = outcomes[c.id] { lines.append("      \(outcome.kind.rawValue): \(outcome.why)") }
                }
            }
            if !status.refused.isEmpty {
                lines.append("Rows the server refused: \(status.refused.count)")
                for row in status.refused {
                    let key = row.primaryKey.map(\.description).joined(separator: ", ")
                    let fate =
                        row.action == "discard"
                        ? "removed here" : "the server's version comes back with the next pull"
                    lines.append("  \(row.table) [\(key)]: \(row.message) [\(row.code)]; \(fate)")
                }
            }
            return (status, lines.joined(separator: "\n"))
        }
    }
}

struct Conflicts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the conflicts the server reported for this replica, with the values involved.",
        discussion: """
            Shows the records as the server last reported them (each sync fetches new ones and \
            refreshes those still waiting); `kotasync sync` first for the latest.
            """)

    @OptionGroup var options: ReplicaOptions

    func run() async throws {
        try await report(json: options.json) {
            let replica = try Replica(path: options.db)
            let conflicts = try replica.conflicts()
            let outcomes = conflicts.compactMap { ChangeOutcome.of($0, for: replica.id) }
            guard !conflicts.isEmpty else {
                return (ConflictsResult(replicaId: replica.id, conflicts: [], outcomes: []), "No conflicts reported.")
            }
            let byID = Dictionary(uniqueKeysWithValues: outcomes.map { ($0.conflictId, $0) })
            let text = conflicts.map { detail($0, replica: replica.id, outcome: byID[$0.id]) }
            return (
                ConflictsResult(replicaId: replica.id, conflicts: conflicts, outcomes: outcomes),
                text.joined(separator: "\n\n")
            )
        }
    }
}

/// What `kotasync conflicts --json` prints: the records as the server reported them, and what
/// they mean for this replica's changes.
struct ConflictsResult: Codable {
    var replicaId: UUID
    var conflicts: [ConflictReport]
    var outcomes: [ChangeOutcome]
}

struct Push: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Send pending local changes to the server.")

    @OptionGroup var options: ReplicaOptions
    @OptionGroup var link: LinkOptions

    func run() async throws {
        try await withTransport(link) { transport in
            try await report(json: options.json, recordingOn: options.db) {
                let lock = try ProcessLock(replicaAt: options.db)
                defer { withExtendedLifetime(lock) {} }
                var sync = try Synchronizer(replica: try Replica(path: options.db), transport: transport)
                sync.deadline = link.deadlineInstant
                let summary = try await pushWithProgress(sync, quiet: options.json)
                return (
                    WithLink(summary, link: sync.meter.stats), pushLine(summary) + linkLine(sync.meter.stats)
                )
            }
        }
    }
}

struct Pull: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply merged changes from the server.")

    @OptionGroup var options: ReplicaOptions
    @OptionGroup var link: LinkOptions

    func run() async throws {
        try await withTransport(link) { transport in
            try await report(json: options.json, recordingOn: options.db) {
                let lock = try ProcessLock(replicaAt: options.db)
                defer { withExtendedLifetime(lock) {} }
                var sync = try Synchronizer(replica: try Replica(path: options.db), transport: transport)
                sync.deadline = link.deadlineInstant
                let summary = try await pullWithProgress(sync, quiet: options.json)
                return (
                    WithLink(summary, link: sync.meter.stats), pullLine(summary) + linkLine(sync.meter.stats)
                )
            }
        }
    }
}

struct Sync: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Push pending changes, then pull merged ones.",
        discussion: """
            Over a link that drops, a transfer resumes where it broke (at most one chunk or page is \
            sent again) and keeps going as long as bytes get through between the drops; with \
            --until-done it keeps trying through any network failure until everything is sent and \
            received or --deadline passes. On a terminal a progress line shows bytes, chunks and \
            resumes; otherwise the result is printed at the end.

            With --watch, keeps the replica in sync until stopped (Ctrl-C or SIGTERM): syncs about a \
            second after local changes, otherwise every --interval, and keeps trying, with growing \
            pauses up to 5 minutes, while the server cannot be reached. Each sync is one line on \
            stdout (a JSON object per line with --json); each failure one line on stderr.
            """)

    @OptionGroup var options: ReplicaOptions
    @OptionGroup var link: LinkOptions

    @Flag(help: "Keep syncing until stopped.")
    var watch = false

    @Option(help: "With --watch: the time between syncs when nothing changes locally, e.g. 30s, 5m, 1h.")
    var interval: String = "30s"

    func validate() throws {
        guard let seconds = parseInterval(interval), seconds >= 1 else {
            throw ValidationError("--interval must be a duration of at least 1s, such as 30s, 5m or 1h.")
        }
        if !watch, interval != "30s" { throw ValidationError("--interval goes with --watch.") }
        if watch, link.untilDone { throw ValidationError("--until-done and --watch do not go together.") }
    }

    func run() async throws {
        try await withTransport(link) { transport in
            if watch {
                return try await runWatch(
                    options: options, interval: parseInterval(interval) ?? 30, transport: transport)
            }
            try await report(json: options.json, recordingOn: options.db) {
                let lock = try ProcessLock(replicaAt: options.db)
                defer { withExtendedLifetime(lock) {} }
                var sync = try Synchronizer(replica: try Replica(path: options.db), transport: transport)
                sync.deadline = link.deadlineInstant
                let (pushed, pulled) = try await syncWithProgress(sync, quiet: options.json)
                return (
                    SyncResult(push: pushed, pull: pulled, link: sync.meter.stats),
                    pushLine(pushed) + "\n" + pullLine(pulled) + linkLine(sync.meter.stats)
                )
            }
        }
    }
}

struct SyncResult: Codable {
    var push: PushSummary
    var pull: PullSummary
    var link: LinkStats
}
