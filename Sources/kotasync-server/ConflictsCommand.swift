import ArgumentParser
import Foundation
import KotaSyncCore
import KotaSyncServer
import Logging

/// `kotasync-server conflicts`: the review queue from the command line, on the master database
/// directly (like `token create`), with the same JSON as the review API.
struct ConflictsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conflicts",
        abstract: "List, show and resolve conflict records (the review queue).",
        discussion: """
            Opens the master database directly; the server may be running. `--json` prints exactly what \
            the review API (GET /v1/review/conflicts...) answers. Exit status: 0 success; 2 a usage or \
            configuration error; 4 no such record, or the master refused the decision; 1 anything else.
            """,
        subcommands: [List.self, Show.self, Resolve.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List conflict records in id order.")

        @OptionGroup var master: MasterOptions

        @Option(help: "Only records with this status: auto, open, held, resolved or superseded.")
        var status: String?

        @Option(help: "Only records of this table.")
        var table: String?

        @Option(help: "Only records where either side was written by this OPD (`master` for the server).")
        var opd: String?

        @Option(help: "Only records with an id above this (the `next` of a previous page).")
        var after: Int64 = 0

        @Option(help: "The most records to list (at most 1000).")
        var limit: Int = 100

        @Flag(help: "Print the review API's JSON (a ConflictList).")
        var json = false

        func validate() throws {
            if let status, ConflictReport.Status(rawValue: status) == nil {
                throw ValidationError(
                    "Unknown status \(status); use one of \(ConflictReport.Status.allCases.map(\.rawValue).joined(separator: ", "))."
                )
            }
            guard after >= 0 else { throw ValidationError("--after must be 0 or more.") }
            guard (1...1000).contains(limit) else { throw ValidationError("--limit must be from 1 to 1000.") }
        }

        func run() async throws {
            try await master.withMaster(logger: quietLogger) { _, store in
                let list = try await refusingWithExitCode {
                    try await store.reviewConflicts(
                        ReviewFilter(status: status, table: table, opd: opd, after: after, limit: limit))
                }
                if json {
                    try printJSON(list)
                    return
                }
                guard !list.conflicts.isEmpty else {
                    print("No conflict records match.")
                    return
                }
                print(ConflictTable(list.conflicts).rendered)
                if let next = list.next { print("More records wait: add --after \(next).") }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show one record: base, local (the master's value) and remote values, sides, resolution.")

        @OptionGroup var master: MasterOptions

        @Argument(help: "The record's id.")
        var id: Int64

        @Flag(help: "Print the review API's JSON (a ConflictReport).")
        var json = false

        func run() async throws {
            try await master.withMaster(logger: quietLogger) { _, store in
                let record = try await refusingWithExitCode { try await store.reviewConflict(id: id) }
                if json {
                    try printJSON(record)
                } else {
                    print(ConflictDetail(record).rendered)
                }
            }
        }
    }

    struct Resolve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Decide a record: the decision becomes a new change of the master that every replica pulls.",
            discussion: """
                --take local keeps the master's value (the winner), remote takes the losing side, merged \
                writes the values given with --set. For a quarantined row: local rejects it, remote keeps \
                both rows (correct the incoming one with --set), merged merges it into the row it collided \
                with. For a held row: local rejects it, remote applies it.

                --set COLUMN=VALUE is read by the column's type in the config: an INTEGER column takes an \
                integer, a REAL column a number, a TEXT column the text as written, a BLOB column x'00ff'. \
                The literal NULL (upper case) is SQL NULL.
                """)

        /// The sides a reviewer may take (``ResolutionChoice``).
        enum Take: String, ExpressibleByArgument, CaseIterable {
            case local, remote, merged

            var choice: ResolutionChoice {
                switch self {
                case .local: .local
                case .remote: .remote
                case .merged: .merged
                }
            }
        }

        @OptionGroup var master: MasterOptions

        @Argument(help: "The record's id.")
        var id: Int64

        @Option(help: "Which side: local (the master's), remote (the other) or merged (the --set values).")
        var take: Take

        @Option(
            name: .customLong("set"),
            help: ArgumentHelp("A column value to write (repeatable); NULL is SQL NULL.", valueName: "column=value"))
        var assignments: [String] = []

        @Option(help: "Why, for the record.")
        var note: String?

        @Option(help: "Who decides; recorded with the decision. Defaults to the login name.")
        var by: String?

        @Flag(help: "Print the record afterwards as the review API's JSON.")
        var json = false

        func validate() throws {
            for assignment in assignments where !assignment.contains("=") {
                throw ValidationError("--set takes COLUMN=VALUE; `\(assignment)` has no `=`.")
            }
            if let by, by.trimmingCharacters(in: .whitespaces).isEmpty { throw ValidationError("--by is empty.") }
        }

        func run() async throws {
            try await master.withMaster(logger: quietLogger) { config, store in
                let record = try await refusingWithExitCode { try await store.reviewConflict(id: id) }
                let values = try exitOnUsageError { () throws(SyncError) in
                    try Self.values(assignments, table: record.table, config: config)
                }
                let reviewer = by ?? ProcessInfo.processInfo.userName
                let resolved = try await refusingWithExitCode {
                    try await store.resolveConflict(
                        id: id, ResolveRequest(take: take.choice, set: values.isEmpty ? nil : values, note: note),
                        by: reviewer.isEmpty ? "kotasync-server" : reviewer)
                }
                try await store.audit(
                    "review.resolve",
                    [
                        "conflict_id": String(id), "take": take.choice.rawValue, "table": resolved.table,
                        "master_version": resolved.resolution?.masterVersion.map(String.init) ?? "-",
                    ])
                if json {
                    try printJSON(resolved)
                } else {
                    print(ConflictDetail(resolved).rendered)
                }
            }
        }

        /// `--set` values, read by the column types of the record's table in the config.
        static func values(_ assignments: [String], table name: String, config: ServerConfig) throws(SyncError)
            -> [String: SQLValue]
        {
            guard !assignments.isEmpty else { return [:] }
            guard let table = config.tables.first(where: { $0.name == name }) else {
                throw SyncError(.badRequest, "Table \(name) is not in the config, so --set values cannot be read.")
            }
            var values: [String: SQLValue] = [:]
            for assignment in assignments {
                let parts = assignment.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let columnName = String(parts[0])
                let all = table.primaryKey + table.columns
                guard let column = all.first(where: { $0.name == columnName }) else {
                    throw SyncError(
                        .badRequest,
                        "Table \(name) has no column \(columnName); its columns are \(all.map(\.name).joined(separator: ", "))."
                    )
                }
                guard values[columnName] == nil else {
                    throw SyncError(.badRequest, "--set \(columnName) is given twice.")
                }
                values[columnName] = try column.value(fromLiteral: String(parts[1]))
            }
            return values
        }
    }
}

let quietLogger: Logger = {
    var logger = Logger(label: "kotasync.conflicts")
    logger.logLevel = .warning
    return logger
}()

/// Prints `value` exactly as the review API sends it.
func printJSON(_ value: some Encodable) throws {
    print(String(decoding: try ProtocolJSON.encoder().encode(value), as: UTF8.self))
}

/// Runs a store call; a refusal (not found, not allowed for this record, bad values) prints its
/// code and message and exits with 4, a failure of the server itself with 1.
func refusingWithExitCode<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let error as SyncError {
        FileHandle.standardError.write(Data("error: \(error.message) [\(error.code)]\n".utf8))
        throw ExitCode(error.code.httpStatus >= 500 ? 1 : 4)
    }
}

/// Runs a check of the command's own input; a mistake prints its message and exits with 2.
private func exitOnUsageError<T>(_ body: () throws(SyncError) -> T) throws -> T {
    do {
        return try body()
    } catch {
        FileHandle.standardError.write(Data("error: \(error.message) [\(error.code)]\n".utf8))
        throw ExitCode(2)
    }
}
