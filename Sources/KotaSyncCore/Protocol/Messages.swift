import Foundation

/// The protocol version this build speaks; `GET /v1/schema` reports it.
public let kotaSyncProtocolVersion = 1

/// This build's client name and version, as sent in `KotaSync-Client`.
public let kotaSyncClientVersion = "kotasync/0.6.0"

/// JSON coding shared by server and client: snake_case keys, as `Protocol/http-api.md` shows them.
public enum ProtocolJSON {
    public static func encoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.keyEncodingStrategy = .convertToSnakeCase
        e.outputFormatting = [.sortedKeys]
        return e
    }

    public static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        return d
    }
}

/// `GET /v1/schema`: what a replica needs to create its tables.
public struct SchemaDocument: Codable, Sendable, Equatable {
    public var protocolVersion: Int
    /// The server's configured name (e.g. the city).
    public var server: String
    /// The OPD the calling token belongs to.
    public var opd: String
    public var tables: [TableSchema]
    /// The push limits the server enforces, so a client can split its changes to fit.
    public var limits: PushLimits?
    /// The schema version `tables` are at (the config's `schema_version`); absent from a server
    /// that declares none: version 1.
    public var schemaVersion: Int?
    /// The oldest schema version the server syncs with (`min_client_schema`); absent: 1.
    public var minClientSchema: Int?

    public init(
        protocolVersion: Int = kotaSyncProtocolVersion, server: String, opd: String, tables: [TableSchema],
        limits: PushLimits? = nil, schemaVersion: Int? = nil, minClientSchema: Int? = nil
    ) {
        self.protocolVersion = protocolVersion
        self.server = server
        self.opd = opd
        self.tables = tables
        self.limits = limits
        self.schemaVersion = schemaVersion
        self.minClientSchema = minClientSchema
    }
}

/// The sizes a server accepts in one push.
public struct PushLimits: Codable, Sendable, Equatable {
    /// The largest request body (the encoded changeset).
    public var maxBodyBytes: Int
    /// The largest uncompressed payload.
    public var maxUncompressedBytes: Int
    /// The most rows in one changeset.
    public var maxRows: Int

    public init(maxBodyBytes: Int, maxUncompressedBytes: Int, maxRows: Int) {
        self.maxBodyBytes = maxBodyBytes
        self.maxUncompressedBytes = maxUncompressedBytes
        self.maxRows = maxRows
    }
}

/// The body of a successful `POST /v1/push`.
/// The headers a client sends about itself on every request, for the Command Center's overview.
public enum DeviceHeaders {
    /// The replica's id.
    public static let replica = "KotaSync-Replica"
    /// The client program and version, e.g. `kotasync/0.5.0`.
    public static let client = "KotaSync-Client"
    /// Rows with local changes not yet acknowledged.
    public static let pending = "KotaSync-Pending"
    /// The code of the last error the client met, or absent.
    public static let lastError = "KotaSync-Last-Error"
}

public struct PushReply: Codable, Sendable, Equatable {
    public var changesetId: UUID
    public var replicaId: UUID
    /// Rows in the changeset.
    public var rows: Int
    /// Rows whose change reached the master (fully or in part).
    public var applied: Int
    /// Stamps that were too far in the future and were clamped to the server's clock.
    public var clampedStamps: Int
    /// The master's change sequence after this changeset.
    public var masterSequence: UInt64
    /// Conflicts this changeset took part in.
    public var conflicts: [ConflictReport]
    /// Rows the server refused, each with a stable code (``RejectedRow/code``); absent when none.
    public var rejected: [RejectedRow]?

    public init(
        changesetId: UUID, replicaId: UUID, rows: Int, applied: Int, clampedStamps: Int, masterSequence: UInt64,
        conflicts: [ConflictReport], rejected: [RejectedRow]? = nil
    ) {
        self.changesetId = changesetId
        self.replicaId = replicaId
        self.rows = rows
        self.applied = applied
        self.clampedStamps = clampedStamps
        self.masterSequence = masterSequence
        self.conflicts = conflicts
        self.rejected = rejected
    }
}

