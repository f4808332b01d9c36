import ArgumentParser
import Foundation
import KotaSyncCore
import KotaSyncServer
import Logging

/// `kotasync-server token`: device and staff tokens on the master database directly.
struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "Manage device and staff tokens.",
        subcommands: [Create.self, List.self, Revoke.self])

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
            if let expires, !(1...36_500).contains(expires) {
                throw ValidationError("--expires \(expires) is out of range; give 1 to 36500 days (100 years).")
            }
        }

        func run() async throws {
            try await master.withAccounts(logger: Logger(label: "kotasync.token")) { store in
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
                    try await store.audit(
                        "token.create",
                        [
                            "token": issued.id, "role": issued.role.rawValue, "opd": issued.opd,
                            "name": issued.name ?? "",
                        ])
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

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List every token: id, kind, role, OPD or name, created, expires, revoked, last used.",
            discussion: "Never shows a token's secret or hash (the server does not have the secret).")

        @OptionGroup var master: MasterOptions

        @Flag(help: "Print JSON, as GET /v1/admin/tokens answers.")
        var json = false

        func run() async throws {
            try await master.withAccounts(logger: quietLogger) { store in
                let tokens = try await store.tokens()
                if json {
                    try printJSON(TokenList(tokens: tokens))
                    return
                }
                guard !tokens.isEmpty else {
                    print("No tokens yet: `token create --opd ID` makes one.")
                    return
                }
                let rows = tokens.map { t in
                    [
                        t.id, t.kind, t.role, t.opd ?? t.name ?? "", t.createdAt, t.expiresAt ?? "never",
                        t.revokedAt ?? "-", t.lastUsedAt ?? "never",
                    ]
                }
                print(
                    TextTable(
                        header: ["id", "kind", "role", "opd/name", "created", "expires", "revoked", "last used"],
                        rows: rows
                    ).rendered)
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke a token: the next request made with it is refused (401), also on a running server.")

        @OptionGroup var master: MasterOptions

        @Argument(help: "The token's id (the second part of kst_<id>_…, or from `token list`).")
        var id: String

        func run() async throws {
            try await master.withAccounts(logger: quietLogger) { store in
                let token = try await refusingWithExitCode { try await store.revokeToken(id: id) }
                try await store.audit("token.revoke", ["token": token.id])
                FileHandle.standardError.write(
                    Data("Token \(token.id) (\(token.kind) \(token.opd ?? token.name ?? "")) is revoked.\n".utf8))
            }
        }
    }
}
