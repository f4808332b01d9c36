import Foundation
import KotaSyncCore

/// The merge's port: everything the merge procedure (``MergeWriter``, ``ReviewDecision``) reads
/// from and writes to the master, and nothing else.
///
/// The procedure decides with ``MergeEngine`` (pure) and writes through this port; a backend
/// (SQLite in `Storage/SQLite/`, PostgreSQL next) implements it. The port is **synchronous**: the
/// whole procedure runs inside one write transaction that the backend opened before handing out
/// the port and commits after the procedure returns, and it reacts to each write's outcome (a
/// unique collision quarantines the row, a parent written earlier in the same transaction lets
/// its child in, a write releases the changes waiting for it). A backend whose every statement
/// is a network round trip runs the procedure on a blocking thread holding one connection.
///
/// It is **set-based** where the procedure's hot path needs it: ``rows(of:keys:blocking:)``
/// reads the state of many keys of one table at once (the procedure reads every key of a window
/// of a push that way, then serves its single reads from what it read), and the bookkeeping
/// writes — history entries (``appendHistory(_:)``), version entries (``writeHead(_:)``) and new
/// conflict records (``insertRecord(_:)``) — may be buffered and written in batches. Every read
/// of the port sees every write made through it before (an implementation that buffers writes
/// them out first), and ``flush()`` writes out whatever is buffered.
///
/// Every requirement that writes may throw ``MergeStoreConstraintViolation`` when the master
/// refuses the write by a constraint of its own (NOT NULL, CHECK, a UNIQUE index that names no
/// other row): a value the procedure answers (a refused push, a release left for a person), not
/// a backend's error code. A UNIQUE collision with another row is not an error but an outcome:
/// ``RowWriteOutcome/uniqueViolation(with:message:)``.
///
/// Versions: the master's versions are one sequence, handed out in merge order.
/// ``latestVersion()`` is read once per transaction; the procedure hands out the following
/// numbers itself, so the backend must keep other merges out from that read to the commit (on
/// SQLite the single writer does; on PostgreSQL a transaction-scoped advisory lock).
protocol MergeStore {
    // MARK: Versions and transactions

    /// The highest version the master has handed out (0 for an empty master). The next change
    /// takes this plus one; nothing else may hand out versions until the transaction ends.
    func latestVersion() throws -> UInt64

    /// Runs `body` in a nested transaction: when it throws, everything it wrote through the port
    /// (buffered or not) is undone and the error rethrown; when it returns, its writes stand as
    /// part of the enclosing transaction.
    func inSavepoint(_ body: () throws -> Void) throws

    /// Writes out every buffered write. The procedure calls it before it returns; the backend
    /// commits after.
    func flush() throws

    // MARK: Rows, read set-based

    /// The state of each of `keys` of `table`, in the order of `keys`: its bookkeeping head, its
    /// current values, its standing records and (when `blocking`) the first record that keeps
    /// its changes waiting. One call reads all of them (a backend splits a long list into a few
    /// statements, not one per key).
    ///
    /// - Parameters:
    ///   - keys: primary keys, in the table's key order, as the master keeps them.
    ///   - blocking: whether to look for blocking records (kind `unique`, `foreign_key` or
    ///     `queued`, status `open` or `held`); when false ``RowState/firstBlocking`` is nil.
    func rows(of table: TableSchema, keys: [[SQLValue]], blocking: Bool) throws -> [RowState]

    /// The primary keys of the rows of `table` whose `columns` equal `values` (SQL `=`, so NULL
    /// matches nothing). For re-pointing the rows that refer to a row merged into another.
    func keys(of table: TableSchema, where columns: [String], equal values: [SQLValue]) throws -> [[SQLValue]]

    // MARK: Rows, written