/// A row of a push that the server refused on its own (the rest of the changeset applied).
public struct RejectedRow: Codable, Sendable, Equatable, Hashable {
    public var table: String
    public var primaryKey: [SQLValue]
    /// A stable code: `out_of_scope`, `read_only_table`, `unknown_base_version`, `value_too_large` or
    /// `row_too_large` (`Protocol/merge.md` §14).
    public var code: String
    public var message: String
    /// What the replica should do with its copy: `restore` (the master sends its version on the
    /// next pull) or `discard` (the master holds no row this device may see: drop the local copy).
    public var action: String

    public init(table: String, primaryKey: [SQLValue], code: String, message: String, action: String) {
        self.table = table
        self.primaryKey = primaryKey
        self.code = code
        self.message = message
        self.action = action
    }
}

/// One recorded conflict: two changes that could not both stand, and which one did.
public struct ConflictReport: Codable, Sendable, Equatable, Hashable {
    /// What collided.
    public enum Kind: String, Codable, Sendable {
        /// Two replicas changed the same column without seeing each other's change.
        case updateUpdate = "update_update"
        /// Two replicas created a row with the same primary key.
        case insertInsert = "insert_insert"
        /// One replica deleted a row that another changed.
        case deleteUpdate = "delete_update"
        /// The incoming row would break a UNIQUE constraint of the master (e.g. two clinics
        /// registered the same NIK offline). The row is quarantined: not applied, kept in the
        /// record (``ConflictReport/held``) beside the row it collided with (``ConflictReport/related``).
        case unique
        /// The incoming row refers to a row (its parent, ``ConflictReport/related``) the master
        /// does not have live. Held and retried when the parent arrives (`held`); queued for a
        /// person (`open`) when the parent was deleted or rejected.
        case foreignKey = "foreign_key"
        /// A later change of a row that is held or quarantined: it waits behind that record and
        /// is merged, in order, when the record is resolved (``ConflictReport/related`` is the record's row).
        case queued
    }

    /// Where a record stands. Stored as text; these are the values the server writes.
    public enum Status: String, Codable, Sendable, CaseIterable {
        /// Decided by the table's policy; the losing value is kept in the record and a reviewer
        /// may reverse the decision.
        case auto
        /// Waiting for a person: a `manual` policy, a quarantined row, or a row whose parent was deleted.
        case open
        /// Waiting for something to arrive (a foreign-key parent), then merged automatically.
        case held
        /// A reviewer decided (see ``ConflictReport/resolution``).
        case resolved
        /// A later change saw both sides; the record no longer stands.
        case superseded
    }

    /// One side of a conflict.
    public struct Side: Codable, Sendable, Equatable, Hashable {
        public var replicaId: UUID
        public var opd: String
        /// The change's hybrid-clock stamp (raw 64-bit value as a decimal string).
        public var stamp: String
        /// The column's value on this side; absent for a delete.
        public var value: SQLValue?

        public init(replicaId: UUID, opd: String, stamp: HLC, value: SQLValue?) {
            self.replicaId = replicaId
            self.opd = opd
            self.stamp = String(stamp.rawValue)
            self.value = value
        }
    }

    public var id: Int64
    public var table: String
    public var primaryKey: [SQLValue]
    /// The column, for column conflicts; absent for a delete conflict.
    public var column: String?
    public var kind: Kind
    /// The rule that decided (e.g. `lww`, `update-wins`).
    public var policy: String
    /// The value before either change, where the master still has it.
    public var base: SQLValue?
    /// The side the master kept. Absent in a device's view of a record whose other side is
    /// outside its OPD's scope, when the kept side is that other one (`Protocol/access.md`).
    public var winner: Side?
    /// The side that lost, or the change the master holds back (quarantined, held, queued).
    /// Absent in a device's view when it is another OPD's and out of scope.
    public var loser: Side?
    /// One of ``Status``: `auto`, `open`, `held`, `resolved` or `superseded`.
    public var status: String
    /// When the server decided (ISO 8601).
    public var decidedAt: String
    /// Why the merge decided as it did, or why the row waits, in words.
    public var reason: String?
    /// For `unique`, `foreign_key` and `queued`: the incoming row, which is not in the master.
    public var held: HeldRow?
    /// For `unique`: the row it collided with; for `foreign_key`: the parent it needs; for
    /// `queued`: the row of the record it waits behind.
    public var related: RowReference?
    /// Set once a reviewer decided.
    public var resolution: Resolution?

