import ArgumentParser
import Foundation
import KotaSyncCore
import KotaSyncServer
import Logging

@main
struct ServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kotasync-server",
        abstract: "The KotaSync central sync server and its administration commands.",
        discussion: """
            Exit status: 0 success; 2 a usage or configuration error; 4 the master refused the request \
            (not found, or not allowed for this record); 1 anything else.
            """,
        subcommands: [
            Serve.self, TokenCommand.self, ConflictsCommand.self, HistoryCommand.self, ImportCommand.self,
            ExportCommand.self,
        ],
        defaultSubcommand: Serve.self
    )

    /// Runs the command, exiting with 2 on a usage error (ArgumentParser's own default is 64),
    /// the same status as a configuration error, so scripts test for one number.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            if exitCode(for: error) == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}

/// Options every command that opens the master shares.
struct MasterOptions: ParsableArguments {
    @Option(help: "The server configuration (YAML).")
    var config: String = "kotasync.yaml"

    @Option(help: "The master SQLite database; created on first start.")
    var db: String = "kotasync-master.sqlite"

    func open(logger: Logger) throws -> (ServerConfig, SQLiteMasterStore) {
        let config = try ServerConfig.load(from: URL(fileURLWithPath: config))
        return (config, try SQLiteMasterStore(path: db, config: config, logger: logger))
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the sync server.")

    @OptionGroup var master: MasterOptions

    @Option(help: "The address to listen on.")
    var host: String = "127.0.0.1"

    @Option(help: "The port to listen on; 0 picks a free one.")
    var port: Int = 8080

    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String = "info"

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "kotasync.server")
        let (config, store) = try exitOnConfigError { try master.open(logger: logger) }
        let app = SyncServer.application(config: config, store: store, host: host, port: port, logger: logger) {
            [host] port in
            // Tests and scripts read this line to learn the port when started with --port 0.
            FileHandle.standardOutput.write(Data("kotasync-server listening on http://\(host):\(port)\n".utf8))
        }
        try await app.runService()
    }
}

struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "Manage device and staff tokens.", subcommands: [Create.self])

    /// The roles a staff token may have.
    enum StaffRole: String, ExpressibleByArgument, CaseIterable {
        case viewer, reviewer, admin

        var role: Device.Role {
            switch self {
            case .viewer: .viewer
            case .reviewer: .reviewer
            case .admin: .admin
            }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a token and print it once: a device token for an OPD, or a staff token.",
            discussion: """
                A device token (--opd) pushes and pulls for its OPD. A staff token (--staff NAME --role R) \
                opens the review API: a viewer reads the review queue, a reviewer also resolves conflicts, \
                an admin may do everything; NAME is recorded with every decision. Neither opens the other's routes.
                """)

        @OptionGroup var master: MasterOptions

        @Option(help: "The OPD the device belongs to (an id from the config's opds list).")
        var opd: String?

        @Option(help: "The staff member's name, for a staff token.")
        var staff: String?

        @Option(help: "The staff token's role: viewer, reviewer or admin.")
        var role: StaffRole?

        @Option(help: "Days until the token expires; never if not given.")
        var expires: Int?

        func validate() throws {
            switch (opd, staff) {
            case (nil, nil): throw ValidationError("Give --opd ID for a device token, or --staff NAME --role R.")
            case (.some, .some): throw ValidationError("Give either --opd or --staff, not both.")
            case (.some, nil) where role != nil: throw ValidationError("--role is for staff tokens (--staff NAME).")
            case (nil, .some) where role == nil:
                throw ValidationError("A staff token needs --role viewer, reviewer or admin.")
            default: break
            }
        }

        func run() async throws {
            let (_, store) = try exitOnConfigError { try master.open(logger: Logger(label: "kotasync.token")) }
            let expiry = expires.map { Date().addingTimeInterval(TimeInterval($0) * 86_400) }
            do {
                let issued: IssuedToken
                let holder: String
                if let staff, let role {
                    issued = try await store.createStaffToken(name: staff, role: role.role, expiresAt: expiry)
                    holder = "\(issued.role.rawValue) \(issued.name ?? staff)"
                } else {
                    issued = try await store.createToken(opd: opd ?? "", expiresAt: expiry)
                    holder = "OPD \(issued.opd)"
                }
                print(issued.token)
                FileHandle.standardError.write(
                    Data(
                        "Token \(issued.id) for \(holder) created. It is shown only this once; the server keeps only its hash.\n"
                            .utf8))
            } catch let error as SyncError {
                throw ValidationError(error.message)
            }
        }
    }
}

/// Prints a config error's message and exits with status 2 instead of a stack of error text.
func exitOnConfigError<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as ConfigError {
        FileHandle.standardError.write(Data("error: \(error.message) [\(error.code)]\n".utf8))
        throw ExitCode(2)
    }
}
