import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite

/// One change to merge into the master: a pushed row, a held row released, or a reviewer's
/// decision (written by the master itself).
struct PendingChange {
    var table: TableSchema
    var operation: Changeset.Operation
    var key: [SQLValue]
    /// The stamp after the clock-skew check.
    var stamp: HLC
    var clamped: Bool
    var rowBase: UInt64
    /// The columns the change sets (schema indexes), their values and their own bases.
    var columns: [Int]
    var incoming: [Int: SQLValue]
    var bases: [Int: UInt64]
    var writer: Writer
    var changesetID: UUID
    /// The OPD of the device that wrote the change, when it is known already (a push); else the
    /// merge finds it from the writer's replica (a held, queued or quarantined change released
    /// later). Every change but the master's own is judged by that OPD's rules.
    var opd: String?
    /// A parent a reviewer pointed this change at (merging two records into one): the writer did
    /// not choose it, so it is not judged by the writer's scope.
    var parentChosenByStaff: RowReference?

    /// The row as it arrived, by column name (key columns included).
    var heldRow: HeldRow {
        var values: [String: SQLValue] = [:]
        for (column, value) in zip(table.primaryKey, key) { values[column.name] = value }
        for c in columns { values[table.columns[c].name] = incoming[c] ?? .null }
        let operation: String =
            switch self.operation {
            case .upsert: "upsert"
            case .update: "update"
            case .delete: "delete"
            }
        return HeldRow(operation: operation, values: values)
    }

    var held: HeldChange {
        HeldChange(
            writer: writer.number, stamp: stamp.rawValue, clamped: clamped, version: rowBase,
            columnBases: Dictionary(uniqueKeysWithValues: bases.map { (table.columns[$0].name, $1) }),
            changeset: changesetID, row: heldRow)
    }

    /// Rebuilds a held change; `set` overrides values by column name.
    init(
        held: HeldChange, table: TableSchema, writer: Writer, set: [String: SQLValue] = [:]
    ) throws {
        let values = held.row.values.merging(set) { _, new in new }
        self.table = table
        operation =
            switch held.row.operation {
            case "upsert": .upsert
            case "update": .update
            default: .delete
            }
        key = try table.primaryKey.map { column in
            guard let v = values[column.name] else {
                throw SyncError(.internalError, "A held row of \(table.name) lacks its key column \(column.name).")
            }
            return v
        }
        stamp = HLC(rawValue: held.stamp)
        clamped = held.clamped
        rowBase = held.version
        columns = table.columns.indices.filter { values[table.columns[$0].name] != nil }
        incoming = Dictionary(uniqueKeysWithValues: columns.map { ($0, values[table.columns[$0].name]!) })
        bases = Dictionary(
            uniqueKeysWithValues: held.columnBases.compactMap { name, base in
                table.columns.firstIndex { $0.name == name }.map { ($0, base) }
            })
        self.writer = writer
        changesetID = held.changeset
    }

    init(
        table: TableSchema, operation: Changeset.Operation, key: [SQLValue], stamp: HLC, clamped: Bool,
        rowBase: UInt64, columns: [Int], incoming: [Int: SQLValue], bases: [Int: UInt64], writer: Writer,
        changesetID: UUID
    ) {
        self.table = table
        self.operation = operation
        self.key = key
        self.stamp = stamp
        self.clamped = clamped
        self.rowBase = rowBase
        self.columns = columns
        self.incoming = incoming
        self.bases = bases
        self.writer = writer
        self.changesetID = changesetID
    }

    var engineChange: IncomingChange {
        IncomingChange(
            operation: operation, writer: writer, stamp: stamp, rowBase: rowBase, columns: columns, columnBases: bases)
    }
}

/// What merging one change did.
enum MergeResult: Equatable {
    /// Nothing to do (a delete of a row the master never had).
    case ignored
    /// Merged, with this effect on the table.
    case merged(MergeDecision.Effect)
    /// Not applied: kept in conflict record `id` (quarantined, held for a parent, or queued).
    case held(Int64)
    /// Not applied: its writer may not make it (out of its scope, too large, a base version the
    /// master never issued).
    case refused(RowRefusal)
}

/// Merges changes into the master inside a write transaction: reads each row's clocks and values,
/// asks ``MergeEngine`` what to do under the table's policies, and writes the result, its
/// history and its conflict records. Rows that would break a UNIQUE constraint are quarantined,
/// rows whose parent is missing are held, and later changes of a held row queue behind it.
struct RowMerger {
    let db: Database
    let config: ServerConfig
    let statements: [String: TableSQL]
    let uniqueIndexes: [String: [[String]]]
    let decidedAt: String
    let serverMilliseconds: UInt64
    let resolve: (Int64) -> Writer
    let describe: (Int64) -> String

