import Foundation
import KotaSyncCore

/// What a merge needs of one replicated table, looked up once per merge instead of once per row.
final class TablePlan {
    let table: TableSchema
    let policy: TablePolicy
    let rules: TableRules
    /// Schema indexes of the columns never taken from replicas.
    let hidden: Set<Int>

    init(_ table: TableSchema, config: ServerConfig) {
        self.table = table
        policy = config.policy(for: table)
        rules = config.rules.rules(for: table.name)
        hidden = Set(rules.hidden.compactMap { name in table.columns.firstIndex { $0.name == name } })
    }
}

/// Writes what ``MergeEngine`` decides, through a ``MergeStore``, inside the transaction the
/// store's backend opened: reads each row's clocks and values, asks the engine what to do under
/// the table's policies, and writes the result, its history and its conflict records. Rows that
/// would break a UNIQUE constraint are quarantined, rows whose parent is missing are held, and
/// later changes of a held row queue behind it.
///
/// The engine decides; this type only carries the decision out. Its concerns live in files of
/// their own: merging a row (here), judging a writer's change (`+Judging`), holds, quarantines
/// and releases (`+Holds`), conflict records (`+Records`), additive columns (`+Additive`) and
/// history (`+History`).
///
/// Reads are set-based: ``prefetch(_:)`` reads the state of every key of a window of changes
/// (and of the parents they name) in one call per table, and every later read of a key is served
/// from what was read until something writes that key.
struct MergeWriter {
    let store: any MergeStore
    let config: ServerConfig
    let decidedAt: String
    let serverMilliseconds: UInt64
    let resolve: (Int64) -> Writer
    let describe: (Int64) -> String

    /// The master's latest version; each change that moves a row takes the next one.
    var version: UInt64 = 0
    var applied = 0
    var clamped = 0
    /// The conflict records this merge made or changed, as reported to the pusher.
    var reports: [ConflictReport] = []
    /// The refused rows of this merge, as reported to the pusher.
    var rejected: [RejectedRow] = []
    /// Whether any held or quarantined record exists (checked once, then kept up to date).
    var holdsExist = false
    /// The state of keys read and not written since, per table and encoded key.
    var known: [String: [[UInt8]: RowState]] = [:]
    /// Per-table plans, made on the first row of the table this merge sees.
    private let plans: PlanCache

    init(
        store: any MergeStore, config: ServerConfig, decidedAt: String, serverMilliseconds: UInt64,
        resolve: @escaping (Int64) -> Writer, describe: @escaping (Int64) -> String
    ) throws {
        self.store = store
        self.config = config
        self.decidedAt = decidedAt
        self.serverMilliseconds = serverMilliseconds
        self.resolve = resolve
        self.describe = describe
        plans = PlanCache(config: config)
        version = try store.latestVersion()
        holdsExist = try store.anyBlockingRecord()
    }

    /// Writes out what the store buffered; called once the merge's last change is merged.
    func finish() throws { try store.flush() }

    /// Records that keep a row's later changes waiting.
    static let blockingKinds: Set<ConflictReport.Kind> = [.unique, .foreignKey, .queued]

    func plan(for table: TableSchema) -> TablePlan { plans.plan(for: table) }

    // MARK: - Reading rows

    /// Reads, one call per table, the state of every key `rows` change and of every parent they
    /// name, so that merging them reads nothing row by row.
    mutating func prefetch(_ rows: [Changeset.Row], of validated: ValidatedChangeset) throws {
        // What the last window read is not needed again (its keys were written, and forgotten,
        // or refused): memory stays one window's.
        forgetAll()
        // Per table, the keys to read (each once); mutated in place, not copied out and back.
        var wanted: [String: (table: TableSchema, keys: [[SQLValue]])] = [:]
        var seen: Set<[UInt8]> = []
        func want(_ table: TableSchema, _ key: [SQLValue]) {
            var pk = PrimaryKeyCoding.encode(key)
            pk.append(contentsOf: table.name.utf8)
            guard seen.insert(pk).inserted else { return }
            wanted[table.name, default: (table, [])].keys.append(key)
        }
        for row in rows {
            let table = validated.tables[row.table]
            let key = validated.schemaKey(of: row)
            want(table, key)
            guard row.operation != .delete, let fks = config.foreignKeys[table.name], !fks.isEmpty else { continue }
            // The parents the row names, so that checking them reads nothing either.
            let (_, values, _) = validated.schemaColumns(of: row)
            var named: [String: SQLValue] = [:]
            for (column, value) in zip(table.primaryKey, key) { named[column.name] = value }
            for (c, value) in values { named[table.columns[c].name] = value }
            for fk in fks {
                guard let parent = config.table(named: fk.parentTable) else { continue }
                let refs = fk.columns.map { named[$0] ?? .null }
                guard !refs.contains(.null) else { continue }
                let parentKey = parent.primaryKey.map { column -> SQLValue in
                    guard let i = fk.parentColumns.firstIndex(of: column.name) else { return .null }
                    return refs[i]
                }
                if !parentKey.contains(.null) { want(parent, parentKey) }
            }
        }
        for (name, entry) in wanted.sorted(by: { $0.key < $1.key }) {
            let states = try store.rows(of: entry.table, keys: entry.keys, blocking: holdsExist)
            for (key, state) in zip(entry.keys, states) {
                known[name, default: [:]][PrimaryKeyCoding.encode(key)] = state
            }
        }
        if store.readsAhead { try readAhead(rows, of: validated) }
    }

