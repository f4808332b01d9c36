import Foundation
import KotaSyncCore

/// The push envelope's port: what ``PushEnvelope`` reads and writes around the merge of one
/// changeset — the replicas and their sequences, the changesets merged and their stored replies,
/// the refused count — and the scope reads of the access service's device view
/// (``ConflictScopeReader``). Synchronous, like ``MergeStore``, and inside the same transaction.
protocol PushLedger: ConflictScopeReader {
    /// The reply stored for changeset `id` and the OPD of the replica that pushed it; nil if the
    /// changeset was never merged.
    func storedReply(of id: UUID) throws -> (reply: Data, opd: String)?

    /// The replica with `id`, if the master knows it.
    func replica(_ id: UUID) throws -> LedgerReplica?

    /// Registers a new replica of `opd` seen first at `time`; returns its number. Numbers grow
    /// and are never reused.
    func registerReplica(_ id: UUID, opd: String, at time: String) throws -> Int64

    /// Stores a merged changeset with its reply, and moves its replica's last sequence (and last
    /// push time) to the changeset's.
    func recordChangeset(_ changeset: Changeset, replica: Int64, rows: Int, at time: String, reply: Data) throws

    /// Adds `count` refused rows to the replica's count (the overview's "refused" column).
    func countRefused(_ count: Int, replica: Int64, at time: String) throws
}

/// A replica as the ledger keeps it.
struct LedgerReplica: Equatable {
    var number: Int64
    var opd: String
    var lastSequence: UInt64
}

/// The reads the access service's device view of conflict records needs: the scope of each row
/// a record names.
protocol ConflictScopeReader {
    /// The scope value of each of `rows` the master holds (live or deleted), `.null` for one
    /// that has none; a row the master does not hold is absent. Set-based: a reply names a
    /// record per row it merged with a conflict, and each row's scope is read once for all.
    func storedScopes(of rows: Set<RowReference>) throws -> [RowReference: SQLValue]

    /// The held change (`HeldChange` JSON) of the first blocking record of kind `unique` or
    /// `foreign_key` (status `open` or `held`) of the row: the change that keeps the place of a
    /// row the master does not hold yet. Nil when there is none.
    func firstHeldChange(of table: String, key: [SQLValue]) throws -> String?
}

/// Conflict records as a device of an OPD is told of them, decided by the access service
/// (``AccessPolicy/deviceView(of:for:scopes:)``) from the scopes of the rows they name: the
/// push reply's conflicts and a device's conflict list both pass through here, on every backend.
struct ConflictDeviceView {
    let config: ServerConfig
    let reader: any ConflictScopeReader

    /// `records` as a device of `opd` may see them (some not at all).
    func callAsFunction(_ records: [ConflictReport], for opd: String) throws -> [ConflictReport] {
        guard !records.isEmpty else { return [] }
        let access = config.access
        var named: Set<RowReference> = []
        for record in records {
            named.insert(RowReference(table: record.table, primaryKey: record.primaryKey))
            if let related = record.related { named.insert(related) }
        }
        let stored = try reader.storedScopes(of: named)
        return try records.compactMap { record in
            try access.deviceView(of: record, for: opd, scopes: scopes(of: record, stored: stored))
        }
    }

    /// The scope values of the rows `record` names: each as the master holds it (`stored`), or,
    /// for a row the master does not hold yet, as the change that holds its place gives it.
    private func scopes(of record: ConflictReport, stored: [RowReference: SQLValue]) throws -> ConflictScopes {
        let row =
            try stored[RowReference(table: record.table, primaryKey: record.primaryKey)]
            ?? heldScope(record.held?.values, table: record.table)
            ?? pendingScope(record.table, key: record.primaryKey)
        let related = try record.related.flatMap { r in try stored[r] ?? pendingScope(r.table, key: r.primaryKey) }
        return ConflictScopes(row: row, related: related)
    }

    /// The scope value a held change gives its row (nil for a table without a scope column).
    private func heldScope(_ values: [String: SQLValue]?, table: String) -> SQLValue? {
        guard let column = config.rules.rules(for: table).scope else { return nil }
        return values?[column]
    }

    /// The scope of a row the master does not hold but whose place a quarantined or held change
    /// keeps (the first such record of the key).
    private func pendingScope(_ table: String, key: [SQLValue]) throws -> SQLValue? {
        guard let stored = try reader.firstHeldChange(of: table, key: key) else { return nil }
        return heldScope(try? HeldChange(stored: stored).row.values, table: table)
    }
}
