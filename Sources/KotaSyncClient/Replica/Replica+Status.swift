import Foundation
import GRDB
import KotaSyncCore

/// What `kotasync status` reports.
public struct ReplicaStatus: Codable, Sendable, Equatable {
    /// A changeset sent but not yet acknowledged.
    public struct InFlight: Codable, Sendable, Equatable {
        public var changesetId: UUID
        public var rows: Int
        public var createdAt: String
    }

    public var replicaId: UUID
    public var server: String
    public var opd: String
    public var database: String
    /// The schema version of the replica's tables: the server's when the replica was made.
    public var schemaVersion = 1
    /// Rows with local changes the server has not acknowledged.
    public var pendingChanges: Int
    /// Entries in the change log (one per captured write).
    public var logEntries: Int
    public var inFlight: InFlight?
    /// The master version this replica has pulled up to.
    public var cursor: UInt64
    public var lastPushAt: String?
    public var lastPullAt: String?
    public var lastSyncAt: String?
    public var lastError: ErrorRecord?
    /// Conflicts the server reported for this replica's changes.
    public var conflicts: [ConflictReport]
    /// What became of this replica's changes that lost, wait or were decided by a reviewer,
    /// one per conflict record (records where its change stood are left out).
    public var outcomes: [ChangeOutcome]
    /// How many of ``outcomes`` are of each kind.
    public var outcomeCounts: ChangeOutcome.Counts
    /// Rows the server refused for this device (outside its OPD's scope, or a read-only table).
    public var refused: [RejectedRow]
    /// Every record with a change in flight or recently settled, and where its change stands;
    /// at most ``recordLimit`` of each state (``recordCounts`` has the full numbers).
    public var records: [RecordState] = []
    /// How many records are in each state, by ``RecordState/State`` raw value.
    public var recordCounts: [String: Int] = [:]
    /// What to do about ``lastError``.
    public var advice: String?

    /// The most records of one state that ``records`` lists.
    public static let recordLimit = 1_000
}

/// Where one record's change stands, as `kotasync status` lists it.
public struct RecordState: Codable, Sendable, Equatable {
    /// The states of a change, in the order it passes them.
    public enum State: String, Codable, Sendable, CaseIterable {
        /// Captured in the change log, not sent yet.
        case pending
        /// In the outbox: sent (or exported) and not acknowledged yet; sent again, byte for byte,
        /// until the server acknowledges it.
        case sent
        /// The server acknowledged it (recently: the last ``Replica/acknowledgedMemory``).
        case acknowledged
        /// The server recorded a conflict about it that went against it, or waits for a person.
        case conflicted
        /// The server refused the row for this device (outside its scope, or a read-only table).
        case rejected
    }

    /// The record's table.
    public var table: String
    /// The record's key values, in key column order.
    public var primaryKey: [SQLValue]
    /// Where its change stands.
    public var state: State
    /// One line about it: the operation, the conflict's outcome, the refusal's reason.
    public var detail: String
    /// When it reached this state, where known.
    public var at: String?

    /// A record's state as `status` lists it.
    public init(table: String, primaryKey: [SQLValue], state: State, detail: String, at: String? = nil) {
        self.table = table
        self.primaryKey = primaryKey
        self.state = state
        self.detail = detail
        self.at = at
    }
}

/// What became of one of this replica's changes that the server recorded in a conflict, and why.
public struct ChangeOutcome: Codable, Sendable, Equatable {
    /// The kinds of outcome `kotasync status` counts.
    public enum Kind: String, Codable, Sendable, CaseIterable {
        /// Another change won by the table's policy, or a reviewer decided against this change.
        case overridden
        /// The row would break a UNIQUE constraint of the master: not applied, not lost, waiting
        /// for the Command Center.
        case quarantined
        /// The row waits for a row it refers to, or behind a held row of its own; merged
        /// automatically when that is settled.
        case held
        /// A reviewer rejected the row.
        case rejected
        /// The change waits for a person's decision (a `manual` policy, a deleted parent).
        case awaitingReview = "awaiting_review"
    }

    /// The conflict record's id.
    public var conflictId: Int64
    public var kind: Kind
    /// One line saying why.
    public var why: String

    /// How many changes had each outcome.
    public struct Counts: Codable, Sendable, Equatable {
        /// Changes another change or a reviewer overrode.
        public var overridden = 0
        /// Rows that would break a UNIQUE constraint, waiting for the Command Center.
        public var quarantined = 0
        /// Rows waiting for a row they refer to, or behind a held row.
        public var held = 0
        /// Rows a reviewer rejected.
        public var rejected = 0
        /// Changes waiting for a decision at the Command Center.
        public var awaitingReview = 0

        public init(_ outcomes: [ChangeOutcome]) {
            for outcome in outcomes {
                switch outcome.kind {
                case .overridden: overridden += 1
                case .quarantined: quarantined += 1
                case .held: held += 1
                case .rejected: rejected += 1
                case .awaitingReview: awaitingReview += 1
                }
            }
        }
    }

    public init(conflictId: Int64, kind: Kind, why: String) {
        self.conflictId = conflictId
        self.kind = kind
        self.why = why
    }