    /// Writes the whole row: inserts it, or replaces every non-key value of the row with that key.
    ///
    /// - Parameter values: every non-key value, in schema order.
    /// - Returns: ``RowWriteOutcome/written``, or ``RowWriteOutcome/uniqueViolation(with:message:)``
    ///   when the row would break a UNIQUE index (other than the primary key) because another row
    ///   holds the same values; then nothing was written and the transaction goes on. A backend on
    ///   which a failed statement aborts the transaction checks first or writes in a savepoint.
    /// - Throws: ``MergeStoreConstraintViolation`` for any other constraint the row breaks.
    func writeRow(_ table: TableSchema, key: [SQLValue], values: [SQLValue]) throws -> RowWriteOutcome

    /// For each of `rows` (a key and every non-key value, in schema order), the first UNIQUE
    /// index other than the primary key whose values another row already holds, and that row's
    /// key; nil for a row that collides with nothing. One call checks many rows (a backend reads
    /// each index once for all of them): the check a backend whose failed statements abort the
    /// transaction (PostgreSQL) makes before ``writeRow(_:key:values:)``, and the way any backend
    /// names the row a collision is with.
    func uniqueCollisions(of table: TableSchema, rows: [(key: [SQLValue], values: [SQLValue])]) throws
        -> [UniqueCollision?]

    /// Whether the store wants the read-ahead hints ``expectWrites(of:rows:)`` and
    /// ``expectHistoryReads(of:keys:)`` (false: the procedure does not spend the time to make them).
    var readsAhead: Bool { get }

    /// A hint, before a window of changes is merged: the rows of `table` it will probably write
    /// (a key and every non-key value, in schema order), so that a store whose every statement
    /// is a round trip reads ahead, set-based, what those writes need (PostgreSQL: their UNIQUE
    /// collisions, one statement per index). Writes nothing; a row written with other values is
    /// checked as if there had been no hint.
    func expectWrites(of table: TableSchema, rows: [(key: [SQLValue], values: [SQLValue])]) throws

    /// Deletes the row with `key` from `table` (nothing if there is none).
    func deleteRow(_ table: TableSchema, key: [SQLValue]) throws

    // MARK: Bookkeeping of rows

    /// Writes the row's bookkeeping entry (version, clocks, scope, who stopped seeing it),
    /// replacing the one it had. May be buffered. The entry's version must be unique across the
    /// master: pulls page by it.
    func writeHead(_ head: HeadWrite) throws

    /// Moves the row's version to `version` and changes nothing else (a refused change whose
    /// writer sees the row: its next pull restores it). The row has an entry.
    func moveVersion(of table: TableSchema, key: [SQLValue], to version: UInt64) throws

    /// Appends a history entry: the values the change at `entry.version` replaced. May be buffered.
    func appendHistory(_ entry: HistoryEntry) throws

    /// The values the row had when it was last deleted (the replaced values of its latest delete
    /// entry in the history), as (column index, value) pairs; nil if it was never deleted.
    func valuesAtLastDeletion(of table: TableSchema, key: [SQLValue]) throws -> [(Int, SQLValue)]?

    /// The value column `column` (schema index) held just before the first change after
    /// `version` that changed it (that change's history entry keeps it); nil when no change after
    /// `version` changed the column.
    func firstReplaced(of table: TableSchema, key: [SQLValue], column: Int, after version: UInt64) throws
        -> SQLValue?

    /// A hint, before a window of changes is merged: the rows of `table` whose history entries
    /// after a version the window will probably read with ``firstReplaced(of:key:column:after:)``
    /// (a change with an older base than the row's version may record a conflict, whose base value
    /// comes from the history), so that a store whose every statement is a round trip reads
    /// them ahead, set-based. Writes nothing; a read the hint did not foresee is answered as if
    /// there had been no hint.
    func expectHistoryReads(of table: TableSchema, keys: [(key: [SQLValue], after: UInt64)]) throws

    // MARK: Additive columns

