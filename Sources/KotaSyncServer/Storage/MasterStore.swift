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

/// Which records of the review queue to list.
public struct ReviewFilter: Sendable, Equatable {
    /// One of ``ConflictReport/Status``'s raw values; all when nil.
    public var status: String?
    public var table: String?
    /// Records where either side was written by this OPD.
    public var opd: String?
    /// Records with an id above this.
    public var after: Int64
    public var limit: Int

    public init(status: String? = nil, table: String? = nil, opd: String? = nil, after: Int64 = 0, limit: Int = 100) {
        self.status = status
        self.table = table
        self.opd = opd
        self.after = after
        self.limit = limit
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

/// One page of merged changes for a pull.
public struct PullPage: Sendable {
    /// The encoded pull changeset.
    public var body: [UInt8]
    public var rows: Int
    /// The cursor to ask from next.
    public var nextCursor: UInt64
    public var hasMore: Bool
}

/// The result of a push.
public struct PushOutcome: Sendable {
    /// The JSON reply body.
    public var reply: Data
    /// True when the changeset had been applied before and `reply` is the stored reply.
    public var replayed: Bool
}

/// Everything the server keeps in its master database.
///
/// All master-database SQL lives behind this protocol, so a second backend (PostgreSQL, for a
/// city that outgrows one machine) is a second implementation of it. Every method is durable on
/// return: a push that returns has been committed with a full sync.
public protocol MasterStore: Sendable {
    /// Merges a validated push changeset from a device of `device.opd` in one transaction.
    func push(_ changeset: Changeset, from device: Device) async throws -> PushOutcome
    /// Merges a push that was checked without keeping its rows (a request body or a committed
    /// upload), reading its rows again one at a time; otherwise as the push of a decoded changeset.
    func push(_ checked: CheckedPush, from device: Device) async throws -> PushOutcome
    /// The merged rows whose version is above `cursor` that a device of `opd` may see (all of
    /// them when nil), at most `limit` of them; rows it no longer sees come as deletes.
    func pull(after cursor: UInt64, limit: Int, opd: String?) async throws -> PullPage
    /// Conflicts in which `replica` took part, after conflict id `after`. The replica must belong
    /// to `device`'s OPD.
    func conflicts(involving replica: UUID, of device: Device, after: Int64, limit: Int) async throws -> ConflictList
    /// The device a bearer token belongs to, or nil if the token is unknown, revoked or expired.
    func authenticate(token: String) async throws -> Device?
    /// Creates a device token for an OPD.
    func createToken(opd: String, expiresAt: Date?) async throws -> IssuedToken
    /// Creates a token for a member of the Command Center's staff: `role` is `viewer`,
    /// `reviewer` or `admin` (`bad_request` for `device`), `name` is recorded with every decision
    /// made with it. A staff token belongs to no OPD: it opens the review API and never pushes
    /// or pulls.
    func createStaffToken(name: String, role: Device.Role, expiresAt: Date?) async throws -> IssuedToken
    /// Keeps what a device said about itself on a request, for the overview.
    func record(_ report: DeviceReport, pulled: Bool) async throws
    /// The review queue: conflict records in id order, filtered.
    func reviewConflicts(_ filter: ReviewFilter) async throws -> ConflictList
    /// One record; `not_found` if there is none with this id.
    func reviewConflict(id: Int64) async throws -> ConflictReport
    /// Resolves a record as a reviewer decided: the decision is a new change of the master (it
    /// flows to every replica that holds the row), and the record keeps both sides and the
    /// decision. Returns the record as it stands afterwards.
    func resolveConflict(id: Int64, _ request: ResolveRequest, by reviewer: String) async throws -> ConflictReport

    // MARK: Credentials and audit (branch `creds`)

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
    /// Queues an audit entry; it is written, hash-chained, within about a second (batched with
    /// the others), and at the latest by ``flushAudit()``.
    func recordAudit(_ entry: AuditEntry)
    /// Writes every queued audit entry and token use now.
    func flushAudit() async throws
    /// Audit entries in id order: since a time, of an OPD, after an id, at most `limit`.
    func auditEntries(since: Date?, opd: String?, after: Int64, limit: Int) async throws -> [AuditEntry]
    /// Recomputes the audit log's hash chain; the first problem found, or nil when intact, and
    /// the number of entries checked.
    func verifyAudit() async throws -> (checked: Int, problem: AuditChainCheck.Problem?)
}
