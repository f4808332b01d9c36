import ArgumentParser
import Foundation
import KotaSyncCore
import KotaSyncServer

/// `kotasync-server history`: every version of one row, newest first, from the master's history.
struct HistoryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "Show every version of a row: who changed it, when, what each change replaced.",
        discussion: """
            Give the table and the row's key values in key order (e.g. `history diagnoses <visit-id> 1`). \
            Opens the master database directly; the server may be running. Exit status: 0 success; 2 a \
            usage or configuration error; 4 an unknown table or a key of the wrong shape; 1 anything else.
            """)

    @OptionGroup var master: MasterOptions

    @Argument(help: "The replicated table.")
    var table: String

    @Argument(help: "The row's key values, in key order (`NULL` is not a key value).")
    var key: [String]

    @Flag(help: "Print JSON: an array of versions, newest first.")
    var json = false

    func run() async throws {
        try await master.withMaster(logger: quietLogger) { config, store in
            let versions = try await refusingWithExitCode {
                guard let schema = config.table(named: table) else {
                    throw SyncError(.unknownTable, "Table \(table) is not replicated by this server.")
                }
                // The store checks the key's shape; extra values are passed through for it to refuse.
                let values = try key.enumerated().map { i, text throws(SyncError) in
                    i < schema.primaryKey.count ? try schema.primaryKey[i].value(fromLiteral: text) : .text(text)
                }
                return try await store.history(table: table, key: values)
            }
            if json { return try printJSON(versions) }
            guard !versions.isEmpty else {
                print("The master has no history for \(table) [\(key.joined(separator: ", "))].")
                return
            }
            for v in versions {
                let stamp =
                    UInt64(v.stamp).map { raw in
                        let hlc = HLC(rawValue: raw)
                        let date = Date(timeIntervalSince1970: Double(hlc.milliseconds) / 1000)
                        return date.formatted(.iso8601) + (hlc.counter > 0 ? " +\(hlc.counter)" : "")
                    } ?? v.stamp
                print(
                    "v\(v.version)  \(v.operation) by \(v.opd) (replica \(v.replicaId))  stamp \(stamp)\(v.clamped ? " (clamped)" : "")"
                )
                if !v.replaced.isEmpty {
                    let replaced = v.replaced.sorted { $0.key < $1.key }.map { "\($0.key) = \($0.value)" }
                    print("    replaced: " + replaced.joined(separator: ", "))
                }
                if let values = v.values {
                    print(
                        "    row after: "
                            + values.sorted { $0.key < $1.key }.map { "\($0.key) = \($0.value)" }.joined(
                                separator: ", "))
                } else {
                    print("    row after: (deleted)")
                }
            }
        }
    }
}
