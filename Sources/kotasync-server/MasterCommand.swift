import ArgumentParser
import Foundation
import KotaSyncCore
import KotaSyncServer

/// `kotasync-server master`: the master itself, as a whole.
struct MasterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "master",
        abstract: "Work on the master as a whole: move it from an SQLite file to PostgreSQL.",
        subcommands: [Copy.self])

    /// `kotasync-server master copy --from FILE --to postgresql://…`.
    struct Copy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy an SQLite master file into an empty PostgreSQL master, with everything it holds.",
            discussion: """
                Copies the replicated tables' rows and all of KotaSync's bookkeeping — versions, history, \
                conflict records and held changes, replicas and their changesets, device reports, tokens, \
                staff accounts and sessions, the audit log — with their ids and bytes as they are, in one \
                transaction: a copy that fails leaves nothing behind in the target. Device tokens and logins \
                made before the copy work on the copy; `kotasync-server audit verify --master URL` passes.

                Stop the server first: the copy reads one snapshot of the file (opened read-only), and what \
                is merged after it is not copied. Chunked uploads in progress are not copied; devices start \
                them again. The target must be empty: create a new database (`createdb`) for it. The \
                config must be the one the master was served with (its tables, keys and columns). Every \
                value is kept exactly (see samples/postgres/README.md, "Types"); a value PostgreSQL cannot \
                hold (text containing the character U+0000) refuses the copy, naming the table and column.

                Prints the rows copied per table (counts only). Exit status 0 when copied; 2 when refused \
                (the config or a location is wrong, the file is not a master of this config, the target is \
                not empty, a value cannot be kept) with nothing changed; 1 when the copy failed otherwise \
                (e.g. the connection dropped), also with nothing changed.
                """)

        @Option(name: .customLong("config"), help: "The server configuration (YAML) the master was served with.")
        var configPath: String = "kotasync.yaml"

        @Option(help: ArgumentHelp("The SQLite master file to copy (it is only read).", valueName: "file"))
        var from: String

        @Option(
            help: ArgumentHelp(
                "The empty PostgreSQL master: postgresql://USER@HOST:PORT/DATABASE[?sslmode=MODE].", valueName: "url"
            ))
        var to: String

        @Option(
            help: ArgumentHelp(
                "A file holding the PostgreSQL master's password (else KOTASYNC_MASTER_PASSWORD_FILE, else PGPASSWORD).",
                valueName: "file"))
        var masterPasswordFile: String?

        func run() async throws {
            let environment = ProcessInfo.processInfo.environment
            let (config, target, password) = try await exitOnConfigError {
                let config = try ServerConfig.load(from: URL(fileURLWithPath: configPath))
                let source = try MasterLocation(parsing: from)
                guard case .file = source else {
                    throw ConfigError(.invalid, "--from names an SQLite master file, not a URL.")
                }
                guard case .postgres(let target) = try MasterLocation(parsing: to) else {
                    throw ConfigError(
                        .invalid, "--to names the PostgreSQL master: postgresql://USER@HOST:PORT/DATABASE.")
                }
                return (config, target, try MasterLocation.password(file: masterPasswordFile, environment: environment))
            }
            let user = ProcessInfo.processInfo.userName
            let audit = AuditEntry(
                actor: "cli:\(user.isEmpty ? "unknown" : user)", actorKind: "cli", action: "master.copy", status: 0,
                detail: ["from": URL(fileURLWithPath: from).lastPathComponent])
            let master = try PostgresMaster.connect(to: target, password: password, logger: quietLogger)
            let summary: MasterCopySummary
            do {
                summary = try await PostgresMasterCopy.copy(
                    from: from, to: master, config: config, audit: audit, logger: quietLogger)
                await master.close()
            } catch {
                await master.close()
                let (message, status): (String, Int32) =
                    switch error {
                    case let error as MasterCopyError:
                        ("\(error.message) [\(error.code)]", error.code == .failed ? 1 : 2)
                    case let error as ConfigError: ("\(error.message) [\(error.code)]", 2)
                    case let error as SyncError: ("\(error.message) [\(error.code)]", 1)
                    default:
                        // The pool's own errors say little (it retries, then gives up): say what to check.
                        (
                            "the copy to \(target) failed, nothing was changed: \(error). Check that PostgreSQL runs "
                                + "there, that the database exists (createdb) and that the user and password are right.",
                            1
                        )
                    }
                FileHandle.standardError.write(Data("error: \(message)\n".utf8))
                throw ExitCode(status)
            }
            print("Copied \(from) to \(target):")
            print(
                TextTable(
                    header: ["table", "rows"], rows: summary.tables.map { [$0.name, String($0.rows)] }
                ).rendered)
            print(
                "Check it with: kotasync-server audit verify --config \(configPath) --master \(target)"
            )
        }
    }
}