    /// Tells the store, per table, what the window will probably need beyond the rows' states:
    /// the rows it will probably write, with the values they will probably hold (the row as
    /// read, with the pushed columns over it), and the rows whose history it will probably read
    /// — those changed on the master since the writer's base, where a conflict record takes its
    /// base value from the history (``valueAt(base:column:table:key:current:)``).
    private func readAhead(_ rows: [Changeset.Row], of validated: ValidatedChangeset) throws {
        var expected: [String: (table: TableSchema, rows: [(key: [SQLValue], values: [SQLValue])])] = [:]
        var history: [String: (table: TableSchema, keys: [(key: [SQLValue], after: UInt64)])] = [:]
        for row in rows where row.operation != .delete {
            let table = validated.tables[row.table]
            let key = validated.schemaKey(of: row)
            let (_, incoming, bases) = validated.schemaColumns(of: row)
            let state = known[table.name]?[PrimaryKeyCoding.encode(key)]
            var values = state?.values ?? Array(repeating: .null, count: table.columns.count)
            for (c, value) in incoming { values[c] = value }
            expected[table.name, default: (table, [])].rows.append((key, values))
            // The oldest base a record of this change could name: entries after it are read.
            if let head = state?.head, let base = ([row.version] + bases.values).filter({ $0 > 0 }).min(),
                base < head.version
            {
                history[table.name, default: (table, [])].keys.append((key, base))
            }
        }
        for (_, entry) in expected.sorted(by: { $0.key < $1.key }) {
            try store.expectWrites(of: entry.table, rows: entry.rows)
        }
        for (_, entry) in history.sorted(by: { $0.key < $1.key }) {
            try store.expectHistoryReads(of: entry.table, keys: entry.keys)
        }
    }

    /// The state of `key` of `table`: as read before, or read now.
    mutating func state(of table: TableSchema, key: [SQLValue], pk: [UInt8]) throws -> RowState {
        if let state = known[table.name]?[pk] { return state }
        let state = try store.rows(of: table, keys: [key], blocking: holdsExist)[0]
        known[table.name, default: [:]][pk] = state
        return state
    }

    mutating func state(of row: RowReference) throws -> RowState {
        guard let table = config.table(named: row.table) else {
            throw SyncError(.internalError, "Table \(row.table) does not replicate.")
        }
        return try state(of: table, key: row.primaryKey, pk: PrimaryKeyCoding.encode(row.primaryKey))
    }

    /// Forgets what was read of one key: it is being written.
    mutating func forget(_ table: String, pk: [UInt8]) {
        known[table]?[pk] = nil
    }

    /// Forgets every key read: a record whose row is not known changed.
    mutating func forgetAll() {
        known.removeAll(keepingCapacity: true)
    }

    // MARK: - Merging a row

