import Foundation
import KotaSyncCore
import NIOCore
import PostgresNIO
import Synchronization

/// The push side of the sync role on PostgreSQL: the envelope (``PushEnvelope``) and the merge
/// procedure (``MergeWriter``) written once, over ``PostgresPushLedger`` and ``PostgresMergeStore``.
///
/// One transaction per push, under the merge lock (``PostgresMaster/LockKey/merge``) from the
/// version read to COMMIT, on a blocking thread (``PostgresMaster/blockingTransaction(lock:_:)``),
/// and the push is answered only after COMMIT. No group commit as on SQLite: the lock serialises
/// merges of every server of the master, and a group would have to be one server's pushes while
/// the others wait; PostgreSQL's own WAL flush is what a commit waits for, and a push's merge is
/// a few round trips per window and table, not per row.
extension PostgresMasterStore {
    public func push(_ changeset: Changeset, from device: Device) async throws -> PushOutcome {
        // A changeset seen before gets its stored reply, whatever the schema says now.
        if let stored = try await storedReply(changeset.id, device: device) { return stored }
        let validated = try ChangesetValidator.validate(changeset, against: config.tables)
        return try await merge(validated, rows: .decoded(changeset.rows), from: device)
    }

    public func push(_ checked: CheckedPush, from device: Device) async throws -> PushOutcome {
        if let stored = try await storedReply(checked.changeset.id, device: device) { return stored }
        let validated = try checked.validation.get()
        return try await merge(validated, rows: .streamed(checked), from: device)
    }

    /// The records `replica` took part in, as its device may see them (``ConflictDeviceView``).
    /// A replica of another OPD, or one the master does not know, has none: the reply does not
    /// tell which.
    public func conflicts(involving replica: UUID, of device: Device, after: Int64, limit: Int) async throws
        -> ConflictList
    {
        let limit = max(1, min(limit, 1000))
        let config = self.config
        return try await master.blockingTransaction(lock: nil) { connection in
            let ledger = PostgresPushLedger(connection: connection)
            guard let owner = try ledger.replica(replica), owner.opd == device.opd else {
                return ConflictList(conflicts: [], next: nil)
            }
            var statement = PostgresStatement()
            let number = statement.bind(owner.number)
            let clause =
                "c.id > \(statement.bind(after)) AND (c.loser_writer = \(number) OR c.winner_writer = \(number))"
            let list = try Self.conflictList(connection, statement, where: clause, limit: limit)
            // The page's end is where the query stopped, whether or not its last record is shown.
            return ConflictList(
                conflicts: try ConflictDeviceView(config: config, reader: ledger)(list.conflicts, for: device.opd),
                next: list.next)
        }
    }

    /// The stored reply of changeset `id`, read without the merge lock (a replay needs no merge).
    private func storedReply(_ id: UUID, device: Device) async throws -> PushOutcome? {
        try await master.blockingTransaction(lock: nil) { connection in
            try PushEnvelope.storedReply(id, device: device, ledger: PostgresPushLedger(connection: connection))
        }
    }

    private func merge(_ validated: ValidatedChangeset, rows: PushRows, from device: Device) async throws
        -> PushOutcome
    {
        let outcome = try await inMergeTurn {
            let now = Date()
            return try await master.blockingTransaction(lock: .merge) { connection in
                var registered: [Int64: Writer] = [:]
                return try PushEnvelope.merge(
                    validated, rows: rows, device: device, now: now, ledger: PostgresPushLedger(connection: connection),
                    window: PostgresMergeStore.chunk, registered: &registered
                ) { registered in
                    try self.mergeWriter(connection, now: now, registered: registered)
                }.0
            }
        }
        logger.info(
            "push merged",
            metadata: [
                "opd": "\(device.opd)", "changeset_id": "\(validated.changeset.id)", "rows": "\(rows.count)",
                "replayed": "\(outcome.replayed)",
            ])
        return outcome
    }

