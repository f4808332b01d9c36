import Foundation
import KotaSyncCore

/// A reviewer's decision on one conflict record, carried out inside a write transaction.
///
/// Every decision that changes data is a change made by the master itself that saw every
/// change before it: it replaces the heads it decides between (so their records stop standing),
/// takes a new version and flows to every replica on its next pull. The record keeps both sides
/// and gets the decision (`resolved`).
struct ReviewDecision {
    let id: Int64
    let request: ResolveRequest
    let reviewer: String
    let config: ServerConfig

    /// The stored record.
    private struct Record {
        var table: TableSchema
        var key: [SQLValue]
        var column: String?
        var kind: ConflictReport.Kind
        var status: ConflictReport.Status
        var loserDelete: Bool
        var loserValue: SQLValue?
        var winnerValue: SQLValue?
        var held: HeldChange?
        var related: RowReference?
    }

    func carryOut(with merger: inout MergeWriter) throws {
        let record = try load(merger.store)
        guard [.open, .auto, .held].contains(record.status) else {
            throw SyncError(
                .alreadyResolved,
                "Conflict record \(id) is \(record.status.rawValue); only standing records can be resolved.")
        }
        let set = try typed(request.set ?? [:], in: record.table)
        do {
            switch record.kind {
            case .updateUpdate, .insertInsert:
                try resolveColumn(record, set: set, merger: &merger)
            case .deleteUpdate:
                try resolveExistence(record, set: set, merger: &merger)
            case .unique:
                try resolveQuarantine(record, set: set, merger: &merger)
            case .foreignKey, .queued:
                try resolveHeld(record, set: set, merger: &merger)
            }
        } catch let error as MergeStoreConstraintViolation {
            // A row the decision would write breaks a constraint of the master (NOT NULL,
            // CHECK): the decision cannot be carried out. The caller's transaction rolls back,
            // so nothing of it stays; the reviewer gets the reason, not a server error.
            throw SyncError(
                .constraintViolation,
                "The decision cannot be carried out: the row would break a constraint of the master (\(error.message)). Correct it with set column=value, or decide otherwise."
            )
        }
    }

    // MARK: - Standing records

    /// A column record: the master writes the chosen value, seeing every head of the column.
    private func resolveColumn(_ record: Record, set: [String: SQLValue], merger: inout MergeWriter) throws {
        guard let column = record.column else { throw SyncError(.internalError, "Record \(id) has no column.") }
        var values = set
        switch request.take {
        case .local:
            guard set.isEmpty else { throw badSet("take local keeps the master's value") }
            values[column] = try currentValues(record, merger: &merger)?[column] ?? record.winnerValue ?? .null
        case .remote:
            guard set.isEmpty else { throw badSet("take remote takes the losing value") }
            values[column] = record.loserValue ?? .null
        case .merged:
            guard values[column] != nil else {
                throw SyncError(.badRequest, "take merged needs the value of \(column): set \(column)=<value>.")
            }
        }
        let version = try masterWrite(record, operation: .update, values: values, merger: &merger)
        try merger.close(
            id, take: request.take, values: values, note: request.note, by: reviewer, masterVersion: version)
    }

    /// A delete/update record: keep the row as the master has it, or do what the losing side did.
    private func resolveExistence(_ record: Record, set: [String: SQLValue], merger: inout MergeWriter) throws {
        let live = try currentValues(record, merger: &merger) != nil
        var version: UInt64?
        switch (request.take, record.loserDelete) {
        case (.local, _):
            // The master's state stands: a live row is confirmed by an empty write, a deleted one by a delete.
            version = try masterWrite(record, operation: live ? .update : .delete, values: set, merger: &merger)
        case (.remote, true):
            guard set.isEmpty else { throw badSet("take remote deletes the row") }
            version = try masterWrite(record, operation: .delete, values: [:], merger: &merger)
        case (.remote, false), (.merged, false):
            // Bring back the row that a delete won over, with its values from before the delete.
            var values: [String: SQLValue] = [:]
            if let before = try merger.valuesBeforeDeletion(record.table, key: record.key) {
                for (c, v) in before.enumerated() { values[record.table.columns[c].name] = v }
            }
            // The losing update's own values, when it never reached the table.
            for (name, value) in record.held?.row.values ?? [:]
            where record.table.columns.contains(where: { $0.name == name }) {
                values[name] = value
            }
            values.merge(set) { _, new in new }
            version = try masterWrite(record, operation: .upsert, values: values, merger: &merger)
        case (.merged, true):
            version = try masterWrite(record, operation: .update, values: set, merger: &merger)
        }
        try merger.close(
            id, take: request.take, values: set.isEmpty ? nil : set, note: request.note, by: reviewer,
            masterVersion: version)
    }

