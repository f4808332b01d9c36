import Foundation
import KotaSyncCore

/// Changes kept out of the master and let in later: quarantines (a UNIQUE collision), holds (a
/// missing parent), queues (later changes of a held row), their releases, and the master's own
/// tombstones of rows it never merged.
extension MergeWriter {
    /// Keeps `change` out of the master in a record of `kind`.
    mutating func hold(
        _ change: PendingChange, kind: ConflictReport.Kind, status: ConflictReport.Status, related: RowReference,
        reason: String, winner: (writer: Int64, stamp: HLC, column: String?, value: SQLValue?)? = nil,
        reported: Bool
    ) throws -> Int64 {
        let held = try change.held.stored()
        let loserValue = winner?.column.flatMap { name in change.heldRow.values[name] }
        var record = StoredConflict(
            table: change.table.name, key: change.key, column: winner?.column, kind: kind,
            policy: kind == .unique ? "quarantine" : "hold", status: status, baseVersion: change.rowBase, base: nil,
            winnerWriter: winner?.writer ?? 0, winnerStamp: winner?.stamp ?? .zero, winnerValue: winner?.value,
            loserWriter: change.writer.number, loserStamp: change.stamp, loserVersion: 0,
            loserInsert: change.operation == .upsert && change.rowBase == 0, loserDelete: change.operation == .delete,
            loserValue: loserValue, changeset: change.changesetID, decidedAt: decidedAt, reason: reason, held: held,
            related: related)
        record.id = try store.insertRecord(record)
        // Keys read before any record blocked anything were read without their blocking records:
        // none existed. Only this key has one now.
        forget(change.table.name, pk: PrimaryKeyCoding.encode(change.key))
        holdsExist = true
        if reported { reports.append(ConflictReport(stored: record, writer: resolve, opd: describe)) }
        return record.id
    }

    /// A row that would break a UNIQUE constraint by colliding with row `other`: kept in an
    /// `open` record beside it. `column` is the first non-key column of the index.
    mutating func quarantine(
        _ change: PendingChange, collidingWith other: [SQLValue], column: String?, message: String, reported: Bool
    ) throws -> Int64 {
        let table = change.table
        let otherState = try state(of: table, key: other, pk: PrimaryKeyCoding.encode(other))
        // The side that holds the row: its strongest write.
        let clocks = try otherState.head.map { head throws(SyncError) in
            try RowClocksCoding.decode(
                head.clocks, version: head.version, columnCount: table.columns.count, resolve: resolve)
        }
        let holder = clocks.map { clocks in
            let writes = clocks.existence.filter { !$0.isDelete }
            return MergeEngine.strongest(writes.isEmpty ? clocks.existence : writes)
        }
        let otherValue = column.flatMap { name in
            table.columns.firstIndex { $0.name == name }
        }.flatMap { c in otherState.values?[c] }
        return try hold(
            change, kind: .unique, status: .open, related: RowReference(table: table.name, primaryKey: other),
            reason:
                "\(message): collides with \(table.name) \(other.map(\.description).joined(separator: ", ")). Quarantined until a reviewer merges the two, keeps both or rejects this one.",
            winner: (holder?.writer.number ?? 0, holder?.stamp ?? .zero, column, otherValue), reported: reported)
    }

    /// The first parent `values` refer to that the master does not hold live, and whether it
    /// was deleted (as opposed to not arrived yet). Only references the change touches count.
    ///
    /// A parent outside the scope of the writer's OPD (`opd`; nil for the master) counts as one
    /// the master does not have, live or deleted: the change waits exactly as if it were absent,
    /// so a device cannot tell another OPD's row from no row by pointing at it.
    mutating func missingParent(
        of table: TableSchema, key: [SQLValue], values: [SQLValue], changed decision: MergeDecision, opd: String?,
        chosenByStaff: RowReference? = nil
    ) throws -> (RowReference, deleted: Bool)? {
        guard let keys = config.foreignKeys[table.name], !keys.isEmpty else { return nil }
        var named: [String: (value: SQLValue, changed: Bool)] = [:]
        let whole = decision.effect != .update
        for (column, value) in zip(table.primaryKey, key) { named[column.name] = (value, whole) }
        for (c, column) in table.columns.enumerated() {
            named[column.name] = (values[c], whole || decision.values[c] != nil)
        }
        for fk in keys {
            let refs = fk.columns.map { named[$0] ?? (.null, false) }
            guard refs.contains(where: \.changed), !refs.contains(where: { $0.value == .null }),
                let parent = config.table(named: fk.parentTable)
            else { continue }
            // The parent's key in its own key order.
            let parentKey = parent.primaryKey.map { column in
                refs[fk.parentColumns.firstIndex(of: column.name)!].value
            }
            let reference = RowReference(table: parent.name, primaryKey: parentKey)
            let state = try state(of: parent, key: parentKey, pk: PrimaryKeyCoding.encode(parentKey))
            // A parent the master never had is absent whoever asks; one it has or had counts as
            // absent too when it lies outside the writer's scope.
            var inScope = true
            // (A parent table without a scope is everyone's.)
            if let opd, reference != chosenByStaff, config.rules.rules(for: parent.name).scope != nil,
                let head = state.head
            {
                inScope = config.access.mayReference(opd: opd, table: parent.name, scope: head.scope)
            }
            if inScope, state.values != nil { continue }
            let deleted = state.head?.deleted ?? false
            return (reference, deleted && inScope)
        }
        return nil
    }

