import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite

extension SQLiteMasterStore {
    public func pull(after cursor: UInt64, limit: Int) async throws -> PullPage {
        let limit = max(1, min(limit, config.limits.maxPullPage))
        return try await read { db in try self.readPage(db, after: cursor, limit: limit) }
    }

    /// One page from a consistent snapshot: the current state of each row changed after `cursor`,
    /// in version order. Each row appears once, however often it changed.
    private func readPage(_ db: Database, after cursor: UInt64, limit: Int) throws -> PullPage {
        let metas = try Row.fetchAll(
            db, sql: "SELECT tbl, pk, version, clocks FROM _ks_rows WHERE version > ? ORDER BY version LIMIT ?",
            arguments: [Int64(cursor), limit + 1])
        let hasMore = metas.count > limit
        var rows: [Changeset.Row] = []
        rows.reserveCapacity(min(metas.count, limit))
        var next = cursor
        for meta in metas.prefix(limit) {
            let name: String = meta["tbl"]
            let version = UInt64(meta["version"] as Int64)
            next = version
            // Rows of a table no longer replicated are passed over, cursor and all.
            guard let t = tableIndex[name] else { continue }
            let table = config.tables[t]
            let clocks = try RowClocksCoding.decode(
                [UInt8](meta["clocks"] as Data), version: version, columnCount: table.columns.count,
                resolve: { Writer(number: $0, id: .zero) })
            let stamp = clocks.stamp
            let key = try PrimaryKeyCoding.decode([UInt8](meta["pk"] as Data))
            let values = clocks.isDeleted ? nil : try statements[table.name]!.values(db, key: key)
            if let values {
                rows.append(
                    Changeset.Row(
                        table: t, operation: .upsert, version: version, stamp: stamp, primaryKey: key,
                        columns: values.enumerated().map { Changeset.ColumnValue(column: $0, value: $1) }))
            } else {
                rows.append(
                    Changeset.Row(
                        table: t, operation: .delete, version: version, stamp: stamp, primaryKey: key, columns: []))
            }
        }
        let page = Changeset(
            kind: .pull, id: UUID(), replicaID: .zero, firstSequence: cursor, lastSequence: next,
            tables: config.tables.map(\.changesetTable), rows: rows)
        return PullPage(body: ChangesetCodec.encode(page), rows: rows.count, nextCursor: next, hasMore: hasMore)
    }

    public func conflicts(involving replica: UUID, of device: Device, after: Int64, limit: Int) async throws
        -> ConflictList
    {
        let limit = max(1, min(limit, 1000))
        return try await read { db in
            guard
                let owner = try Row.fetchOne(
                    db, sql: "SELECT number, opd FROM _ks_replicas WHERE uuid = ?", arguments: [Data(replica.bytes)])
            else { return ConflictList(conflicts: [], next: nil) }
            guard owner["opd"] as String == device.opd else {
                throw SyncError(.forbidden, "Replica \(replica) belongs to another OPD.")
            }
            let number: Int64 = owner["number"]
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM _ks_conflicts WHERE id > ? AND (loser_writer = ? OR winner_writer = ?)
                    ORDER BY id LIMIT ?
                    """,
                arguments: [after, number, number, limit + 1])
            let reports = try rows.prefix(limit).map { try self.report(from: $0, db: db) }
            return ConflictList(conflicts: reports, next: rows.count > limit ? reports.last?.id : nil)
        }
    }

}