    // MARK: - Rows kept out of the master

    /// A quarantined row (UNIQUE): reject it, keep both, or merge it into the row it collided with.
    private func resolveQuarantine(_ record: Record, set: [String: SQLValue], merger: inout MergeWriter) throws {
        guard let held = record.held, let related = record.related else {
            throw SyncError(.internalError, "Quarantined record \(id) lacks its row.")
        }
        switch request.take {
        case .local:
            try reject(record, held: held, merger: &merger)
        case .remote:
            // Keep both: the incoming row, corrected, as its writer sent it.
            var change = try PendingChange(
                held: held, table: record.table, writer: merger.resolve(held.writer), set: set)
            change.columns = Array(
                Set(
                    change.columns
                        + set.keys.compactMap { name in
                            record.table.columns.firstIndex { $0.name == name }
                        })
            ).sorted()
            try merger.close(id, take: .remote, values: set.isEmpty ? nil : set, note: request.note, by: reviewer)
            switch try merger.merge(change, queue: false, reported: false) {
            case .merged:
                break
            case .refused(let refusal):
                // Judged again by its writer's rules, which it breaks: it is not merged, and
                // its record closes with the refusal, as a rejection.
                try reject(record, held: held, merger: &merger, note: MergeWriter.refusedNote(refusal))
                return
            case .held, .ignored:
                throw SyncError(
                    .constraintViolation,
                    "The corrected row still cannot be merged (it collides again, or its parent is missing); correct it with set column=value."
                )
            }
            if !set.isEmpty {
                // The writer's replica holds the uncorrected row: a master write sends it the correction.
                _ = try masterWrite(record, operation: .update, values: set, merger: &merger)
            }
            try merger.releaseWaiting(for: RowReference(table: record.table.name, primaryKey: record.key))
        case .merged:
            // One record survives: the row it collided with, with the fields the reviewer chose.
            guard related.table == record.table.name else {
                throw SyncError(.internalError, "Record \(id) collided with a row of another table.")
            }
            let survivor = Record(
                table: record.table, key: related.primaryKey, column: nil, kind: record.kind, status: record.status,
                loserDelete: false, held: nil, related: nil)
            var version: UInt64?
            if !set.isEmpty { version = try masterWrite(survivor, operation: .update, values: set, merger: &merger) }
            try merger.close(
                id, take: .merged, values: set.isEmpty ? nil : set, note: request.note, by: reviewer,
                masterVersion: version)
            try repoint(from: record.key, to: related.primaryKey, table: record.table, merger: &merger)
            try rejectFollowers(
                of: record, note: "Merged into \(record.table.name) \(describe(related.primaryKey)).", merger: &merger)
            try merger.tombstone(record.table, key: record.key, old: oldValues(held, table: record.table))
        }
    }

    /// A held row (a missing parent, or queued behind another record): reject it or apply it.
    private func resolveHeld(_ record: Record, set: [String: SQLValue], merger: inout MergeWriter) throws {
        guard let held = record.held else { throw SyncError(.internalError, "Held record \(id) lacks its row.") }
        switch request.take {
        case .local:
            try reject(record, held: held, merger: &merger)
        case .remote, .merged:
            let change = try PendingChange(
                held: held, table: record.table, writer: merger.resolve(held.writer), set: set)
            if record.kind == .queued, try !merger.holds(record.table, key: record.key) {
                // The row this change is queued on is not on the master: the change ahead of it
                // (quarantined, or waiting for a parent) has not been merged. Applied now, it
                // would jump that change, and an update, which carries only the columns it
                // changed, would make a row of them alone.
                let ahead = try merger.store.blockingRecords(of: record.table, key: record.key).first {
                    $0.id < id
                }?.id
                if let ahead {
                    throw SyncError(
                        .constraintViolation,
                        "Record \(id) changes \(record.table.name) \(describe(record.key)), which the master does not hold yet: it waits behind record \(ahead). Decide record \(ahead) first (this change is then merged after it), or reject this one (take local)."
                    )
                }
                if change.operation == .update {
                    throw SyncError(
                        .constraintViolation,
                        "Record \(id) updates \(record.table.name) \(describe(record.key)), which the master does not hold (the change that would have created it was not merged): there is no row to update. Reject it (take local)."
                    )
                }
            }
            try merger.close(id, take: request.take, values: set.isEmpty ? nil : set, note: request.note, by: reviewer)
            switch try merger.merge(change, queue: false, reported: false) {
            case .merged:
                break
            case .refused(let refusal):
                // Judged again by its writer's rules, which it breaks: closed as a rejection.
                try reject(record, held: held, merger: &merger, note: MergeWriter.refusedNote(refusal))
                return
            case .held, .ignored:
                throw SyncError(
                    .constraintViolation,
                    "The row still cannot be merged: the row it refers to is still missing, or it collides. Point it elsewhere with set column=value, or reject it (take local)."
                )
            }
            if !set.isEmpty { _ = try masterWrite(record, operation: .update, values: set, merger: &merger) }
        }
    }

