import ArgumentParser
import Foundation
import KotaSyncCore
import KotaSyncServer

/// `kotasync-server audit`: read and check the master's audit log.
struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "List the audit log, or check that no entry was edited, inserted or deleted.",
        subcommands: [Verify.self, List.self])

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Recompute the audit log's hash chain and report the first broken entry.",
            discussion: """
                Exit status 0 when the chain is intact, 3 when an entry was edited, inserted or deleted \
                (the first one is named). Prints the head hash: keep a copy elsewhere; someone who can \
                rewrite the whole file can rewrite the whole chain, but not your copy.
                """)

        @OptionGroup var master: MasterOptions

        func run() async throws {
            try await master.withAccounts(logger: quietLogger) { store in
                let (checked, problem) = try await store.verifyAudit()
                if let problem {
                    FileHandle.standardError.write(
                        Data("audit log broken at \(problem) (\(checked) entries checked)\n".utf8))
                    throw ExitCode(3)
                }
                let last = try await store.auditEntries(
                    since: nil, opd: nil, after: Int64(max(checked - 1, 0)), limit: 1)
                print("audit log intact: \(checked) entries" + (last.first.map { ", last \($0.id) at \($0.at)" } ?? ""))
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List audit entries, oldest first.")

        @OptionGroup var master: MasterOptions

        @Option(help: "Only entries at or after this time (ISO 8601, e.g. 2026-11-29T00:00:00Z).")
        var since: String?

        @Option(help: "Only entries of devices of this OPD.")
        var opd: String?

        @Option(help: "Only entries with an id above this.")
        var after: Int64 = 0

        @Option(help: "The most entries to list.")
        var limit: Int = 1000

        @Flag(help: "Print one JSON object per entry (JSON lines).")
        var json = false

        func validate() throws {
            if let since, parsedSince(since) == nil {
                throw ValidationError("--since \(since) is not an ISO 8601 time such as 2026-11-29T08:00:00Z.")
            }
            guard limit >= 1 else { throw ValidationError("--limit must be at least 1.") }
        }

        func run() async throws {
            try await master.withAccounts(logger: quietLogger) { store in
                let entries = try await store.auditEntries(
                    since: since.flatMap(parsedSince), opd: opd, after: after, limit: limit)
                if json {
                    let encoder = ProtocolJSON.encoder()
                    for entry in entries { print(String(decoding: try encoder.encode(entry), as: UTF8.self)) }
                    return
                }
                guard !entries.isEmpty else {
                    print("No audit entries match.")
                    return
                }
                print(
                    TextTable(
                        header: ["id", "at", "actor", "kind", "opd", "address", "action", "status", "code", "detail"],
                        rows: entries.map { e in
                            [
                                String(e.id), e.at, e.actor, e.actorKind, e.opd ?? "-", e.address ?? "-", e.action,
                                String(e.status), e.code ?? "-", e.detail ?? "",
                            ]
                        }
                    ).rendered)
            }
        }

        private func parsedSince(_ text: String) -> Date? {
            (try? Date(text, strategy: .iso8601))
                ?? (try? Date(
                    text,
                    strategy: .iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(
                        separator: .omitted)))
                ?? (try? Date(text, strategy: .iso8601.year().month().day()))
        }
    }
}
