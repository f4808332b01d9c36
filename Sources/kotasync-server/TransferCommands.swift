import ArgumentParser
import Foundation
import KotaSyncCore
import KotaSyncServer
import Logging

/// `kotasync-server import FILE`: merges a device's push file as if it had been pushed.
struct ImportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Merge a push file that a device wrote with `kotasync export` (carried without a network).",
        discussion: """
            The file must be intact and authenticated by a valid device token; its changesets go \\
            through the same merge as POST /v1/push, with that token's OPD and scope. Importing a file \\
            twice (or after the device pushed the same changes over the network) changes nothing. \\
            The server's reply is printed and written to FILE.reply.json (or --reply), for the device's \\
            `kotasync import`. Safe while the server runs. Exit status 4 when the file is refused.
            """)

    @OptionGroup var master: MasterOptions

    @Argument(help: "The push file.")
    var file: String

    @Option(help: "Where to write the reply file; FILE.reply.json if not given.")
    var reply: String?

    @Flag(help: "Print the replies as JSON.")
    var json = false

    func run() async throws {
        try await master.withMaster(logger: Logger(label: "kotasync.import")) { _, store in
            let data: Data
            do {
                data = try Data(contentsOf: URL(fileURLWithPath: file))
            } catch {
                throw ValidationError("Cannot read \(file): \(error.localizedDescription)")
            }
            let result = try await refusing { try await store.importPush(data) }
            let replyPath = reply ?? file + ".reply.json"
            do {
                try result.replyFile.encoded().write(to: URL(fileURLWithPath: replyPath), options: .atomic)
            } catch {
                FileHandle.standardError.write(
                    Data("error: cannot write \(replyPath): \(error.localizedDescription)\n".utf8))
                throw ExitCode(1)
            }
            if json {
                print(String(decoding: try ProtocolJSON.encoder().encode(result.replies), as: UTF8.self))
            } else {
                for reply in result.replies {
                    print(
                        "Changeset \(reply.changesetId) of replica \(reply.replicaId) (OPD \(result.device.opd)): "
                            + "\(reply.rows) row(s), \(reply.applied) applied, \(reply.conflicts.count) conflict(s), "
                            + "\((reply.rejected ?? []).count) refused; master sequence \(reply.masterSequence).")
                }
                if result.replayed > 0 {
                    print("\(result.replayed) changeset(s) had been merged before: nothing changed for them.")
                }
                print("Reply written to \(replyPath): carry it back for `kotasync import`.")
                if let cursor = result.cursor {
                    print(
                        "Merged changes for the device: kotasync-server export --opd \(result.device.opd) --since \(cursor) --out FILE"
                    )
                }
            }
        }
    }
}

/// `kotasync-server export --opd ID --since CURSOR --out FILE`: merged changes for a device.
struct ExportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write the merged changes a device of an OPD may see after a cursor, for `kotasync import`.",
        discussion: """
            The file holds the pages GET /v1/pull would send a device of the OPD (scope rules and \\
            hidden columns applied), authenticated for each valid device token of that OPD. The \\
            device's cursor is in `kotasync status` (and printed by `kotasync export`).
            """)

    @OptionGroup var master: MasterOptions

    @Option(help: "The OPD the file is for.")
    var opd: String

    @Option(help: "The device's cursor: the file holds the changes after it.")
    var since: UInt64 = 0

    @Option(help: "The file to write.")
    var out: String

    func run() async throws {
        try await master.withMaster(logger: Logger(label: "kotasync.export")) { _, store in
            let file = try await refusing { try await store.exportPull(opd: opd, after: since) }
            let body = try file.decodedBody()
            do {
                try file.encoded().write(to: URL(fileURLWithPath: out), options: .atomic)
            } catch {
                FileHandle.standardError.write(Data("error: cannot write \(out): \(error.localizedDescription)\n".utf8))
                throw ExitCode(1)
            }
            print(
                "Wrote \(out): changes for OPD \(opd) after \(since) up to \(body.nextCursor ?? since), "
                    + "\(body.changesets?.count ?? 0) page(s), for \(file.macs.count) device token(s).")
        }
    }
}

/// Runs a store call; a refusal prints its code and message and exits with 4, a failure of the
/// server itself with 1.
private func refusing<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let error as SyncError {
        FileHandle.standardError.write(Data("error: \(error.message) [\(error.code)]\n".utf8))
        throw ExitCode(error.code.httpStatus >= 500 ? 1 : 4)
    }
}