    /// Rejects a row the master never merged: the record closes, rows queued behind it close
    /// with it, rows that refer to it wait for a person, and replicas holding a copy drop it.
    private func reject(_ record: Record, held: HeldChange, merger: inout MergeWriter, note: String? = nil) throws {
        try merger.close(id, take: .local, note: note ?? request.note, by: reviewer)
        if record.kind == .queued {
            // One queued change of the row, not the row: the row's fate is its own record's
            // (the one ahead in the queue), the changes behind this one still wait, and
            // nothing is tombstoned (a tombstone by the master would beat the row's own
            // pending write, column by column, when it is merged).
            try releaseQueueIfHeadless(record, merger: &merger)
            return
        }
        try rejectFollowers(of: record, note: "Rejected with record \(id).", merger: &merger)
        let row = RowReference(table: record.table.name, primaryKey: record.key)
        merger.forgetAll()
        try merger.store.reopenReferrers(
            of: row, reason: "The row it refers to was rejected by a reviewer (record \(id)); a reviewer decides.")
        let masterHas = try merger.state(of: row).head.map { !$0.deleted } ?? false
        if !masterHas, held.row.operation != "delete" {
            try merger.tombstone(record.table, key: record.key, old: oldValues(held, table: record.table))
        }
    }

    /// After a queued change of `record`'s row was taken out of the queue: when nothing but
    /// held queued changes is left standing on the row, nothing will release them, so they are
    /// released now, in order.
    private func releaseQueueIfHeadless(_ record: Record, merger: inout MergeWriter) throws {
        let head = try merger.store.blockingRecords(of: record.table, key: record.key).contains {
            !($0.kind == .queued && $0.status == .held)
        }
        if !head {
            try merger.releaseWaiting(for: RowReference(table: record.table.name, primaryKey: record.key))
        }
    }

    private func rejectFollowers(of record: Record, note: String, merger: inout MergeWriter) throws {
        let followers = try merger.store.blockingRecords(of: record.table, key: record.key).filter {
            $0.kind == .queued && $0.status == .held && $0.id != id
        }.map(\.id)
        for follower in followers { try merger.close(follower, take: .local, note: note, by: reviewer) }
    }

    /// Points every row that refers to `from` (in tables with a foreign key to `table`) at `to`,
    /// on the master (a master write each, so replicas follow) and in held rows.
    private func repoint(from: [SQLValue], to: [SQLValue], table: TableSchema, merger: inout MergeWriter) throws {
        var repointed: Set<Int64> = []
        for child in config.tables {
            for fk in config.foreignKeys[child.name] ?? [] where fk.parentTable == table.name {
                guard fk.columns.allSatisfy({ name in child.columns.contains { $0.name == name } }) else { continue }
                let ordered = fk.parentColumns.map { name in table.primaryKey.firstIndex { $0.name == name }! }
                let fromValues = ordered.map { from[$0] }
                let toValues = Dictionary(uniqueKeysWithValues: zip(fk.columns, ordered.map { to[$0] }))
                for key in try merger.store.keys(of: child, where: fk.columns, equal: fromValues) {
                    let target = Record(
                        table: child, key: key, column: nil, kind: .foreignKey, status: .open, loserDelete: false,
                        held: nil, related: nil)
                    _ = try masterWrite(target, operation: .update, values: toValues, merger: &merger)
                }
                // Held rows waiting for `from` now wait for `to`, which exists: rewrite and release them.
                let waiting = try merger.store.referringRecords(
                    to: RowReference(table: table.name, primaryKey: from), in: child.name, status: [.held, .open])
                for record in waiting {
                    guard let text = record.held else { continue }
                    var held = try HeldChange(stored: text)
                    held.row.values.merge(toValues) { _, new in new }
                    merger.forgetAll()
                    try merger.store.rewriteHeld(
                        record.id, held: try held.stored(), related: RowReference(table: table.name, primaryKey: to),
                        status: .held)
                    repointed.insert(record.id)
                }
            }
        }
        // The reviewer chose the survivor for the rows re-pointed here: its scope does not hold
        // them back (rows that named it themselves still wait while it is outside their scope).
        try merger.releaseWaiting(for: RowReference(table: table.name, primaryKey: to), chosenByStaff: repointed)
    }