    /// What `writer` last wrote to the `additive` column `column`, and the version it was merged
    /// at; nil if it never wrote it.
    func additiveWrite(of table: TableSchema, key: [SQLValue], column: String, writer: Int64) throws -> (
        version: UInt64, value: SQLValue
    )?

    /// Remembers that `writer` wrote `value` to the `additive` column at `version`, replacing
    /// what it remembered before.
    func rememberAdditive(
        of table: TableSchema, key: [SQLValue], column: String, writer: Int64, version: UInt64, value: SQLValue
    ) throws

    // MARK: Conflict records

    /// Whether any record keeps a row's changes waiting (kind `unique`, `foreign_key` or
    /// `queued`, status `open` or `held`) anywhere in the master.
    func anyBlockingRecord() throws -> Bool

    /// Stores a new record and returns its id: ids grow with every record, so a higher id is a
    /// later record. `record.id` is ignored. May be buffered (the id is known at once).
    func insertRecord(_ record: StoredConflict) throws -> Int64

    /// The record with `id`, as stored; nil if there is none.
    func record(_ id: Int64) throws -> StoredConflict?

    /// Marks a standing record `superseded`: the head it kept lost no more.
    func supersedeRecord(_ id: Int64) throws

    /// Points a standing record at a new winner: its kind, the winning head's writer and stamp,
    /// and the winning value (nil: none).
    func repointRecord(_ id: Int64, kind: ConflictReport.Kind, winner: Head, winnerValue: SQLValue?) throws

    /// Marks a record `resolved` with `resolution`.
    func closeRecord(_ id: Int64, resolution: Resolution) throws

    /// Puts a record back in front of a person: status `open`, no resolution, `reason` as its reason.
    func reopenRecord(_ id: Int64, reason: String) throws

    /// The `held` records waiting for `row` (rows that refer to it, changes of it queued behind
    /// another), oldest first.
    func recordsWaiting(for row: RowReference) throws -> [StoredConflict]

    /// The blocking records of the row (kind `unique`, `foreign_key` or `queued`, status `open`
    /// or `held`), oldest first.
    func blockingRecords(of table: TableSchema, key: [SQLValue]) throws -> [StoredConflict]

    /// The records of kind `foreign_key` in `status` (any of) that refer to `row` and belong to
    /// a row of `table`, oldest first.
    func referringRecords(to row: RowReference, in table: String, status: [ConflictReport.Status]) throws
        -> [StoredConflict]

    /// Rewrites a held record: its held change, the row it waits for, and its status.
    func rewriteHeld(_ id: Int64, held: String, related: RowReference, status: ConflictReport.Status) throws

    /// Puts every `held` `foreign_key` record that waits for `row` in front of a person
    /// (status `open`) with `reason`.
    func reopenReferrers(of row: RowReference, reason: String) throws

    // MARK: Writers

    /// The OPD the replica numbered `writer` was registered with ("master" for 0, "?" if unknown).
    func opd(ofWriter writer: Int64) -> String
}

extension MergeStore {
    /// No read-ahead: a store whose statements are cheap (SQLite) checks each write as it comes.
    var readsAhead: Bool { false }

    func expectWrites(of table: TableSchema, rows: [(key: [SQLValue], values: [SQLValue])]) throws {}

    func expectHistoryReads(of table: TableSchema, keys: [(key: [SQLValue], after: UInt64)]) throws {}
}

/// A write the master refused by one of its own constraints (NOT NULL, CHECK, a UNIQUE index
/// that names no other row), as a backend-neutral value.
struct MergeStoreConstraintViolation: Error, Sendable {
    /// The database's words for it (the constraint, never a value).
    var message: String
}

/// What writing a row did.
enum RowWriteOutcome: Equatable {
    case written
    /// Nothing was written: another row (`key`) holds the values of a UNIQUE index; `column` is
    /// the first non-key column of that index, if it has one.
    case uniqueViolation(with: [SQLValue], column: String?, message: String)
}