    /// The master's latest version; each change that moves a row takes the next one.
    private(set) var version: UInt64 = 0
    private(set) var applied = 0
    private(set) var clamped = 0
    /// The conflict records this merge made or changed, as reported to the pusher.
    private(set) var reports: [ConflictReport] = []
    /// Whether any held or quarantined record exists (checked once, then kept up to date).
    private var holdsExist = false
    /// The per-row statements and per-table plans, looked up once per merge.
    private let prepared: MergeStatements

    init(
        db: Database, config: ServerConfig, statements: [String: TableSQL], uniqueIndexes: [String: [[String]]],
        decidedAt: String, serverMilliseconds: UInt64, resolve: @escaping (Int64) -> Writer,
        describe: @escaping (Int64) -> String
    ) throws {
        self.db = db
        self.config = config
        self.statements = statements
        self.uniqueIndexes = uniqueIndexes
        self.decidedAt = decidedAt
        self.serverMilliseconds = serverMilliseconds
        self.resolve = resolve
        self.describe = describe
        prepared = try MergeStatements(db: db, config: config, statements: statements)
        version = try UInt64.fetchOne(db, sql: "SELECT max(version) FROM _ks_rows") ?? 0
        holdsExist = try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM _ks_conflicts \(Self.blocking))") ?? false
    }

    /// Records that keep a row's later changes waiting.
    static let blocking = "WHERE kind IN ('unique', 'foreign_key', 'queued') AND status IN ('open', 'held')"
    /// Records that are heads that lost: the merge engine's input.
    static let standing =
        "status IN ('open', 'auto') AND kind IN ('update_update', 'insert_insert', 'delete_update') AND policy <> 'additive'"

    /// Merges one pushed row from a device of `opd`. Hidden columns are not taken from replicas.
    mutating func merge(_ row: Changeset.Row, of validated: ValidatedChangeset, writer: Writer, opd: String) throws {
        let table = validated.tables[row.table]
        let (stamp, wasClamped) = config.clockSkew.admit(row.stamp, serverMilliseconds: serverMilliseconds)
        var (columns, incoming, bases) = validated.schemaColumns(of: row)
        let hiddenIndexes = try prepared.plan(for: table).hidden
        if !hiddenIndexes.isEmpty {
            columns.removeAll { hiddenIndexes.contains($0) }
            for c in hiddenIndexes {
                incoming[c] = nil
                bases[c] = nil
            }
        }
        var change = PendingChange(
            table: table, operation: row.operation, key: validated.schemaKey(of: row), stamp: stamp,
            clamped: wasClamped,
            rowBase: row.version, columns: columns, incoming: incoming, bases: bases, writer: writer,
            changesetID: validated.changeset.id)
        change.opd = opd
        _ = try merge(change)
    }

    /// The refused rows of this merge, as reported to the pusher.
    private(set) var rejected: [RejectedRow] = []

    /// The row's scope value after `change` (nil for a delete), given its stored one.
    private func newScope(of change: PendingChange, stored: SQLValue?) -> SQLValue? {
        guard change.operation != .delete, let column = config.rules.rules(for: change.table.name).scope else {
            return nil
        }
        if let k = change.table.primaryKey.firstIndex(where: { $0.name == column }) { return change.key[k] }
        let c = change.table.columns.firstIndex { $0.name == column }!
        return change.incoming[c] ?? stored ?? .null
    }

    /// The row's scope value in `values` (after a change that left it live).
    private func scope(of table: TableSchema, key: [SQLValue], values: [SQLValue]) -> SQLValue? {
        guard let column = config.rules.rules(for: table.name).scope else { return nil }
        if let k = table.primaryKey.firstIndex(where: { $0.name == column }) { return key[k] }
        return table.columns.firstIndex { $0.name == column }.map { values[$0] }
    }

    /// Refuses a change its writer may not make: reported (when it is the pusher's own), and the
    /// row's master version moves when the writer may see it, so its next pull restores it.
    private mutating func refuse(
        _ change: PendingChange, _ refusal: RowRefusal, visible: Bool, pk: [UInt8], reported: Bool
    ) throws {
        if visible {
            version += 1
            try db.execute(
                sql: "UPDATE _ks_rows SET version = ? WHERE tbl = ? AND pk = ?",
                arguments: [Int64(version), change.table.name, Data(pk)])
        }
        // A change released later is refused inside another device's push or a reviewer's
        // decision: its refusal goes into its record, never into that reply.
        guard reported else { return }
        rejected.append(
            RejectedRow(
                table: change.table.name, primaryKey: change.key, code: refusal.code.rawValue,
                message: refusal.message, action: visible ? "restore" : "discard"))
    }

    /// Merges one change. `queue` false: do not queue it behind the row's held records (it is
    /// one of them being released).
    mutating func merge(_ change: PendingChange, queue: Bool = true, reported: Bool = true) throws -> MergeResult {
        let table = change.table
        let plan = try prepared.plan(for: table)
        let pk = PrimaryKeyCoding.encode(change.key)
        let meta = try prepared.storedRow(table: table.name, pk: pk)
        let storedScope = meta?.scope
        // Every change but the master's own is judged by the rules of the OPD that wrote it,
        // whatever brought it here: a push, a release of a held or queued change, a reviewer
        // keeping a quarantined row.
        let opd = change.opd ?? writerOPD(change.writer)
        if let opd, let refusal = try arrivalRefusal(of: change, opd: opd, stored: meta, pk: pk, queue: queue) {
            let visible = meta != nil && config.access.sees(opd: opd, table: table.name, scope: storedScope)
            // A delete of a row its writer may not see is answered as a delete of a row the
            // master never had (ignored, nothing in the reply), so deletes cannot probe for
            // another OPD's keys. The device holds no copy to restore or discard.
            if change.operation == .delete, !visible, refusal.code == .outOfScope { return .ignored }
            try refuse(change, refusal, visible: visible, pk: pk, reported: reported)
            return .refused(refusal)
        }
        if queue, holdsExist,
            let blocker = try Int64.fetchOne(
                db.cachedStatement(
                    sql: "SELECT id FROM _ks_conflicts \(Self.blocking) AND tbl = ? AND pk = ? ORDER BY id LIMIT 1"),
                arguments: [table.name, Data(pk)])
        {
            return .held(
                try hold(
                    change, kind: .queued, status: .held,
                    related: RowReference(table: table.name, primaryKey: change.key),
                    reason:
                        "Waits behind conflict record \(blocker) of the same row; merged in order when it is resolved.",
                    reported: reported))
        }
        if change.clamped { clamped += 1 }

        let current = try meta.map { meta throws(SyncError) in
            try RowClocksCoding.decode(
                meta.clocks, version: meta.version, columnCount: table.columns.count, resolve: resolve)
        }
        let existing = (meta?.openConflicts ?? 0) > 0 ? try standingRecords(table, pk: pk) : [:]

        let engineChange = change.engineChange
        let policy = plan.policy
        let describe = self.describe
        let decision = MergeEngine.decide(
            current: current, losers: existing.values.map(\.record).filter { $0.column != nil }, change: engineChange,
            columnCount: table.columns.count, newVersion: version + 1, policy: policy,
            opd: { describe($0.number) })
        guard let clocks = decision.clocks else { return .ignored }

        let sql = plan.statements
        let old = current == nil ? nil : try sql.values(key: change.key)
        var values = old ?? Array(repeating: .null, count: table.columns.count)
        if decision.effect == .resurrect, let before = try valuesBeforeDeletion(table, pk: Data(pk)) { values = before }
        // The values the row's heads held before this change: for a deleted row, those it had
        // when it was deleted (a record made now may name one of them as the loser).
        let prior = current == nil ? nil : values
        var seen: [Int: SQLValue] = [:]
        var replaced = try decision.apply(to: &values, incoming: change.incoming) {
            existing[$0]?.loserValue
        } seenValue: {
            c in
            let value = try seenValue(change, column: c, table: table, pk: pk, current: prior?[c])
            seen[c] = value
            return value
        }

        if let opd, [.create, .update, .resurrect].contains(decision.effect),
            let refusal = RowLimits(config.limits).rowRefusal(key: change.key, values: values, table: table.name)
        {
            let visible = meta != nil && config.access.sees(opd: opd, table: table.name, scope: storedScope)
            try refuse(change, refusal, visible: visible, pk: pk, reported: reported)
            return .refused(refusal)
        }

        if [.create, .update, .resurrect].contains(decision.effect),
            let (parent, deleted) = try missingParent(
                of: table, key: change.key, values: values, changed: decision, opd: opd,
                chosenByStaff: change.parentChosenByStaff)
        {
            let name = parent.primaryKey.map(\.description).joined(separator: ", ")
            return .held(
                try hold(
                    change, kind: .foreignKey, status: deleted ? .open : .held, related: parent,
                    reason: deleted
                        ? "Refers to \(parent.table) \(name), which was deleted on the master; a reviewer decides."
                        : "Refers to \(parent.table) \(name), which the master does not have yet; merged when it arrives.",
                    reported: reported))
        }

        switch decision.effect {
        case .none:
            break
        case .create, .update, .resurrect:
            do {
                try sql.upsert(key: change.key, values: values)
            } catch let error as DatabaseError
                where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE
                || (error.resultCode == .SQLITE_CONSTRAINT && (error.message ?? "").contains("UNIQUE"))
            {
                return .held(try quarantine(change, values: values, error: error, reported: reported))
            }
        case .delete:
            replaced = old.map { Array($0.enumerated()) } ?? []
            try sql.delete(key: change.key)
        }
        version += 1
        if decision.effect != .none {
            applied += 1
            try prepared.writeHistory(
                table: table.name, pk: pk, version: version, writer: change.writer, stamp: change.stamp,
                op: change.operation, old: decision.effect == .create ? [] : replaced, clamped: change.clamped)
        }
        for merge in decision.additive {
            try recordAdditive(
                merge, change: change, table: table, pk: pk, seen: seen[merge.column] ?? .null,
                prior: prior?[merge.column] ?? .null, result: values[merge.column], reported: reported)
        }

        try reconcile(
            records: decision.records, with: existing, table: table, pk: pk, change: change, old: prior, new: values,
            reported: reported)

        let scopeAfter = clocks.isDeleted ? storedScope : scope(of: table, key: change.key, values: values)
        let gone: String?
        if plan.rules.scope == nil, meta?.goneFor == nil {
            // Without a scope a row's visibility never changes, so nobody stops seeing it:
            // what `goneFor` would compute, without building its sets for every row.
            gone = nil
        } else {
            let rules = config.rules
            gone = VisibilityChange(rules: rules).goneFor(
                previous: meta?.goneFor,
                before: meta == nil ? nil : rules.visibility(table: table.name, scope: storedScope),
                after: rules.visibility(table: table.name, scope: scopeAfter))
        }
        try prepared.writeRow(
            table: table.name, pk: pk, clocks: clocks, openConflicts: decision.records.count, scope: scopeAfter,
            goneFor: gone)
        if holdsExist, [.create, .update, .resurrect].contains(decision.effect) {
            try releaseWaiting(for: RowReference(table: table.name, primaryKey: change.key))
        }
        return .merged(decision.effect)
    }

    // MARK: - Holds

    /// Keeps `change` out of the master in a record of `kind`.
    private mutating func hold(
        _ change: PendingChange, kind: ConflictReport.Kind, status: ConflictReport.Status, related: RowReference,
        reason: String, winner: (writer: Int64, stamp: HLC, column: String?, value: SQLValue?)? = nil,
        reported: Bool
    ) throws -> Int64 {
        let held = try change.held.stored()
        let loserValue = winner?.column.flatMap { name in change.heldRow.values[name] }
        try db.execute(
            sql: """
                INSERT INTO _ks_conflicts(tbl, pk, col, kind, policy, status, base_version, base_value, has_base,
                    winner_writer, winner_stamp, winner_value, winner_has_value, loser_writer, loser_stamp,
                    loser_version, loser_insert, loser_value, loser_has_value, changeset, decided_at,
                    loser_delete, reason, held, related_tbl, related_pk)
                VALUES (?, ?, ?, ?, ?, ?, ?, NULL, 0, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                change.table.name, Data(PrimaryKeyCoding.encode(change.key)), winner?.column, kind.rawValue,
                kind == .unique ? "quarantine" : "hold", status.rawValue, Int64(change.rowBase),
                winner?.writer ?? 0, Int64(bitPattern: winner?.stamp.rawValue ?? 0),
                winner?.value?.databaseValue ?? .null, winner?.value == nil ? 0 : 1,
                change.writer.number, Int64(bitPattern: change.stamp.rawValue),
                change.operation == .upsert && change.rowBase == 0 ? 1 : 0, loserValue?.databaseValue ?? .null,
                loserValue == nil ? 0 : 1, Data(change.changesetID.bytes), decidedAt,
                change.operation == .delete ? 1 : 0, reason, held, related.table,
                Data(PrimaryKeyCoding.encode(related.primaryKey)),
            ])
        let id = db.lastInsertedRowID
        holdsExist = true
        if reported { reports.append(try reportOf(id)) }
        return id
    }

    /// A row that would break a UNIQUE constraint: kept in an `open` record beside the row it
    /// collided with.
    private mutating func quarantine(
        _ change: PendingChange, values: [SQLValue], error: DatabaseError, reported: Bool
    ) throws -> Int64 {
        let table = change.table
        var named: [String: SQLValue] = [:]
        for (column, value) in zip(table.primaryKey, change.key) { named[column.name] = value }
        for (column, value) in zip(table.columns, values) { named[column.name] = value }
        for index in uniqueIndexes[table.name] ?? [] {
            let predicate = index.map { "\(SQL.quote($0)) IS ?" }.joined(separator: " AND ")
            let keys = table.primaryKey.map { SQL.quote($0.name) }.joined(separator: ", ")
            guard
                let hit = try Row.fetchOne(
                    db, sql: "SELECT \(keys) FROM \(SQL.quote(table.name)) WHERE \(predicate) LIMIT 1",
                    arguments: StatementArguments(index.map { (named[$0] ?? .null).databaseValue }))
            else { continue }
            let other = (0..<table.primaryKey.count).map { SQLValue(hit[$0] as DatabaseValue) }
            guard other != change.key else { continue }
            // The side that holds the row: its strongest write.
            let clocks = try Row.fetchOne(
                db, sql: "SELECT version, clocks FROM _ks_rows WHERE tbl = ? AND pk = ?",
                arguments: [table.name, Data(PrimaryKeyCoding.encode(other))]
            ).map { row throws(SyncError) in
                try RowClocksCoding.decode(
                    [UInt8](row["clocks"] as Data), version: UInt64(row["version"] as Int64),
                    columnCount: table.columns.count, resolve: resolve)
            }
            let holder = clocks.map { clocks in
                let writes = clocks.existence.filter { !$0.isDelete }
                return MergeEngine.strongest(writes.isEmpty ? clocks.existence : writes)
            }
            let column = index.first { name in table.columns.contains { $0.name == name } }
            let otherValue = column.flatMap { name in
                table.columns.firstIndex { $0.name == name }
            }.flatMap { c in try? statements[table.name]!.values(db, key: other)?[c] }
            return try hold(
                change, kind: .unique, status: .open, related: RowReference(table: table.name, primaryKey: other),
                reason:
                    "\(error.message ?? "UNIQUE constraint failed"): collides with \(table.name) \(other.map(\.description).joined(separator: ", ")). Quarantined until a reviewer merges the two, keeps both or rejects this one.",
                winner: (holder?.writer.number ?? 0, holder?.stamp ?? .zero, column, otherValue), reported: reported)
        }
        // The constraint is not one we can attribute to a row: refuse the changeset as before.
        throw error
    }

    /// The first parent `values` refer to that the master does not hold live, and whether it
    /// was deleted (as opposed to not arrived yet). Only references the change touches count.
    ///
    /// A parent outside the scope of the writer's OPD (`opd`; nil for the master) counts as one
    /// the master does not have, live or deleted: the change waits exactly as if it were absent,
    /// so a device cannot tell another OPD's row from no row by pointing at it.
    private func missingParent(
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
            // A parent the master never had is absent whoever asks; one it has or had counts as
            // absent too when it lies outside the writer's scope.
            var inScope = true
            // (A parent table without a scope is everyone's: no lookup.)
            if let opd, reference != chosenByStaff, config.rules.rules(for: parent.name).scope != nil,
                let state = try parentState(reference)
            {
                inScope = config.access.mayReference(opd: opd, table: parent.name, scope: state.scope)
            }
            if inScope, try statements[parent.name]!.values(db, key: parentKey) != nil { continue }
            let deleted =
                try Bool.fetchOne(
                    db, sql: "SELECT deleted FROM _ks_rows WHERE tbl = ? AND pk = ?",
                    arguments: [parent.name, Data(PrimaryKeyCoding.encode(parentKey))]) ?? false
            return (reference, deleted && inScope)
        }
        return nil
    }

    /// Merges, in the order they came, the held changes waiting for `row`: rows that refer to
    /// it (it has arrived) and later changes of it (queued behind it). `chosenByStaff`: the records
    /// of rows a reviewer pointed at `row` (merging two records), which its scope does not hold
    /// back: their writers did not choose it.
    mutating func releaseWaiting(for row: RowReference, chosenByStaff: Set<Int64> = []) throws {
        let waiting = try Row.fetchAll(
            db,
            sql: """
                SELECT id, tbl, held, kind FROM _ks_conflicts
                WHERE related_tbl = ? AND related_pk = ? AND status = 'held' ORDER BY id
                """,
            arguments: [row.table, Data(PrimaryKeyCoding.encode(row.primaryKey))])
        var queueStopped = false
        for record in waiting {
            let id: Int64 = record["id"]
            let kind: String = record["kind"]
            if kind == ConflictReport.Kind.queued.rawValue, queueStopped { continue }
            guard let table = config.table(named: record["tbl"]), let text: String = record["held"] else { continue }
            let held = try HeldChange(stored: text)
            var change = try PendingChange(held: held, table: table, writer: resolve(held.writer))
            let refers = kind == ConflictReport.Kind.foreignKey.rawValue
            let staffChose = refers && chosenByStaff.contains(id)
            if staffChose { change.parentChosenByStaff = row }
            // A row waiting for a parent waits on while the parent is outside its writer's
            // scope, as it did while the parent was absent: no new record, nothing the writer
            // could tell apart.
            if refers, !staffChose, let opd = writerOPD(change.writer) {
                let state = try parentState(row)
                guard let state, state.live, config.access.mayReference(opd: opd, table: row.table, scope: state.scope)
                else { continue }
            }
            let queued = kind == ConflictReport.Kind.queued.rawValue
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
                try db.inSavepoint {
                    try close(
                        id, take: .remote, note: "Merged automatically: what it waited for arrived.", by: "kotasync")
                    outcome = try merge(change, queue: false, reported: false)
                    return .commit
                }
            } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
                self = saved
                try reopen(
                    id,
                    reason:
                        "Could not be merged when what it waited for arrived: \(error.message ?? "a constraint failed"). A reviewer applies it corrected with set column=value, or rejects it."
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
    func holds(_ table: TableSchema, key: [SQLValue]) throws -> Bool {
        try Bool.fetchOne(
            db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM _ks_rows WHERE tbl = ? AND pk = ?)"),
            arguments: [table.name, Data(PrimaryKeyCoding.encode(key))]) ?? false
    }

    /// Puts record `id` back in front of a person (`open`), saying why it was not merged.
    func reopen(_ id: Int64, reason: String) throws {
        try db.execute(
            sql: "UPDATE _ks_conflicts SET status = 'open', resolution = NULL, reason = ? WHERE id = ?",
            arguments: [reason, id])
    }

    static func describe(_ key: [SQLValue]) -> String { key.map(\.description).joined(separator: ", ") }

    /// The note that closes the record of a change refused when it was finally to be applied.
    static func refusedNote(_ refusal: RowRefusal) -> String {
        "Refused when it was to be merged (\(refusal.code.rawValue)): \(refusal.message)"
    }

    // MARK: - Judging a writer's change

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
    /// tell. `stored` is the master's row; when the master has none but a held or quarantined
    /// change of that key waits (`queue`: on arrival), that change's scope is the row's, so no
    /// other OPD can queue changes onto it.
    private func arrivalRefusal(
        of change: PendingChange, opd: String, stored: StoredRowState?, pk: [UInt8], queue: Bool
    ) throws -> RowRefusal? {
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
        var old = stored?.scope
        if stored == nil, queue, holdsExist { old = try pendingScope(of: change.table, pk: pk) }
        let new = newScope(of: change, stored: old)
        return config.access.writeRefusal(opd: opd, table: table, old: nil, new: new)
            ?? config.access.writeRefusal(opd: opd, table: table, old: old, new: new)
    }

    /// The scope value of the earliest held or quarantined change of a row the master does not
    /// hold, if any.
    private func pendingScope(of table: TableSchema, pk: [UInt8]) throws -> SQLValue? {
        guard let column = config.rules.rules(for: table.name).scope,
            let text = try String.fetchOne(
                db.cachedStatement(
                    sql: "SELECT held FROM _ks_conflicts \(Self.blocking) AND tbl = ? AND pk = ? ORDER BY id LIMIT 1"),
                arguments: [table.name, Data(pk)])
        else { return nil }
        return try HeldChange(stored: text).row.values[column]
    }

    /// Whether the master has `row` live, and its scope value; nil when the master never had it.
    private func parentState(_ row: RowReference) throws -> (live: Bool, scope: SQLValue)? {
        try Row.fetchOne(
            db.cachedStatement(sql: "SELECT deleted, scope FROM _ks_rows WHERE tbl = ? AND pk = ?"),
            arguments: [row.table, Data(PrimaryKeyCoding.encode(row.primaryKey))]
        ).map { stored in ((stored["deleted"] as Bool) == false, SQLValue(stored["scope"] as DatabaseValue)) }
    }

    /// Marks record `id` resolved.
    func close(
        _ id: Int64, take: ResolutionChoice, values: [String: SQLValue]? = nil, note: String?, by: String,
        masterVersion: UInt64? = nil
    ) throws {
        let resolution = Resolution(
            take: take, values: values, note: note, by: by, at: decidedAt, masterVersion: masterVersion)
        try db.execute(
            sql: "UPDATE _ks_conflicts SET status = 'resolved', resolution = ? WHERE id = ?",
            arguments: [String(decoding: try ProtocolJSON.encoder().encode(resolution), as: UTF8.self), id])
    }

    /// Makes the master remember `key` as deleted by the master itself, so that replicas holding
    /// a copy (of a row the master never merged) drop it. `old` is kept in the history.
    mutating func tombstone(_ table: TableSchema, key: [SQLValue], old: [(Int, SQLValue)]) throws {
        let pk = Data(PrimaryKeyCoding.encode(key))
        let stamp = HLC(milliseconds: serverMilliseconds, counter: 0)
        if try Bool.fetchOne(
            db, sql: "SELECT EXISTS (SELECT 1 FROM _ks_rows WHERE tbl = ? AND pk = ?)", arguments: [table.name, pk])
            == true
        {
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
        try prepared.writeHistory(
            table: table.name, pk: [UInt8](pk), version: version, writer: .master, stamp: stamp, op: .delete, old: old,
            clamped: false)
        // The scope it would have had, so that the replicas that hold a copy are sent the removal.
        var values = Array(repeating: SQLValue.null, count: table.columns.count)
        for (c, v) in old where c < values.count { values[c] = v }
        let scope = scope(of: table, key: key, values: values)
        try db.execute(
            sql:
                "INSERT INTO _ks_rows(tbl, pk, version, deleted, open_conflicts, clocks, scope) VALUES (?, ?, ?, 1, 0, ?, ?)",
            arguments: [
                table.name, pk, Int64(version), Data(RowClocksCoding.encode(clocks)), (scope ?? .null).databaseValue,
            ])
    }

    // MARK: - Records

    /// A standing record as stored: the record, its row id, and the losing value.
    struct StoredRecord {
        var id: Int64
        var record: ConflictRecord
        var loserValue: SQLValue?
    }

    private func standingRecords(_ table: TableSchema, pk: [UInt8]) throws -> [RecordKey: StoredRecord] {
        var out: [RecordKey: StoredRecord] = [:]
        let read = { (r: ColumnReader) throws -> Bool in
            // Columns: id, col, kind, policy, status, loser_writer, loser_stamp, loser_version,
            // loser_insert, loser_delete, loser_value, loser_has_value, winner_writer, winner_stamp.
            let name: String? = r.isNull(1) ? nil : r.text(1)
            let column = name.flatMap { name in table.columns.firstIndex { $0.name == name } }
            let kind = ConflictReport.Kind(rawValue: r.text(2)) ?? .updateUpdate
            let loser = Head(
                writer: resolve(r.int64(5)), version: UInt64(bitPattern: r.int64(7)),
                stamp: HLC(rawValue: UInt64(bitPattern: r.int64(6))), isInsert: r.int64(8) != 0,
                isDelete: r.int64(9) != 0)
            let winner = Head(
                writer: resolve(r.int64(12)), version: 0, stamp: HLC(rawValue: UInt64(bitPattern: r.int64(13))))
            let record = ConflictRecord(
                column: column, kind: kind, loser: loser, winner: winner, policy: r.text(3),
                waiting: r.text(4) == ConflictReport.Status.open.rawValue)
            out[record.key] = StoredRecord(
                id: r.int64(0), record: record, loserValue: r.int64(11) == 1 ? r.value(10) : nil)
            return true
        }
        try prepared.standingRecords.forEachRow(
            binding: { p in
                p.bind(.text(table.name))
                p.bind(blob: pk)
            }, read)
        return out
    }

    /// Makes the stored standing records of a row what the merge decided: new ones inserted,
    /// ones whose winner changed re-pointed, ones no longer standing marked superseded.
    private mutating func reconcile(
        records: [ConflictRecord], with existing: [RecordKey: StoredRecord], table: TableSchema, pk: [UInt8],
        change: PendingChange, old: [SQLValue]?, new: [SQLValue], reported: Bool
    ) throws {
        let changes = RecordChanges(wanted: records, stored: existing.mapValues(\.record))
        for k in changes.superseded {
            try prepared.supersede.run { p in p.bind(existing[k]!.id) }
        }
        for record in changes.repointed {
            let stored = existing[record.key]!
            let winnerValue = record.column.map { new[$0] }
            try prepared.repoint.run { p in
                p.bind(.text(record.kind.rawValue))
                p.bind(record.winner.writer.number)
                p.bind(Int64(bitPattern: record.winner.stamp.rawValue))
                p.bind(winnerValue ?? .null)
                p.bind(winnerValue == nil ? 0 : 1)
                p.bind(stored.id)
            }
            if reported { reports.append(try reportOf(stored.id)) }
        }
        for record in changes.inserted {
            let winnerValue = record.column.map { new[$0] }
            let loserValue = RecordChanges.loserValue(
                of: record, change: change.engineChange, incoming: change.incoming, prior: old)
            let baseVersion = record.column.map { change.bases[$0] ?? change.rowBase } ?? change.rowBase
            let base = try record.column.flatMap { c in
                try valueAt(base: baseVersion, column: c, table: table, pk: pk, current: old?[c])
            }
            // A write that lost to a delete (delete-wins) and never reached the table keeps its values here.
            let lostWrite =
                record.column == nil && !record.loser.isDelete && record.loser.writer == change.writer
                && record.loser.stamp == change.stamp
            try insertRecord(
                record, table: table, pk: pk, baseVersion: baseVersion, base: base, winnerValue: winnerValue,
                loserValue: loserValue, changesetID: change.changesetID, reason: nil,
                held: lostWrite ? try change.held.stored() : nil,
                reported: reported)
        }
    }

    private mutating func insertRecord(
        _ record: ConflictRecord, table: TableSchema, pk: [UInt8], baseVersion: UInt64, base: SQLValue?,
        winnerValue: SQLValue?, loserValue: SQLValue?, changesetID: UUID, reason: String?, held: String? = nil,
        reported: Bool
    ) throws {
        try prepared.insertRecord.run { p in
            p.bind(.text(table.name))
            p.bind(blob: pk)
            p.bind(record.column.map { SQLValue.text(table.columns[$0].name) } ?? .null)
            p.bind(.text(record.kind.rawValue))
            p.bind(.text(record.policy))
            p.bind(.text(record.status.rawValue))
            p.bind(Int64(baseVersion))
            p.bind(base ?? .null)
            p.bind(base == nil ? 0 : 1)
            p.bind(record.winner.writer.number)
            p.bind(Int64(bitPattern: record.winner.stamp.rawValue))
            p.bind(winnerValue ?? .null)
            p.bind(winnerValue == nil ? 0 : 1)
            p.bind(record.loser.writer.number)
            p.bind(Int64(bitPattern: record.loser.stamp.rawValue))
            p.bind(Int64(record.loser.version))
            p.bind(record.loser.isInsert ? 1 : 0)
            p.bind(loserValue ?? .null)
            p.bind(loserValue == nil ? 0 : 1)
            p.bind(blob: changesetID.bytes)
            p.bind(.text(decidedAt))
            p.bind(record.loser.isDelete ? 1 : 0)
            p.bind(reason.map(SQLValue.text) ?? .null)
            p.bind(held.map(SQLValue.text) ?? .null)
        }
        guard reported else { return }
        // The report of a record just inserted, from the values bound (what `reportOf` would
        // read back: values keep their storage class, and NaN never gets past the decoder).
        func side(_ head: Head, _ value: SQLValue?) -> ConflictReport.Side {
            ConflictReport.Side(
                replicaId: resolve(head.writer.number).id, opd: describe(head.writer.number), stamp: head.stamp,
                value: value)
        }
        var report = ConflictReport(
            id: db.lastInsertedRowID, table: table.name, primaryKey: try PrimaryKeyCoding.decode(pk),
            column: record.column.map { table.columns[$0].name }, kind: record.kind, policy: record.policy, base: base,
            winner: side(record.winner, winnerValue), loser: side(record.loser, loserValue),
            status: record.status.rawValue, decidedAt: decidedAt)
        report.reason = reason
        report.held = held.flatMap { try? HeldChange(stored: $0).row }
        reports.append(report)
    }

    /// The record as reported; OPD names come from `describe`.
    private func reportOf(_ id: Int64) throws -> ConflictReport {
        var report: ConflictReport?
        try prepared.readRecord.forEachRow([.integer(id)]) { r in
            report = try ConflictReport(reading: r, writer: resolve, opd: describe)
            return false
        }
        guard let report else { throw SyncError(.internalError, "Conflict record \(id) vanished.") }
        return report
    }

    // MARK: - Additive columns

    /// The value the change's writer had seen of an `additive` column: its own last write if the
    /// master merged that after the change's base, else the column's value at the base.
    private func seenValue(
        _ change: PendingChange, column c: Int, table: TableSchema, pk: [UInt8], current: SQLValue?
    ) throws -> SQLValue {
        let base = change.bases[c] ?? change.rowBase
        if let own = try Row.fetchOne(
            db.cachedStatement(
                sql: "SELECT version, value FROM _ks_additive WHERE tbl = ? AND pk = ? AND col = ? AND writer = ?"),
            arguments: [table.name, Data(pk), table.columns[c].name, change.writer.number]),
            UInt64(own["version"] as Int64) > base
        {
            return SQLValue(own["value"] as DatabaseValue)
        }
        return try valueAt(base: base, column: c, table: table, pk: pk, current: current) ?? .null
    }

    /// Remembers what the writer now sees of the column, and records the merge when another
    /// change had moved the column since the writer saw it.
    private mutating func recordAdditive(
        _ merge: AdditiveMerge, change: PendingChange, table: TableSchema, pk: [UInt8], seen: SQLValue, prior: SQLValue,
        result: SQLValue, reported: Bool
    ) throws {
        let name = table.columns[merge.column].name
        let value = change.incoming[merge.column] ?? .null
        try db.cachedStatement(
            sql: "INSERT OR REPLACE INTO _ks_additive(tbl, pk, col, writer, version, value) VALUES (?, ?, ?, ?, ?, ?)"
        ).run([
            .text(table.name), .blob(pk), .text(name), .integer(change.writer.number),
            .integer(Int64(version)), value,
        ])
        guard prior != seen else { return }
        let incomingHead = Head(writer: change.writer, version: version, stamp: change.stamp)
        try insertRecord(
            ConflictRecord(
                column: merge.column, kind: .updateUpdate, loser: merge.previous, winner: incomingHead,
                policy: ColumnPolicy.additive.description),
            table: table, pk: pk, baseVersion: change.bases[merge.column] ?? change.rowBase, base: seen,
            winnerValue: result, loserValue: prior, changesetID: change.changesetID,
            reason:
                "additive: both changes count. The master held \(prior), this change moved the column from \(seen) to \(value); the master now holds \(result).",
            reported: reported)
    }

    // MARK: - History

    func valuesBeforeDeletion(_ table: TableSchema, pk: Data) throws -> [SQLValue]? {
        guard
            let old = try Data.fetchOne(
                db.cachedStatement(
                    sql: "SELECT old FROM _ks_history WHERE tbl = ? AND pk = ? AND op = 3 ORDER BY version DESC LIMIT 1"
                ),
                arguments: [table.name, pk])
        else { return nil }
        var values = Array(repeating: SQLValue.null, count: table.columns.count)
        for (c, v) in try HistoryCoding.decode([UInt8](old)) where c < values.count { values[c] = v }
        return values
    }

    /// The value `column` had at master version `base`: the old value saved by the first change
    /// after `base` that touched it, or the current value if none did.
    private func valueAt(base: UInt64, column: Int, table: TableSchema, pk: [UInt8], current: SQLValue?) throws
        -> SQLValue?
    {
        guard base > 0 else { return nil }
        var hit: SQLValue?
        try prepared.historyAfter.forEachRow(
            binding: { p in
                p.bind(.text(table.name))
                p.bind(blob: pk)
                p.bind(Int64(base))
            },
            { row in
                hit = try HistoryCoding.decode(row.bytes(0)).first { $0.0 == column }?.1
                return hit == nil
            })
        return hit ?? current
    }
}
