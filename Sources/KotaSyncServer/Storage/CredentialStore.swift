import Foundation
import KotaSyncCore

/// A credential, as the server knows it after checking a bearer token: a device of an OPD, or a
/// member of the Command Center's staff.
public struct Device: Sendable, Equatable {
    /// What a token may do.
    public enum Role: String, Sendable, Codable, CaseIterable {
        /// Pushes and pulls for its OPD; never opens a staff route.
        case device
        /// Reads the review queue.
        case viewer
        /// Reads the review queue and resolves conflicts.
        case reviewer
        /// Everything a reviewer may, and manages tokens.
        case admin
    }

    /// The token's id (not the secret).
    public var tokenID: String
    /// The OPD the token belongs to (empty for staff).
    public var opd: String
    public var role: Role
    /// A person's name, for staff tokens; recorded with what they decide.
    public var name: String?
    /// True for a session token from `POST /v1/login` (a staff account's), false for tokens made
    /// with `token create`.
    public var session = false

    /// `device`, `staff` or `session`, as token lists and the audit log name it.
    public var kind: String { role == .device ? "device" : session ? "session" : "staff" }

    public init(tokenID: String, opd: String, role: Role = .device, name: String? = nil) {
        self.tokenID = tokenID
        self.opd = opd
        self.role = role
        self.name = name
    }
}

/// A newly created token. The secret is shown once; only its hash is stored.
public struct IssuedToken: Sendable, Equatable {
    public var id: String
    /// The OPD of a device token; empty for staff.
    public var opd: String
    /// The bearer token to give to the device or the staff member.
    public var token: String
    public var expiresAt: Date?
    public var role: Device.Role = .device
    /// The staff member's name; nil for a device token.
    public var name: String?
}

/// The master's credentials role: bearer tokens of devices and staff, staff accounts and their
/// sessions. Only a token's hash is stored; no method returns a secret except at its creation.
public protocol CredentialStore: Sendable {
    /// The device a bearer token belongs to, or nil if the token is unknown, revoked or expired.
    func authenticate(token: String) async throws -> Device?
    /// Creates a device token for an OPD (`bad_request` for an OPD the config does not name).
    func createToken(opd: String, expiresAt: Date?) async throws -> IssuedToken
    /// Creates a token for a member of the Command Center's staff: `role` is `viewer`,
    /// `reviewer` or `admin` (`bad_request` for `device`), `name` is recorded with every decision
    /// made with it. A staff token belongs to no OPD: it opens the review API and never pushes
    /// or pulls.
    func createStaffToken(name: String, role: Device.Role, expiresAt: Date?) async throws -> IssuedToken
    /// Every token, newest first: ids, holders and times, never a secret or a hash.
    func tokens() async throws -> [TokenDocument]
    /// Revokes a token: the next request with it is refused. `not_found` for an unknown id;
    /// revoking a revoked token changes nothing. Returns the token as it stands afterwards.
    func revokeToken(id: String) async throws -> TokenDocument
    /// Adds a staff account (`bad_request` if the name is taken or the password too short).
    func addUser(name: String, role: Device.Role, password: String) async throws -> UserDocument
    /// Every staff account, by name.
    func users() async throws -> [UserDocument]
    /// Removes a staff account and revokes its sessions. `not_found` for an unknown name.
    func removeUser(name: String) async throws
    /// Sets a new password and revokes the account's sessions. `not_found` for an unknown name.
    func setPassword(name: String, password: String) async throws
    /// Checks a staff account's password; on success opens a session: a bearer token with the
    /// account's role that expires after `minutes`. Nil when the name or the password is wrong.
    func login(name: String, password: String, minutes: Int) async throws -> IssuedToken?
}
