import Foundation
import KotaSyncCore

/// Conflict records: the standing ones the engine decides with, and the writes that make the
/// stored ones what the engine decided (``RecordChanges`` decides which).
extension MergeWriter {
    /// A standing record as stored: the record as the engine sees it, the stored record, and
    /// the losing value.
    struct StoredRecord {
        var record: ConflictRecord
        var stored: StoredConflict
        var loserValue: SQLValue? { stored.loserValue }
    }

    /// The standing records of a row, as the engine sees them.
    func standingRecords(_ state: RowState, table: TableSchema) -> [RecordKey: StoredRecord] {
        var out: [RecordKey: StoredRecord] = [:]
        for stored in state.standing {
            let column = stored.column.flatMap { name in table.columns.firstIndex { $0.name == name } }
            let loser = Head(
                writer: resolve(stored.loserWriter), version: stored.loserVersion, stamp: stored.loserStamp,
                isInsert: stored.loserInsert, isDelete: stored.loserDelete)
            let winner = Head(writer: resolve(stored.winnerWriter), version: 0, stamp: stored.winnerStamp)
            let record = ConflictRecord(
                column: column, kind: stored.kind, loser: loser, winner: winner, policy: stored.policy,
                waiting: stored.status == .open)
            out[record.key] = StoredRecord(record: record, stored: stored)
        }
        return out
    }

    /// Makes the stored standing records of a row what the merge decided: new ones inserted,
    /// ones whose winner changed re-pointed, ones no longer standing marked superseded.
    mutating func reconcile(
        records: [ConflictRecord], with existing: [RecordKey: StoredRecord], table: TableSchema,
        change: PendingChange, old: [SQLValue]?, new: [SQLValue], reported: Bool
    ) throws {
        let changes = RecordChanges(wanted: records, stored: existing.mapValues(\.record))
        for k in changes.superseded {
            try store.supersedeRecord(existing[k]!.stored.id)
        }
        for record in changes.repointed {
            var stored = existing[record.key]!.stored
            let winnerValue = record.column.map { new[$0] }
            try store.repointRecord(stored.id, kind: record.kind, winner: record.winner, winnerValue: winnerValue)
            guard reported else { continue }
            // The record as it now stands, without reading it back.
            stored.kind = record.kind
            stored.winnerWriter = record.winner.writer.number
            stored.winnerStamp = record.winner.stamp
            stored.winnerValue = winnerValue
            reports.append(ConflictReport(stored: stored, writer: resolve, opd: describe))
        }
        for record in changes.inserted {
            let winnerValue = record.column.map { new[$0] }
            let loserValue = RecordChanges.loserValue(
                of: record, change: change.engineChange, incoming: change.incoming, prior: old)
            let baseVersion = record.column.map { change.bases[$0] ?? change.rowBase } ?? change.rowBase
            let base = try record.column.flatMap { c in
                try valueAt(base: baseVersion, column: c, table: table, key: change.key, current: old?[c])
            }
            // A write that lost to a delete (delete-wins) and never reached the table keeps its values here.
            let lostWrite =
                record.column == nil && !record.loser.isDelete && record.loser.writer == change.writer
                && record.loser.stamp == change.stamp
            try insertRecord(
                record, table: table, key: change.key, baseVersion: baseVersion, base: base, winnerValue: winnerValue,
                loserValue: loserValue, changesetID: change.changesetID, reason: nil,
                held: lostWrite ? try change.held.stored() : nil,
                reported: reported)
        }
    }

    mutating func insertRecord(
        _ record: ConflictRecord, table: TableSchema, key: [SQLValue], baseVersion: UInt64, base: SQLValue?,
        winnerValue: SQLValue?, loserValue: SQLValue?, changesetID: UUID, reason: String?, held: String? = nil,
        reported: Bool
    ) throws {
        var stored = StoredConflict(
            table: table.name, key: key, column: record.column.map { table.columns[$0].name }, kind: record.kind,
            policy: record.policy, status: record.status, baseVersion: baseVersion, base: base,
            winnerWriter: record.winner.writer.number, winnerStamp: record.winner.stamp, winnerValue: winnerValue,
            loserWriter: record.loser.writer.number, loserStamp: record.loser.stamp,
            loserVersion: record.loser.version, loserInsert: record.loser.isInsert,
            loserDelete: record.loser.isDelete, loserValue: loserValue, changeset: changesetID,
            decidedAt: decidedAt, reason: reason, held: held, related: nil)
        stored.id = try store.insertRecord(stored)
        guard reported else { return }
        // The report of a record just inserted, from the values written (what reading it back
        // would give: values keep their storage class, and NaN never gets past the decoder).
        reports.append(ConflictReport(stored: stored, writer: resolve, opd: describe))
    }

    /// Marks record `id` resolved.
    mutating func close(
        _ id: Int64, take: ResolutionChoice, values: [String: SQLValue]? = nil, note: String?, by: String,
        masterVersion: UInt64? = nil
    ) throws {
        let resolution = Resolution(
            take: take, values: values, note: note, by: by, at: decidedAt, masterVersion: masterVersion)
        forgetAll()
        try store.closeRecord(id, resolution: resolution)
    }

    /// Puts record `id` back in front of a person (`open`), saying why it was not merged.
    mutating func reopen(_ id: Int64, reason: String) throws {
        forgetAll()
        try store.reopenRecord(id, reason: reason)
    }
}