    /// Runs `body` (a merge) when no other merge of this store runs, in arrival order.
    ///
    /// Merges of every server wait for the merge lock on PostgreSQL anyway; waiting here first
    /// means a waiting merge holds neither a connection of the pool nor a thread of
    /// `NIOThreadPool.singleton` (which NIO's blocking file I/O shares), so at most one thread of
    /// this process blocks on the lock at a time.
    func inMergeTurn<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        await withCheckedContinuation { (turn: CheckedContinuation<Void, Never>) in
            let now = mergeCache.withLock { cache in
                guard cache.merging else {
                    cache.merging = true
                    return true
                }
                cache.waiting.append(turn)
                return false
            }
            if now { turn.resume() }
        }
        defer {
            let next = mergeCache.withLock { cache in
                guard !cache.waiting.isEmpty else {
                    cache.merging = false
                    return nil as CheckedContinuation<Void, Never>?
                }
                return cache.waiting.removeFirst()
            }
            next?.resume()
        }
        return try await body()
    }

    /// The merge procedure for one transaction at `now`, over this master's port on `connection`.
    /// Writers registered in the same transaction are resolved from `registered` first.
    func mergeWriter(_ connection: PostgresBlockingConnection, now: Date, registered: [Int64: Writer] = [:]) throws
        -> MergeWriter
    {
        let writers = PostgresWriterLookup(store: self, connection: connection)
        let describe: (Int64) -> String = { writers.replica($0).opd }
        let additive = Set(config.tables.filter { config.policy(for: $0).columns.contains(.additive) }.map(\.name))
        let store = PostgresMergeStore(
            connection: connection, definitions: try tableDefinitions(), checks: try rowChecks(),
            additiveTables: additive, describe: describe)
        return try MergeWriter(
            store: store, config: config, decidedAt: Timestamp.string(now),
            serverMilliseconds: Timestamp.milliseconds(now),
            resolve: { registered[$0] ?? writers.replica($0).writer }, describe: describe)
    }

    /// The DDL's CHECK constraints, judged by SQLite (``SQLiteRowChecks``), made once per store.
    func rowChecks() throws -> SQLiteRowChecks {
        if let known = mergeCache.withLock({ $0.rowChecks }) { return known }
        let made = try SQLiteRowChecks(tables: config.tables)
        mergeCache.withLock { $0.rowChecks = made }
        return made
    }

    /// The replicated tables as PostgreSQL holds them, made once per store.
    func tableDefinitions() throws -> [String: PostgresTableDefinition] {
        if let known = mergeCache.withLock({ $0.definitions }) { return known }
        let made = Dictionary(
            uniqueKeysWithValues: try config.tables.map { ($0.name, try PostgresTableDefinition($0)) })
        mergeCache.withLock { $0.definitions = made }
        return made
    }

    /// A page of records in id order: `clause` filters `kotasync.conflicts c` with `statement`'s
    /// bindings; one more record than `limit` is read to tell whether another page follows.
    /// Each record's writers are named by the replicas they were registered as.
    static func conflictList(
        _ connection: PostgresBlockingConnection, _ statement: PostgresStatement, where clause: String, limit: Int
    ) throws -> ConflictList {
        var statement = statement
        let found = try reports(
            connection, &statement, where: "\(clause) ORDER BY c.id LIMIT \(statement.bind(Int64(limit + 1)))")
        let page = Array(found.prefix(limit))
        return ConflictList(conflicts: page, next: found.count > limit ? page.last?.id : nil)
    }

    /// The records `clause` (with its order and limit) selects, as the protocol reports them.
    static func reports(
        _ connection: PostgresBlockingConnection, _ statement: inout PostgresStatement, where clause: String
    )
        throws -> [ConflictReport]
    {
        let rows = try connection.rows(
            statement.query(
                """
                SELECT \(PostgresConflictRow.columns()), w.uuid, w.opd, l.uuid, l.opd
                FROM kotasync.conflicts c
                LEFT JOIN kotasync.replicas w ON w.number = c.winner_writer
                LEFT JOIN kotasync.replicas l ON l.number = c.loser_writer
                WHERE \(clause)
                """))
        return try rows.map { row in
            let cells = row.makeRandomAccess()
            let stored = try PostgresConflictRow.decode(cells)
            let n = PostgresConflictRow.columnCount
            var named: [Int64: PostgresReplicaName] = [:]
            for (number, at) in [(stored.winnerWriter, n), (stored.loserWriter, n + 2)] {
                guard let uuid = try cells[at].decode(ByteBuffer?.self) else { continue }
                named[number] = PostgresReplicaName(
                    writer: Writer(number: number, id: UUID(bytes: Array(buffer: uuid))),
                    opd: try cells[at + 1].decode(String.self))
            }
            func name(_ number: Int64) -> PostgresReplicaName {
                named[number] ?? PostgresReplicaName.unknown(number)
            }
            return ConflictReport(stored: stored, writer: { name($0).writer }, opd: { name($0).opd })
        }
    }
}

/// What every merge of one store looks up once — the tables' definitions, and the replicas'
/// ids and OPDs by number (numbers are never reused, so an entry never goes stale) — and whose
/// turn it is to merge (``PostgresMasterStore/inMergeTurn(_:)``).
struct PostgresMergeCache: Sendable {
    var definitions: [String: PostgresTableDefinition]?
    var rowChecks: SQLiteRowChecks?
    var replicas: [Int64: PostgresReplicaName] = [0: PostgresReplicaName(writer: .master, opd: "master")]
    /// Whether a merge of this store runs; the merges waiting for their turn, first first.
    var merging = false
    var waiting: [CheckedContinuation<Void, Never>] = []
}

/// A replica's id and OPD, as records name their writers.
struct PostgresReplicaName: Sendable {
    var writer: Writer
    var opd: String

    /// A writer the master does not know.
    static func unknown(_ number: Int64) -> PostgresReplicaName {
        number == 0
            ? PostgresReplicaName(writer: .master, opd: "master")
            : PostgresReplicaName(writer: Writer(number: number, id: .zero), opd: "?")
    }
}

/// Looks writers up by number for one merge: from the store's cache, else on the merge's own
/// connection (which sees a replica registered earlier in the same transaction).
final class PostgresWriterLookup {
    let store: PostgresMasterStore
    let connection: PostgresBlockingConnection

    init(store: PostgresMasterStore, connection: PostgresBlockingConnection) {
        self.store = store
        self.connection = connection
    }

    func replica(_ number: Int64) -> PostgresReplicaName {
        if let known = store.mergeCache.withLock({ $0.replicas[number] }) { return known }
        guard
            let row = try? connection.rows("SELECT uuid, opd FROM kotasync.replicas WHERE number = \(number)").first,
            let (uuid, opd) = try? row.decode((ByteBuffer, String).self)
        else { return .unknown(number) }
        let name = PostgresReplicaName(writer: Writer(number: number, id: UUID(bytes: Array(buffer: uuid))), opd: opd)
        store.mergeCache.withLock { $0.replicas[number] = name }
        return name
    }
}