/// A row that holds the values of a UNIQUE index another row would write.
struct UniqueCollision: Equatable {
    /// The holder's primary key.
    var key: [SQLValue]
    /// The index's columns.
    var index: [String]
    /// The first non-key column of the index, if it has one.
    var column: String?
}

/// A row's bookkeeping entry, as the merge reads it.
struct StoredHead: Equatable {
    var version: UInt64
    var deleted: Bool
    var openConflicts: Int64
    /// `RowClocksCoding` bytes.
    var clocks: [UInt8]
    /// The row's scope value (`.null` when it has none).
    var scope: SQLValue
    /// The OPDs that no longer see the row (`,a,b,`).
    var goneFor: String?
}

/// Everything the merge reads of one key at once (``MergeStore/rows(of:keys:blocking:)``).
struct RowState {
    /// The bookkeeping entry; nil when the master never had the row.
    var head: StoredHead?
    /// The row's non-key values in the table, in schema order; nil when the table has no such row.
    var values: [SQLValue]?
    /// Its standing records (status `open` or `auto`, kind `update_update`, `insert_insert` or
    /// `delete_update`, policy not `additive`); empty when the head counts none open.
    var standing: [StoredConflict]
    /// The oldest blocking record of the key, when asked for.
    var firstBlocking: StoredConflict?
}

/// A bookkeeping entry to write (``MergeStore/writeHead(_:)``).
struct HeadWrite {
    var table: String
    var key: [SQLValue]
    var version: UInt64
    var deleted: Bool
    var openConflicts: Int
    /// `RowClocksCoding` bytes.
    var clocks: [UInt8]
    var scope: SQLValue
    var goneFor: String?
}

/// A history entry: what the change at `version` replaced.
struct HistoryEntry {
    var table: String
    var key: [SQLValue]
    var version: UInt64
    var writer: Int64
    var stamp: HLC
    var operation: Changeset.Operation
    /// The replaced values, as (column index, value).
    var old: [(Int, SQLValue)]
    var clamped: Bool
}

/// A conflict record as stored, every field of it.
struct StoredConflict: Equatable {
    var id: Int64 = 0
    var table: String
    var key: [SQLValue]
    var column: String?
    var kind: ConflictReport.Kind
    var policy: String
    var status: ConflictReport.Status
    var baseVersion: UInt64
    var base: SQLValue?
    var winnerWriter: Int64
    var winnerStamp: HLC
    var winnerValue: SQLValue?
    var loserWriter: Int64
    var loserStamp: HLC
    var loserVersion: UInt64
    var loserInsert: Bool
    var loserDelete: Bool
    var loserValue: SQLValue?
    var changeset: UUID
    var decidedAt: String
    var reason: String?
    /// `HeldChange` JSON.
    var held: String?
    var related: RowReference?
    /// `Resolution` JSON.
    var resolution: String?
}

extension ConflictReport {
    /// A stored record as the protocol reports it; `writer` and `opd` name the writers.
    init(stored r: StoredConflict, writer: (Int64) -> Writer, opd: (Int64) -> String) {
        func side(_ number: Int64, _ stamp: HLC, _ value: SQLValue?) -> ConflictReport.Side {
            ConflictReport.Side(replicaId: writer(number).id, opd: opd(number), stamp: stamp, value: value)
        }
        self.init(
            id: r.id, table: r.table, primaryKey: r.key, column: r.column, kind: r.kind, policy: r.policy,
            base: r.base, winner: side(r.winnerWriter, r.winnerStamp, r.winnerValue),
            loser: side(r.loserWriter, r.loserStamp, r.loserValue), status: r.status.rawValue,
            decidedAt: r.decidedAt)
        reason = r.reason
        held = r.held.flatMap { try? HeldChange(stored: $0).row }
        related = r.related
        resolution = r.resolution.flatMap {
            try? ProtocolJSON.decoder().decode(Resolution.self, from: Data($0.utf8))
        }
    }
}