    /// What `report` means for `replica`'s change; nil when the change stands (it won, a later
    /// change saw both sides, a reviewer took its side) or the record is of a status this
    /// client does not know.
    public static func of(_ report: ConflictReport, for replica: UUID) -> ChangeOutcome? {
        let rowKinds: Set<ConflictReport.Kind> = [.unique, .foreignKey, .queued]
        let isRowRecord = rowKinds.contains(report.kind)
        let isLoser = report.loser?.replicaId == replica
        guard isLoser || report.winner?.replicaId == replica else { return nil }
        func outcome(_ kind: Kind, _ why: String) -> ChangeOutcome {
            ChangeOutcome(conflictId: report.id, kind: kind, why: why)
        }
        // A device is not told the other side of a record when it is another OPD's row.
        let other = isLoser ? report.winner : report.loser
        let otherName = other?.opd ?? "another device"
        let otherValue = other.map { valueText($0.value) } ?? "its value"
        let reason = report.reason.map { " (\($0))" } ?? ""
        func overridden() -> ChangeOutcome {
            guard report.column != nil else {
                let what =
                    switch report.policy {
                    case "update-wins": "changed the row while this replica deleted it; update-wins keeps the row"
                    case "delete-wins": "deleted the row while this replica changed it; delete-wins removes it"
                    default: "changed the row too, and its change won (\(report.policy))"
                    }
                return outcome(.overridden, "\(otherName) \(what)\(reason)")
            }
            return outcome(
                .overridden,
                "\(otherName) changed it too, without seeing this change; \(policyText(report.policy)) kept \(otherValue)\(reason)"
            )
        }
        switch ConflictReport.Status(rawValue: report.status) {
        case .superseded, nil:
            return nil
        case .resolved:
            let resolution = report.resolution
            let by = resolution.map { " by \($0.by)" + ($0.note.map { ": \($0)" } ?? "") } ?? ""
            switch (resolution?.take, isLoser) {
            case (.local, true):
                return isRowRecord
                    ? outcome(.rejected, "rejected at the Command Center\(by)")
                    : outcome(.overridden, "the Command Center kept \(otherName)'s \(otherValue)\(by)")
            case (.merged, true):
                return outcome(
                    .overridden,
                    isRowRecord
                        ? "merged into \(rowText(report.related)) at the Command Center\(by)"
                        : "the Command Center wrote a merged value\(by)")
            case (.remote, false) where !isRowRecord, (.merged, false) where !isRowRecord:
                return outcome(
                    .overridden,
                    resolution?.take == .remote
                        ? "the Command Center took \(otherName)'s \(otherValue) instead\(by)"
                        : "the Command Center wrote a merged value\(by)")
            case (nil, true):
                return outcome(.overridden, "resolved at the Command Center against this change")
            default:
                return nil
            }
        case _ where !isLoser:
            return nil
        case .held:
            return outcome(
                .held,
                report.kind == .queued
                    ? "waits behind an earlier change of \(rowText(report.related)) that is held\(reason)"
                    : "waits for \(rowText(report.related)) to reach the master; merged when it does\(reason)")
        case .open:
            switch report.kind {
            case .unique:
                return outcome(
                    .quarantined,
                    "would duplicate a unique value of \(rowText(report.related)); kept aside for the Command Center\(reason)"
                )
            case .queued:
                return outcome(
                    .held, "waits behind an earlier change of \(rowText(report.related)) under review\(reason)")
            case .foreignKey:
                return outcome(
                    .awaitingReview,
                    "needs \(rowText(report.related)), which the master does not have; waits for the Command Center\(reason)"
                )
            case _ where report.policy == "manual":
                return outcome(.awaitingReview, "waits for a decision at the Command Center (manual)\(reason)")
            default:
                // Decided by a policy, from a server that still marked such records `open`.
                return overridden()
            }
        case .auto:
            return overridden()
        }
    }

    private static func valueText(_ value: SQLValue?) -> String { value?.description ?? "the deletion" }

    private static func rowText(_ row: RowReference?) -> String {
        guard let row else { return "another row" }
        return "\(row.table) [\(row.primaryKey.map(\.description).joined(separator: ", "))]"
    }

    private static func policyText(_ policy: String) -> String {
        switch policy {
        case "lww": "the later edit wins (lww), which"
        default: "the \(policy) policy"
        }
    }
}

