import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite

extension SQLiteMasterStore {
    public func reviewConflicts(_ filter: ReviewFilter) async throws -> ConflictList {
        let limit = max(1, min(filter.limit, 1000))
        if let status = filter.status, ConflictReport.Status(rawValue: status) == nil {
            throw SyncError(
                .badRequest,
                "Unknown status \(status); use one of \(ConflictReport.Status.allCases.map(\.rawValue).joined(separator: ", "))."
            )
        }
        return try await read { db in
            var clauses = ["c.id > ?"]
            var arguments: [SQLValue] = [.integer(filter.after)]
            if let status = filter.status {
                clauses.append("c.status = ?")
                arguments.append(.text(status))
            }
            if let table = filter.table {
                clauses.append("c.tbl = ?")
                arguments.append(.text(table))
            }
            if let opd = filter.opd {
                // The master itself is OPD "master"; replicas are theirs.
                clauses.append(
                    """
                    (c.winner_writer IN (SELECT number FROM _ks_replicas WHERE opd = ?)
                     OR c.loser_writer IN (SELECT number FROM _ks_replicas WHERE opd = ?)
                     OR (? = 'master' AND (c.winner_writer = 0 OR c.loser_writer = 0)))
                    """)
                arguments.append(contentsOf: [.text(opd), .text(opd), .text(opd)])
            }
            arguments.append(.integer(Int64(limit + 1)))
            return try self.conflictList(
                db.makeStatement(
                    sql: """
                        SELECT \(ConflictReport.columns) FROM _ks_conflicts c WHERE \(clauses.joined(separator: " AND "))
                        ORDER BY c.id LIMIT ?
                        """), arguments, limit: limit, db: db)
        }
    }

    public func resolveConflict(id: Int64, _ request: ResolveRequest, by reviewer: String) async throws
        -> ConflictReport
    {
        let now = Date()
        return try await pool.write { db in
            var merger = try self.mergeWriter(db: db, now: now, resolve: self.writer(number:))
            try ReviewDecision(id: id, request: request, reviewer: reviewer, config: self.config)
                .carryOut(with: &merger)
            try merger.finish()
            return try self.report(id: id, db: db)
        }
    }

    public func reviewConflict(id: Int64) async throws -> ConflictReport {
        try await read { db in try self.report(id: id, db: db) }
    }

    func report(id: Int64, db: Database) throws -> ConflictReport {
        guard
            let report = try reports(
                db.cachedStatement(sql: "SELECT \(ConflictReport.columns) FROM _ks_conflicts WHERE id = ?"),
                [.integer(id)],
                db: db
            ).first
        else {
            throw SyncError(.notFound, "There is no conflict record \(id).")
        }
        return report
    }

    /// The records a query selecting ``ConflictReport/columns`` finds, as the protocol reports them.
    func reports(_ query: Statement, _ values: [SQLValue], db: Database) throws -> [ConflictReport] {
        var reports: [ConflictReport] = []
        try query.forEachRow(values) { r in
            reports.append(
                try ConflictReport(reading: r, writer: writer(number:), opd: { self.opd(ofWriter: $0, db: db) }))
            return true
        }
        return reports
    }

    /// A page of records: `query` selects ``ConflictReport/columns`` in id order, with `limit` + 1
    /// as its last parameter (in `values`), so that one more record than the page tells whether
    /// another page follows.
    func conflictList(_ query: Statement, _ values: [SQLValue], limit: Int, db: Database) throws -> ConflictList {
        let found = try reports(query, values, db: db)
        let page = Array(found.prefix(limit))
        return ConflictList(conflicts: page, next: found.count > limit ? page.last?.id : nil)
    }
}

extension ConflictReport {
    /// The columns of `_ks_conflicts` a report is read from, in the order
    /// ``init(reading:writer:opd:)`` reads them.
    static let columns = """
        id, tbl, pk, col, kind, policy, has_base, base_value, winner_writer, winner_stamp, winner_has_value,
        winner_value, loser_writer, loser_stamp, loser_has_value, loser_value, status, decided_at, reason, held,
        related_tbl, related_pk, resolution
        """

    /// A row of `_ks_conflicts`, selected as ``columns``, as the protocol reports it; `writer` and
    /// `opd` name the writers. Read by position through the C API: the merge reports every record
    /// it makes or re-points, and a GRDB `Row` looked each of these columns up by name.
    init(reading r: ColumnReader, writer: (Int64) -> Writer, opd: (Int64) -> String) throws {
        func text(_ i: Int32) -> String? { r.isNull(i) ? nil : r.text(i) }
        /// A side from its writer, stamp, has-value flag and value, at `i` onward.
        func side(_ i: Int32) -> ConflictReport.Side {
            ConflictReport.Side(
                replicaId: writer(r.int64(i)).id, opd: opd(r.int64(i)),
                stamp: HLC(rawValue: UInt64(bitPattern: r.int64(i + 1))),
                value: r.int64(i + 2) == 1 ? r.value(i + 3) : nil)
        }
        self.init(
            id: r.int64(0), table: r.text(1), primaryKey: try PrimaryKeyCoding.decode(r.bytes(2)), column: text(3),
            kind: ConflictReport.Kind(rawValue: r.text(4)) ?? .updateUpdate, policy: r.text(5),
            base: r.int64(6) == 1 ? r.value(7) : nil, winner: side(8), loser: side(12), status: r.text(16),
            decidedAt: r.text(17))
        reason = text(18)
        if let stored = text(19) {
            held = try? HeldChange(stored: stored).row
        }
        if let table = text(20), !r.isNull(21) {
            related = RowReference(table: table, primaryKey: try PrimaryKeyCoding.decode(r.bytes(21)))
        }
        if let decision = text(22) {
            resolution = try? ProtocolJSON.decoder().decode(Resolution.self, from: Data(decision.utf8))
        }
    }
}
