import KotaSyncCore

/// Judging a writer's change before it is merged: the access service and the row limits decide,
/// the writer carries out a refusal.
extension MergeWriter {
    /// The OPD whose rules judge a change of `writer`: the OPD its replica was registered with
    /// by its first push; nil for the master's own changes (reviewers' decisions, seeds).
    func writerOPD(_ writer: Writer) -> String? {
        writer.number == Writer.master.number ? nil : describe(writer.number)
    }

    /// Why a device of `opd` may not make `change`, judged before it is merged, or nil.
    ///
    /// First what the change alone decides (a base the master never issued, a value too large),
    /// then the scope: a change to a new row whose scope is not the writer's is refused with the
    /// same words whether or not another OPD holds a row under that key, so the reply does not
    /// tell. `state` is the master's row; when the master has none but a held or quarantined
    /// change of that key waits (`queue`: on arrival), that change's scope is the row's, so no
    /// other OPD can queue changes onto it.
    func arrivalRefusal(of change: PendingChange, opd: String, state: RowState, queue: Bool) throws -> RowRefusal? {
        let table = change.table.name
        let limits = RowLimits(config.limits)
        if let refusal = limits.baseRefusal(
            rowBase: change.rowBase, columnBases: change.bases.values, issued: version, table: table)
        {
            return refusal
        }
        if let refusal = limits.valueRefusal(key: change.key, values: change.incoming.values, table: table) {
            return refusal
        }
        var old = state.head?.scope
        if state.head == nil, queue, holdsExist { old = try pendingScope(of: change.table, state: state) }
        let new = newScope(of: change, stored: old)
        return config.access.writeRefusal(opd: opd, table: table, old: nil, new: new)
            ?? config.access.writeRefusal(opd: opd, table: table, old: old, new: new)
    }

    /// The scope value of the earliest held or quarantined change of a row the master does not
    /// hold, if any.
    func pendingScope(of table: TableSchema, state: RowState) throws -> SQLValue? {
        guard let column = config.rules.rules(for: table.name).scope, let text = state.firstBlocking?.held else {
            return nil
        }
        return try HeldChange(stored: text).row.values[column]
    }

    /// The row's scope value after `change` (nil for a delete), given its stored one.
    func newScope(of change: PendingChange, stored: SQLValue?) -> SQLValue? {
        guard change.operation != .delete, let column = config.rules.rules(for: change.table.name).scope else {
            return nil
        }
        if let k = change.table.primaryKey.firstIndex(where: { $0.name == column }) { return change.key[k] }
        let c = change.table.columns.firstIndex { $0.name == column }!
        return change.incoming[c] ?? stored ?? .null
    }

    /// The row's scope value in `values` (after a change that left it live).
    func scope(of table: TableSchema, key: [SQLValue], values: [SQLValue]) -> SQLValue? {
        guard let column = config.rules.rules(for: table.name).scope else { return nil }
        if let k = table.primaryKey.firstIndex(where: { $0.name == column }) { return key[k] }
        return table.columns.firstIndex { $0.name == column }.map { values[$0] }
    }

    /// Refuses a change its writer may not make: reported (when it is the pusher's own), and the
    /// row's master version moves when the writer may see it, so its next pull restores it.
    mutating func refuse(
        _ change: PendingChange, _ refusal: RowRefusal, visible: Bool, pk: [UInt8], reported: Bool
    ) throws {
        if visible {
            version += 1
            forget(change.table.name, pk: pk)
            try store.moveVersion(of: change.table, key: change.key, to: version)
        }
        // A change released later is refused inside another device's push or a reviewer's
        // decision: its refusal goes into its record, never into that reply.
        guard reported else { return }
        rejected.append(
            RejectedRow(
                table: change.table.name, primaryKey: change.key, code: refusal.code.rawValue,
                message: refusal.message, action: visible ? "restore" : "discard"))
    }

    /// The note that closes the record of a change refused when it was finally to be applied.
    static func refusedNote(_ refusal: RowRefusal) -> String {
        "Refused when it was to be merged (\(refusal.code.rawValue)): \(refusal.message)"
    }
}