    public init(
        id: Int64, table: String, primaryKey: [SQLValue], column: String?, kind: Kind, policy: String,
        base: SQLValue?, winner: Side?, loser: Side?, status: String, decidedAt: String
    ) {
        self.id = id
        self.table = table
        self.primaryKey = primaryKey
        self.column = column
        self.kind = kind
        self.policy = policy
        self.base = base
        self.winner = winner
        self.loser = loser
        self.status = status
        self.decidedAt = decidedAt
    }
}

/// A row that was not applied, as it arrived: its operation and its values by column name
/// (key columns included).
public struct HeldRow: Codable, Sendable, Equatable, Hashable {
    /// `upsert`, `update` or `delete`.
    public var operation: String
    public var values: [String: SQLValue]

    public init(operation: String, values: [String: SQLValue]) {
        self.operation = operation
        self.values = values
    }
}

/// A row of a replicated table, by key.
public struct RowReference: Codable, Sendable, Equatable, Hashable {
    public var table: String
    public var primaryKey: [SQLValue]

    public init(table: String, primaryKey: [SQLValue]) {
        self.table = table
        self.primaryKey = primaryKey
    }
}

/// Which side a reviewer takes when resolving a record.
///
/// For a column record, `local` keeps the master's value (the winner), `remote` takes the losing
/// value, `merged` sets the value given in ``ResolveRequest/set``. For a `delete_update` record,
/// `local` keeps the row as the master has it, `remote` does what the losing side did (delete it,
/// or bring it back). For a quarantined row (`unique`): `local` rejects the incoming row,
/// `remote` keeps both rows (after correcting the incoming one with `set`), `merged` merges the
/// incoming row into the row it collided with (fields from `set`; rows that refer to the
/// incoming row are re-pointed to the survivor). For a held row (`foreign_key`, `queued`):
/// `local` rejects it, `remote` applies it (corrected with `set`).
public enum ResolutionChoice: String, Codable, Sendable, CaseIterable {
    case local, remote, merged
}

/// A reviewer's decision, as `POST /v1/review/conflicts/{id}/resolve` takes it.
public struct ResolveRequest: Codable, Sendable, Equatable {
    public var take: ResolutionChoice
    /// Column values to set, by column name.
    public var set: [String: SQLValue]?
    public var note: String?

    public init(take: ResolutionChoice, set: [String: SQLValue]? = nil, note: String? = nil) {
        self.take = take
        self.set = set
        self.note = note
    }
}

/// A reviewer's decision, as recorded.
public struct Resolution: Codable, Sendable, Equatable, Hashable {
    public var take: ResolutionChoice
    /// The values the resolution wrote, by column name.
    public var values: [String: SQLValue]?
    public var note: String?
    /// Who decided (a staff token's name).
    public var by: String
    /// When (ISO 8601).
    public var at: String
    /// The master version of the change the resolution made, if it made one.
    public var masterVersion: UInt64?

    public init(
        take: ResolutionChoice, values: [String: SQLValue]?, note: String?, by: String, at: String,
        masterVersion: UInt64?
    ) {
        self.take = take
        self.values = values
        self.note = note
        self.by = by
        self.at = at
        self.masterVersion = masterVersion
    }
}

/// `GET /v1/conflicts`: conflicts in which the caller's replicas took part.
public struct ConflictList: Codable, Sendable, Equatable {
    public var conflicts: [ConflictReport]
    /// Pass as `after` to get the next page; absent on the last page.
    public var next: Int64?

    public init(conflicts: [ConflictReport], next: Int64?) {
        self.conflicts = conflicts
        self.next = next
    }
}

/// The body of every error response.
public struct ErrorBody: Codable, Sendable, Equatable {
    public struct Detail: Codable, Sendable, Equatable {
        public var code: String
        public var message: String
    }

    public var error: Detail

    public init(_ error: SyncError) {
        self.error = Detail(code: error.code.rawValue, message: error.message)
    }

    public var syncError: SyncError { SyncError(SyncError.Code(rawValue: error.code), error.message) }
}

/// Response headers of `GET /v1/pull`.
public enum PullHeaders {
    /// The cursor to pass as `after` for the next page.
    public static let nextCursor = "KotaSync-Next-Cursor"
    /// `true` when more rows wait after this page.
    public static let hasMore = "KotaSync-Has-More"
    /// `true` on a push reply that repeats the reply to an earlier delivery of the same changeset.
    public static let replay = "KotaSync-Replay"
}

/// The media type of a changeset body.
public let changesetMediaType = "application/vnd.kotasync.changeset"
