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
        subcommands: [Serve.self, TokenCommand.self],
        defaultSubcommand: Serve.self
    )
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
        commandName: "token", abstract: "Manage device tokens.", subcommands: [Create.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a device token for an OPD and print it once.")

        @OptionGroup var master: MasterOptions

        @Option(help: "The OPD the device belongs to (an id from the config's opds list).")
        var opd: String

        @Option(help: "Days until the token expires; never if not given.")
        var expires: Int?

        func run() async throws {
            let (_, store) = try exitOnConfigError { try master.open(logger: Logger(label: "kotasync.token")) }
            let expiry = expires.map { Date().addingTimeInterval(TimeInterval($0) * 86_400) }
            do {
                let issued = try await store.createToken(opd: opd, expiresAt: expiry)
                print(issued.token)
                FileHandle.standardError.write(
                    Data(
                        "Token \(issued.id) for OPD \(issued.opd) created. It is shown only this once; the server keeps only its hash.\n"
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
