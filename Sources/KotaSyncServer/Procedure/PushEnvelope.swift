import Foundation
import KotaSyncCore

/// What happens around the merge of one pushed changeset, written once for every backend: the
/// stored reply of a changeset seen before, the replica's OPD and sequence checks and its
/// registration, the merge itself (``MergeWriter``, window by window), the reply with the
/// access service's device view of its conflicts, and the bookkeeping of the changeset, the
/// replica's sequence and the refused count. It runs inside the backend's write transaction (on
/// SQLite a savepoint of a group commit, on PostgreSQL one transaction under the merge lock),
/// over the two ports ``PushLedger`` and ``MergeStore``.
enum PushEnvelope {
    /// The reply stored for changeset `id`, if it was merged before. Only a device of the OPD
    /// that pushed it may see it again.
    static func storedReply(_ id: UUID, device: Device, ledger: some PushLedger) throws -> PushOutcome? {
        guard let stored = try ledger.storedReply(of: id) else { return nil }
        guard stored.opd == device.opd else {
            throw SyncError(.forbidden, "Changeset \(id) was pushed by another OPD.")
        }
        return PushOutcome(reply: stored.reply, replayed: true)
    }

    /// Merges `validated` from `device` at `now`: returns the outcome and, when the changeset's
    /// replica was registered by it, the new writer (to be remembered only after the commit: a
    /// rolled-back registration must not leave a stale number behind).
    ///
    /// - Parameters:
    ///   - window: how many rows are read set-based at once.
    ///   - known: writers registered earlier in the same transaction (a group commit), which the
    ///     backend's own writer lookup does not see yet; this push's registration is added.
    ///   - makeMerger: the merge procedure over the backend's port, resolving writer numbers
    ///     with the map given first, then the backend's lookup.
    static func merge(
        _ validated: ValidatedChangeset, rows: PushRows, device: Device, now: Date, ledger: some PushLedger,
        window: Int, registered known: inout [Int64: Writer],
        makeMerger: (_ registered: [Int64: Writer]) throws -> MergeWriter
    ) throws -> (PushOutcome, Writer?) {
        let changeset = validated.changeset
        // Again inside the transaction: another delivery may have committed since the first look.
        if let stored = try storedReply(changeset.id, device: device, ledger: ledger) { return (stored, nil) }
        guard changeset.replicaID != .zero else {
            throw SyncError(.changesetMalformed, "The changeset has no replica id.")
        }
        let writer: Writer
        var registered: Writer?
        let nowText = Timestamp.string(now)
        if let replica = try ledger.replica(changeset.replicaID) {
            guard replica.opd == device.opd else {
                throw SyncError(
                    .forbidden,
                    "Replica \(changeset.replicaID) belongs to another OPD; a device token of \(device.opd) cannot push for it."
                )
            }
            guard changeset.firstSequence > replica.lastSequence else {
                throw SyncError(
                    .sequenceConflict,
                    "The server already applied this replica's changes up to \(replica.lastSequence), but this changeset starts at \(changeset.firstSequence) with a new id. Was the replica restored from a backup? Re-initialise it with `kotasync init`."
                )
            }
            writer = Writer(number: replica.number, id: changeset.replicaID)
        } else {
            let number = try ledger.registerReplica(changeset.replicaID, opd: device.opd, at: nowText)
            writer = Writer(number: number, id: changeset.replicaID)
            registered = writer
        }
        known[writer.number] = writer

        var merge = try makeMerger(known)
        try rows.forEachWindow(validated, size: window) { window in
            // The state of every key of the window (and of the parents it names), read set-based.
            try merge.prefetch(window.map(\.row), of: validated)
            for (index, row) in window {
                do {
                    try merge.merge(row, of: validated, writer: writer, opd: device.opd)
                } catch let error as MergeStoreConstraintViolation {
                    let table = validated.tables[row.table].name
                    throw SyncError(
                        .constraintViolation,
                        "Row \(index) (\(table) \(row.primaryKey.map(\.description).joined(separator: ", "))) breaks a constraint of the master: \(error.message). Correct it on the replica."
                    )
                }
            }
        }
        try merge.finish()
        let reply = PushReply(
            changesetId: changeset.id, replicaId: changeset.replicaID, rows: rows.count,
            applied: merge.applied,
            clampedStamps: merge.clamped, masterSequence: merge.version,
            // The access service's device view: the merge reports every record it makes or
            // re-points, other OPDs' among them.
            conflicts: try ConflictDeviceView(config: merge.config, reader: ledger)(merge.reports, for: device.opd),
            rejected: merge.rejected.isEmpty ? nil : merge.rejected)
        let replyData = try ProtocolJSON.encoder().encode(reply)
        try ledger.recordChangeset(changeset, replica: writer.number, rows: rows.count, at: nowText, reply: replyData)
        if !merge.rejected.isEmpty {
            try ledger.countRefused(merge.rejected.count, replica: writer.number, at: nowText)
        }
        return (PushOutcome(reply: replyData, replayed: false), registered)
    }
}

/// Where a waiting push's rows are: decoded in memory, or to be read again from the changeset's
/// bytes as they are merged.
enum PushRows: Sendable {
    case decoded([Changeset.Row])
    case streamed(CheckedPush)

    var count: Int {
        switch self {
        case .decoded(let rows): rows.count
        case .streamed(let checked): checked.rowCount
        }
    }

    /// Calls `body` with the rows in order, `size` at a time with their indexes (a window of a
    /// streamed changeset is all of it that is decoded at once). A streamed row is checked
    /// against the schema again before `body` sees it; any error stops the walk (and so rolls
    /// back the push).
    func forEachWindow(
        _ validated: ValidatedChangeset, size: Int, _ body: ([(index: Int, row: Changeset.Row)]) throws -> Void
    ) throws {
        switch self {
        case .decoded(let rows):
            var start = 0
            while start < rows.count {
                let end = min(start + size, rows.count)
                try body((start..<end).map { ($0, rows[$0]) })
                start = end
            }
        case .streamed(let checked):
            var stream = try checked.rows()
            var window: [(index: Int, row: Changeset.Row)] = []
            window.reserveCapacity(size)
            while true {
                let next: (index: Int, row: Changeset.Row)
                do {
                    guard let row = try stream.next() else { break }
                    let index = stream.rowsRead - 1
                    try validated.check(row, index: index)
                    next = (index, row)
                } catch {
                    // The rows before a bad one are merged first, as one by one: what they
                    // meet (a constraint of the master) is the error the pusher hears, not the
                    // bad row after them.
                    if !window.isEmpty { try body(window) }
                    throw error
                }
                window.append(next)
                if window.count == size {
                    try body(window)
                    window.removeAll(keepingCapacity: true)
                }
            }
            if !window.isEmpty { try body(window) }
        }
    }
}

/// Remembers a function's answers: an OPD name is looked up once per merge, not once per record.
final class Memo<Key: Hashable, Value> {
    private var known: [Key: Value] = [:]
    private let compute: (Key) -> Value

    init(_ compute: @escaping (Key) -> Value) { self.compute = compute }

    func callAsFunction(_ key: Key) -> Value {
        if let value = known[key] { return value }
        let value = compute(key)
        known[key] = value
        return value
    }
}