extension Replica {
    public func status() throws -> ReplicaStatus {
        try dbQueue.read { db in
            let entries = try self.readLog(db)
            let pending = ChangeLog.coalesce(entries).count
            let inFlight = try Row.fetchOne(db, sql: "SELECT id, rows, created_at FROM _ks_outbox LIMIT 1").map {
                ReplicaStatus.InFlight(
                    changesetId: UUID(uuidString: $0["id"])!, rows: $0["rows"], createdAt: $0["created_at"])
            }
            let decoder = ProtocolJSON.decoder()
            let conflicts = try String.fetchAll(db, sql: "SELECT report FROM _ks_conflicts ORDER BY id").compactMap {
                try? decoder.decode(ConflictReport.self, from: Data($0.utf8))
            }
            let outcomes = conflicts.compactMap { ChangeOutcome.of($0, for: self.id) }
            var refused: [RejectedRow] = []
            if try db.tableExists("_ks_rejected") {
                for row in try Row.fetchAll(
                    db, sql: "SELECT tbl, pk, code, message, action FROM _ks_rejected ORDER BY rejected_at")
                {
                    refused.append(
                        RejectedRow(
                            table: row["tbl"], primaryKey: try PrimaryKeyCoding.decode([UInt8](row["pk"] as Data)),
                            code: row["code"], message: row["message"], action: row["action"]))
                }
            }
            let lastError = try (Self.state(db, StateKey.lastError) as String?).flatMap {
                try? JSONDecoder().decode(ErrorRecord.self, from: Data($0.utf8))
            }
            var status = ReplicaStatus(
                replicaId: self.id, server: self.serverURL.absoluteString, opd: try Self.state(db, StateKey.opd) ?? "",
                database: self.path, pendingChanges: pending, logEntries: entries.count, inFlight: inFlight,
                cursor: UInt64(bitPattern: try Self.state(db, StateKey.cursor) ?? 0),
                lastPushAt: try Self.state(db, StateKey.lastPushAt),
                lastPullAt: try Self.state(db, StateKey.lastPullAt),
                lastSyncAt: try Self.state(db, StateKey.lastSyncAt), lastError: lastError, conflicts: conflicts,
                outcomes: outcomes, outcomeCounts: ChangeOutcome.Counts(outcomes), refused: refused)
            status.schemaVersion = self.schema.schemaVersion ?? 1
            let states = try self.recordStates(db, log: entries, conflicts: conflicts, outcomes: outcomes)
            status.recordCounts = Dictionary(grouping: states, by: \.state.rawValue).mapValues(\.count)
            var listed: [RecordState.State: Int] = [:]
            status.records = states.filter { record in
                listed[record.state, default: 0] += 1
                return listed[record.state]! <= ReplicaStatus.recordLimit
            }
            status.advice = lastError.map { ErrorAdvice.advice(forCode: $0.code) }
            return status
        }
    }

    /// What this replica tells the server about itself (`DeviceHeaders`): its id, this client's
    /// version, how many rows wait to be pushed, and the code of its last error.
    public func deviceHeaders() throws -> [String: String] {
        try dbQueue.read { db in
            var headers = [
                DeviceHeaders.replica: self.id.uuidString, DeviceHeaders.client: kotaSyncClientVersion,
                DeviceHeaders.pending: String(ChangeLog.coalesce(try self.readLog(db)).count),
            ]
            if let error = try (Self.state(db, StateKey.lastError) as String?).flatMap({
                try? JSONDecoder().decode(ErrorRecord.self, from: Data($0.utf8))
            }) {
                headers[DeviceHeaders.lastError] = error.code
            }
            return headers
        }
    }

    /// The conflict records this replica knows, in id order, as the server last reported them.
    public func conflicts() throws -> [ConflictReport] {
        try dbQueue.read { db in
            let decoder = ProtocolJSON.decoder()
            return try String.fetchAll(db, sql: "SELECT report FROM _ks_conflicts ORDER BY id").compactMap {
                try? decoder.decode(ConflictReport.self, from: Data($0.utf8))
            }
        }
    }

    /// How long after its decision an automatic record is still fetched again on every pull, for
    /// a reviewer's reversal to reach `status`.
    static let autoRecordRefresh: TimeInterval = 7 * 86_400

    /// The id after which to ask the server for conflicts: after the newest record known, or
    /// earlier, so that records that may still change are fetched again and stored as they stand.
    ///
    /// Records waiting for a person or a parent row (`open`, `held`) are fetched again until they
    /// settle, and `auto` records for ``autoRecordRefresh`` after their decision; the server lists
    /// them by id only, so everything after the oldest such record comes again. An `auto` record
    /// reversed later than that keeps its old status here (the row's value still arrives by
    /// pull), and so does a record re-pointed away from this replica when it was the winner (the
    /// server no longer lists it for this replica).
    func conflictsAfter(now: Date = Date()) throws -> Int64 {
        try dbQueue.read { db in
            let newest: Int64 = try Self.state(db, StateKey.conflictsAfter) ?? 0
            let unsettled = try Int64.fetchOne(
                db,
                sql: """
                    SELECT min(id) FROM _ks_conflicts
                    WHERE json_extract(report, '$.status') IN ('open', 'held')
                       OR (json_extract(report, '$.status') = 'auto' AND json_extract(report, '$.decided_at') >= ?)
                    """, arguments: [now.addingTimeInterval(-Self.autoRecordRefresh).iso8601])
            return min(newest, (unsettled ?? newest + 1) - 1)
        }
    }

    /// Keeps conflicts fetched from the server.
    func record(conflicts: [ConflictReport]) throws {
        guard let last = conflicts.map(\.id).max() else { return }
        try dbQueue.write { db in
            try self.store(conflicts, db)
            try Self.setState(db, StateKey.conflictsAfter, max(last, try Self.state(db, StateKey.conflictsAfter) ?? 0))
        }
    }
}
