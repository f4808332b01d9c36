import ArgumentParser
import Foundation
import KotaSyncCore
import KotaSyncServer

#if canImport(Glibc)
    import Glibc
#endif

/// `kotasync-server user`: staff accounts, which log in with `POST /v1/login` for a session token.
struct UserCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "user",
        abstract: "Manage staff accounts (the dashboard's logins).",
        discussion: """
            A viewer reads the review queue, a reviewer also resolves conflicts, an admin also manages \
            tokens and accounts. Passwords are read from standard input (prompted, without echo, on a \
            terminal), never from the command line, and stored as salted scrypt hashes.
            """,
        subcommands: [Add.self, List.self, Remove.self, Passwd.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a staff account; asks for its password.")

        @OptionGroup var master: MasterOptions

        @Argument(help: "The account's name (the person's name, shown with their decisions).")
        var name: String

        @Option(help: "The account's role: viewer, reviewer or admin.")
        var role: TokenCommand.StaffRole

        func run() async throws {
            try await master.withAccounts(logger: quietLogger) { store in
                let password = try readPassword(confirm: true)
                let user = try await refusingWithExitCode {
                    try await store.addUser(name: name, role: role.role, password: password)
                }
                try await store.audit("user.add", ["user": user.name, "role": user.role])
                FileHandle.standardError.write(Data("User \(user.name) (\(user.role)) added.\n".utf8))
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List staff accounts.")

        @OptionGroup var master: MasterOptions

        @Flag(help: "Print JSON, as GET /v1/admin/users answers.")
        var json = false

        func run() async throws {
            try await master.withAccounts(logger: quietLogger) { store in
                let users = try await store.users()
                if json {
                    try printJSON(UserList(users: users))
                } else if users.isEmpty {
                    print("No staff accounts yet: `user add NAME --role viewer|reviewer|admin` makes one.")
                } else {
                    print(
                        TextTable(
                            header: ["name", "role", "created", "password changed"],
                            rows: users.map { [$0.name, $0.role, $0.createdAt, $0.changedAt] }
                        ).rendered)
                }
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a staff account; its open sessions are revoked at once.")

        @OptionGroup var master: MasterOptions

        @Argument(help: "The account's name.")
        var name: String

        func run() async throws {
            try await master.withAccounts(logger: quietLogger) { store in
                try await refusingWithExitCode { try await store.removeUser(name: name) }
                try await store.audit("user.remove", ["user": name])
                FileHandle.standardError.write(Data("User \(name) removed.\n".utf8))
            }
        }
    }

    struct Passwd: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set a staff account's password; its open sessions are revoked.")

        @OptionGroup var master: MasterOptions

        @Argument(help: "The account's name.")
        var name: String

        func run() async throws {
            try await master.withAccounts(logger: quietLogger) { store in
                let password = try readPassword(confirm: true)
                try await refusingWithExitCode { try await store.setPassword(name: name, password: password) }
                try await store.audit("user.passwd", ["user": name])
                FileHandle.standardError.write(Data("Password of \(name) changed.\n".utf8))
            }
        }
    }
}

/// Reads a password: on a terminal, prompted without echo (twice when `confirm`); otherwise the
/// first line of standard input, so scripts can pipe it in. Never an argument: those show in
/// `ps` and shell histories.
func readPassword(confirm: Bool) throws -> String {
    guard isatty(STDIN_FILENO) == 1 else {
        guard let line = readLine(strippingNewline: true), !line.isEmpty else {
            throw ValidationError("Give the password on standard input (one line).")
        }
        return line
    }
    func prompt(_ text: String) -> String {
        guard let pointer = getpass(text) else { return "" }
        return String(cString: pointer)
    }
    let first = prompt("Password: ")
    if confirm, prompt("Again: ") != first {
        throw ValidationError("The two passwords differ; nothing was changed.")
    }
    return first
}