    /// Merges one pushed row from a device of `opd`. Hidden columns are not taken from replicas.
    mutating func merge(_ row: Changeset.Row, of validated: ValidatedChangeset, writer: Writer, opd: String) throws {
        let table = validated.tables[row.table]
        let (stamp, wasClamped) = config.clockSkew.admit(row.stamp, serverMilliseconds: serverMilliseconds)
        var (columns, incoming, bases) = validated.schemaColumns(of: row)
        let hiddenIndexes = plan(for: table).hidden
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

    /// Merges one change. `queue` false: do not queue it behind the row's held records (it is
    /// one of them being released).
    mutating func merge(_ change: PendingChange, queue: Bool = true, reported: Bool = true) throws -> MergeResult {
        let table = change.table
        let plan = plan(for: table)
        let pk = PrimaryKeyCoding.encode(change.key)
        let state = try state(of: table, key: change.key, pk: pk)
        let meta = state.head
        let storedScope = meta?.scope
        // Every change but the master's own is judged by the rules of the OPD that wrote it,
        // whatever brought it here: a push, a release of a held or queued change, a reviewer
        // keeping a quarantined row.
        let opd = change.opd ?? writerOPD(change.writer)
        if let opd, let refusal = try arrivalRefusal(of: change, opd: opd, state: state, queue: queue) {
            let visible = meta != nil && config.access.sees(opd: opd, table: table.name, scope: storedScope)
            // A delete of a row its writer may not see is answered as a delete of a row the
            // master never had (ignored, nothing in the reply), so deletes cannot probe for
            // another OPD's keys. The device holds no copy to restore or discard.
            if change.operation == .delete, !visible, refusal.code == .outOfScope { return .ignored }
            try refuse(change, refusal, visible: visible, pk: pk, reported: reported)
            return .refused(refusal)
        }
        if queue, holdsExist, let blocker = state.firstBlocking?.id {
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
        let existing = (meta?.openConflicts ?? 0) > 0 ? standingRecords(state, table: table) : [:]

        let engineChange = change.engineChange
        let policy = plan.policy
        let describe = self.describe
        let decision = MergeEngine.decide(
            current: current, losers: existing.values.map(\.record).filter { $0.column != nil }, change: engineChange,
            columnCount: table.columns.count, newVersion: version + 1, policy: policy,
            opd: { describe($0.number) })
        guard let clocks = decision.clocks else { return .ignored }

        let old = current == nil ? nil : state.values
        // A new row starts from the columns' constant defaults, as SQLite's INSERT fills the
        // columns it is not given: a replica of an older schema version does not send a column
        // added since (a NOT NULL one has a default, which the row must take).
        var values = old ?? config.columnDefaults(of: table)
        if decision.effect == .resurrect, let before = try valuesBeforeDeletion(table, key: change.key) {
            values = before
        }
        // The values the row's heads held before this change: for a deleted row, those it had
        // when it was deleted (a record made now may name one of them as the loser).
        let prior = current == nil ? nil : values
        var seen: [Int: SQLValue] = [:]
        var replaced = try decision.apply(to: &values, incoming: change.incoming) {
            existing[$0]?.loserValue
        } seenValue: {
            c in
            let value = try seenValue(change, column: c, table: table, current: prior?[c])
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
            forget(table.name, pk: pk)
            if case .uniqueViolation(let other, let column, let message) = try store.writeRow(
                table, key: change.key, values: values)
            {
                return .held(
                    try quarantine(change, collidingWith: other, column: column, message: message, reported: reported))
            }
        case .delete:
            forget(table.name, pk: pk)
            replaced = old.map { Array($0.enumerated()) } ?? []
            try store.deleteRow(table, key: change.key)
        }
        forget(table.name, pk: pk)
        version += 1
        if decision.effect != .none {
            applied += 1
            try store.appendHistory(
                HistoryEntry(
                    table: table.name, key: change.key, version: version, writer: change.writer.number,
                    stamp: change.stamp, operation: change.operation,
                    old: decision.effect == .create ? [] : replaced, clamped: change.clamped))
        }
        for merge in decision.additive {
            try recordAdditive(
                merge, change: change, table: table, seen: seen[merge.column] ?? .null,
                prior: prior?[merge.column] ?? .null, result: values[merge.column], reported: reported)
        }

        try reconcile(
            records: decision.records, with: existing, table: table, change: change, old: prior, new: values,
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
        try store.writeHead(
            HeadWrite(
                table: table.name, key: change.key, version: clocks.version, deleted: clocks.isDeleted,
                openConflicts: decision.records.count, clocks: RowClocksCoding.encode(clocks),
                scope: scopeAfter ?? .null, goneFor: gone))
        if holdsExist, [.create, .update, .resurrect].contains(decision.effect) {
            try releaseWaiting(for: RowReference(table: table.name, primaryKey: change.key))
        }
        return .merged(decision.effect)
    }

    static func describe(_ key: [SQLValue]) -> String { key.map(\.description).joined(separator: ", ") }
}

/// The per-table plans of one merge (a class: the writer is a value copied around savepoints,
/// the plans never change).
private final class PlanCache {
    let config: ServerConfig
    var plans: [String: TablePlan] = [:]

    init(config: ServerConfig) { self.config = config }

    func plan(for table: TableSchema) -> TablePlan {
        if let plan = plans[table.name] { return plan }
        let plan = TablePlan(table, config: config)
        plans[table.name] = plan
        return plan
    }
}