    // MARK: - Helpers

    /// A change by the master of `record`'s row that saw every change before it; returns the
    /// version it took, if it changed anything.
    @discardableResult
    private func masterWrite(
        _ record: Record, operation: Changeset.Operation, values: [String: SQLValue], merger: inout MergeWriter
    ) throws -> UInt64? {
        let table = record.table
        let base = try merger.state(of: RowReference(table: table.name, primaryKey: record.key)).head?.version ?? 0
        var columns: [Int] = []
        var incoming: [Int: SQLValue] = [:]
        for (name, value) in values {
            guard let c = table.columns.firstIndex(where: { $0.name == name }) else { continue }
            columns.append(c)
            incoming[c] = value
        }
        columns.sort()
        let before = merger.version
        let change = PendingChange(
            table: table, operation: operation == .upsert && base > 0 ? .upsert : operation, key: record.key,
            stamp: HLC(milliseconds: merger.serverMilliseconds, counter: 0), clamped: false, rowBase: UInt64(base),
            columns: columns, incoming: incoming, bases: [:], writer: .master, changesetID: .zero)
        let result = try merger.merge(change, queue: false, reported: false)
        if case .held(let other) = result {
            throw SyncError(
                .constraintViolation,
                "The decision cannot be applied: the row would break a constraint or refer to a missing row (see record \(other))."
            )
        }
        return merger.version > before ? merger.version : nil
    }

    private func load(_ store: any MergeStore) throws -> Record {
        guard let row = try store.record(id) else {
            throw SyncError(.notFound, "There is no conflict record \(id).")
        }
        guard let table = config.table(named: row.table) else {
            throw SyncError(.badRequest, "Record \(id) is of table \(row.table), which no longer replicates.")
        }
        return Record(
            table: table, key: row.key, column: row.column, kind: row.kind, status: row.status,
            loserDelete: row.loserDelete, loserValue: row.loserValue, winnerValue: row.winnerValue,
            held: try row.held.map { try HeldChange(stored: $0) }, related: row.related)
    }

    private func currentValues(_ record: Record, merger: inout MergeWriter) throws -> [String: SQLValue]? {
        let state = try merger.state(of: RowReference(table: record.table.name, primaryKey: record.key))
        guard let values = state.values else { return nil }
        return Dictionary(uniqueKeysWithValues: zip(record.table.columns.map(\.name), values))
    }

    /// Values named in `set` must be columns of the table, of a storage class the column takes.
    private func typed(_ set: [String: SQLValue], in table: TableSchema) throws -> [String: SQLValue] {
        var stored: [String: SQLValue] = [:]
        for (name, value) in set {
            if case .real(let r) = value, r.isNaN {
                throw SyncError(.badRequest, "Column \(table.name).\(name): a NaN is not a value SQLite can keep.")
            }
            guard let column = table.columns.first(where: { $0.name == name }) else {
                throw SyncError(.unknownColumn, "Table \(table.name) has no column \(name) that can be set.")
            }
            guard column.accepts(value.storageClass) else {
                throw SyncError(
                    .typeMismatch, "Column \(table.name).\(name) does not take a \(value.storageClass.rawValue) value.")
            }
            // What the column keeps: the decision records the value the master holds.
            stored[name] = column.stored(value)
        }
        return stored
    }

    private func badSet(_ why: String) -> SyncError {
        SyncError(.badRequest, "`set` goes with take merged; \(why).")
    }

    private func oldValues(_ held: HeldChange, table: TableSchema) -> [(Int, SQLValue)] {
        table.columns.enumerated().compactMap { c, column in held.row.values[column.name].map { (c, $0) } }
    }

    private func describe(_ key: [SQLValue]) -> String { key.map(\.description).joined(separator: ", ") }
}
