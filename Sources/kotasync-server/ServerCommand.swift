import ArgumentParser
import Foundation
import KotaSyncCore
import KotaSyncDashboard
import KotaSyncServer
import Logging

@main
struct ServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kotasync-server",
        abstract: "The KotaSync central sync server and its administration commands.",
        discussion: """
            Exit status: 0 success; 2 a usage or configuration error; 3 `audit verify` found the audit log \
            edited, inserted into or cut; 4 the master refused the request (not found, or not allowed for \
            this record); 1 anything else.
            """,
        subcommands: [
            Serve.self, TokenCommand.self, UserCommand.self, ConflictsCommand.self, HistoryCommand.self,
            AuditCommand.self, ImportCommand.self, ExportCommand.self, MasterCommand.self,
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
            // A PostgreSQL failure as the protocol's code and words, not PostgresNIO's generic text.
            exit(withError: PostgresFailure.syncError(error) ?? error)
        }
    }
}

/// Options every command that opens the master shares.
struct MasterOptions: ParsableArguments {
    @Option(help: "The server configuration (YAML).")
    var config: String = "kotasync.yaml"

    @Option(
        name: .customLong("master"),
        help: ArgumentHelp(
            "Where the master is: an SQLite file (created on first start) or postgresql://USER@HOST:PORT/DATABASE.",
            discussion: "Else KOTASYNC_MASTER, else the config's `master:`, else kotasync-master.sqlite."))
    var location: String?

    @Option(help: "The SQLite master file (the same as --master PATH).")
    var db: String?

    @Option(
        help: ArgumentHelp(
            "A file holding the PostgreSQL master's password (else KOTASYNC_MASTER_PASSWORD_FILE, else PGPASSWORD).",
            valueName: "file"))
    var masterPasswordFile: String?

    func validate() throws {
        if location != nil, db != nil { throw ValidationError("Give either --master or --db, not both.") }
    }

    /// The configuration and where its master is.
    func resolve() throws -> (ServerConfig, MasterLocation) {
        let config = try ServerConfig.load(from: URL(fileURLWithPath: config))
        let location = try MasterLocation.resolve(
            flag: location ?? db, environment: ProcessInfo.processInfo.environment, config: config.master,
            defaultPath: "kotasync-master.sqlite")
        return (config, location)
    }

    /// Opens the master with every role (serving, review, transfer files, history). `close`
    /// writes what is queued and closes the connections.
    func open(logger: Logger) async throws -> (
        config: ServerConfig, store: any MasterStore, close: @Sendable () async -> Void
    ) {
        let (config, location, password) = try await exitOnConfigError { try resolveWithPassword() }
        let (store, close) = try await exitOnConfigError {
            try await MasterStores.open(location: location, password: password, config: config, logger: logger)
        }
        return (config, store, close)
    }

    /// Runs `body` with the master open with every role, and closes it after (whatever happens).
    func withMaster<T>(logger: Logger, _ body: (ServerConfig, any MasterStore) async throws -> T) async throws -> T {
        let (config, store, close) = try await open(logger: logger)
        do {
            let result = try await body(config, store)
            await close()
            return result
        } catch {
            await close()
            throw error
        }
    }

    /// The configuration, where its master is, and the PostgreSQL master's password (if any).
    private func resolveWithPassword() throws -> (ServerConfig, MasterLocation, String?) {
        let (config, location) = try resolve()
        let password = try MasterLocation.password(
            file: masterPasswordFile, environment: ProcessInfo.processInfo.environment)
        return (config, location, password)
    }

    /// Opens the master's accounts: tokens, staff accounts and the audit log, which every backend
    /// has. `close` writes what is queued and closes the connections.
    func openAccounts(logger: Logger) async throws -> (
        store: any CredentialStore & AuditStore, close: @Sendable () async -> Void
    ) {
        let (config, location, password) = try await exitOnConfigError { try resolveWithPassword() }
        return try await exitOnConfigError {
            try await MasterStores.openAccounts(location: location, password: password, config: config, logger: logger)
        }
    }

    /// Runs `body` with the master's accounts open, and closes them after (whatever happens).
    func withAccounts<T>(logger: Logger, _ body: (any CredentialStore & AuditStore) async throws -> T) async throws -> T
    {
        let (store, close) = try await openAccounts(logger: logger)
        do {
            let result = try await body(store)
            await close()
            return result
        } catch {
            await close()
            throw error
        }
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
        let (config, store, close) = try await master.open(logger: logger)
        // One login service for the API and the dashboard's form: failures count together.
        let logins = StaffLogins(store: store, limits: config.limits)
        let dashboard = try Dashboard(store: store, sessions: .init(logins), logger: logger)
        let app = SyncServer.application(
            config: config, store: store, host: host, port: port, logger: logger, logins: logins,
            routes: dashboard.register(on:),
            onListening: { [host] port in
                // Tests and scripts read this line to learn the port when started with --port 0.
                FileHandle.standardOutput.write(Data("kotasync-server listening on http://\(host):\(port)\n".utf8))
            })
        // Entries of the last second are still queued; a graceful stop (SIGTERM, SIGINT) keeps them.
        do {
            try await app.runService()
        } catch {
            await close()
            throw error
        }
        await close()
    }
}

/// Prints a config error's message and exits with status 2 instead of a stack of error text.
func exitOnConfigError<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let error as ConfigError {
        FileHandle.standardError.write(Data("error: \(error.message) [\(error.code)]\n".utf8))
        throw ExitCode(2)
    }
}