    /// Merges, in the order they came, the held changes waiting for `row`: rows that refer to
    /// it (it has arrived) and later changes of it (queued behind it). `chosenByStaff`: the records
    /// of rows a reviewer pointed at `row` (merging two records), which its scope does not hold
    /// back: their writers did not choose it.
    mutating func releaseWaiting(for row: RowReference, chosenByStaff: Set<Int64> = []) throws {
        let waiting = try store.recordsWaiting(for: row)
        var queueStopped = false
        for record in waiting {
            let id = record.id
            let kind = record.kind
            if kind == .queued, queueStopped { continue }
            guard let table = config.table(named: record.table), let text = record.held else { continue }
            let held = try HeldChange(stored: text)
            var change = try PendingChange(held: held, table: table, writer: resolve(held.writer))
            let refers = kind == .foreignKey
            let staffChose = refers && chosenByStaff.contains(id)
            if staffChose { change.parentChosenByStaff = row }
            // A row waiting for a parent waits on while the parent is outside its writer's
            // scope, as it did while the parent was absent: no new record, nothing the writer
            // could tell apart.
            if refers, !staffChose, let opd = writerOPD(change.writer) {
                let head = try state(of: row).head
                guard let head, !head.deleted,
                    config.access.mayReference(opd: opd, table: row.table, scope: head.scope)
                else { continue }
            }
            let queued = kind == .queued
            // A queued update carries only the columns it changed: it changes a row, it cannot
            // make one. With the row absent (the change it waited behind was never merged) it
            // waits for a person instead of becoming a row with the other columns NULL.
            if queued, change.operation == .update, try !holds(table, key: change.key) {
                try reopen(
                    id,
                    reason:
                        "Changes \(table.name) \(Self.describe(change.key)), which the master does not hold: the change ahead of it that would have created the row was not merged. A reviewer applies it with the missing columns set, or rejects it."
                )
                queueStopped = true
                continue
            }
            // Whatever the release meets, it stays this change's business: a constraint the row
            // breaks rolls back this release alone and leaves the change in its record for a
            // person, so the push or decision that released it goes on (rule 6).
            let saved = self
            var outcome: MergeResult = .ignored
            do {
                try store.inSavepoint {
                    try close(
                        id, take: .remote, note: "Merged automatically: what it waited for arrived.", by: "kotasync")
                    outcome = try merge(change, queue: false, reported: false)
                }
            } catch let error as MergeStoreConstraintViolation {
                self = saved
                try reopen(
                    id,
                    reason:
                        "Could not be merged when what it waited for arrived: \(error.message). A reviewer applies it corrected with set column=value, or rejects it."
                )
                if queued { queueStopped = true }
                continue
            }
            switch outcome {
            case .held where queued:
                queueStopped = true
            case .refused(let refusal):
                try close(id, take: .local, note: Self.refusedNote(refusal), by: "kotasync")
                // The row it would have made never reaches the master: the changes queued
                // behind it are released in turn (an update among them waits for a person).
                if !queued, try !holds(table, key: change.key) {
                    try releaseWaiting(for: RowReference(table: table.name, primaryKey: change.key))
                }
            default:
                break
            }
        }
    }

    /// Whether the master has `key` of `table` in its bookkeeping (live or deleted).
    mutating func holds(_ table: TableSchema, key: [SQLValue]) throws -> Bool {
        try state(of: table, key: key, pk: PrimaryKeyCoding.encode(key)).head != nil
    }

    /// Makes the master remember `key` as deleted by the master itself, so that replicas holding
    /// a copy (of a row the master never merged) drop it. `old` is kept in the history.
    mutating func tombstone(_ table: TableSchema, key: [SQLValue], old: [(Int, SQLValue)]) throws {
        let stamp = HLC(milliseconds: serverMilliseconds, counter: 0)
        if try holds(table, key: key) {
            // The master has the row: delete it as the master, seeing every change.
            _ = try merge(
                PendingChange(
                    table: table, operation: .delete, key: key, stamp: stamp, clamped: false,
                    rowBase: UInt64(version), columns: [], incoming: [:], bases: [:], writer: .master,
                    changesetID: .zero), queue: false, reported: false)
            return
        }
        version += 1
        let head = Head(writer: .master, version: version, stamp: stamp, isDelete: true)
        let clocks = RowClocks(
            version: version, columns: Array(repeating: head, count: table.columns.count), existence: [head])
        try store.appendHistory(
            HistoryEntry(
                table: table.name, key: key, version: version, writer: Writer.master.number, stamp: stamp,
                operation: .delete, old: old, clamped: false))
        // The scope it would have had, so that the replicas that hold a copy are sent the removal.
        var values = Array(repeating: SQLValue.null, count: table.columns.count)
        for (c, v) in old where c < values.count { values[c] = v }
        let scope = scope(of: table, key: key, values: values)
        forget(table.name, pk: PrimaryKeyCoding.encode(key))
        try store.writeHead(
            HeadWrite(
                table: table.name, key: key, version: version, deleted: true, openConflicts: 0,
                clocks: RowClocksCoding.encode(clocks), scope: scope ?? .null, goneFor: nil))
    }
}
