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
            var arguments: [any DatabaseValueConvertible] = [filter.after]
            if let status = filter.status {
                clauses.append("c.status = ?")
                arguments.append(status)
            }
            if let table = filter.table {
                clauses.append("c.tbl = ?")
                arguments.append(table)
            }
            if let opd = filter.opd {
                // The master itself is OPD "master"; replicas are theirs.
                clauses.append(
                    """
                    (c.winner_writer IN (SELECT number FROM _ks_replicas WHERE opd = ?)
                     OR c.loser_writer IN (SELECT number FROM _ks_replicas WHERE opd = ?)
                     OR (? = 'master' AND (c.winner_writer = 0 OR c.loser_writer = 0)))
                    """)
                arguments.append(contentsOf: [opd, opd, opd])
            }
            arguments.append(limit + 1)
            let rows = try Row.fetchAll(
                db,
                sql:
                    "SELECT c.* FROM _ks_conflicts c WHERE \(clauses.joined(separator: " AND ")) ORDER BY c.id LIMIT ?",
                arguments: StatementArguments(arguments))
            let reports = try rows.prefix(limit).map { try self.report(from: $0, db: db) }
            return ConflictList(conflicts: reports, next: rows.count > limit ? reports.last?.id : nil)
        }
    }

    public func resolveConflict(id: Int64, _ request: ResolveRequest, by reviewer: String) async throws
        -> ConflictReport
    {
        let now = Date()
        return try await pool.write { db in
            var merger = try self.rowMerger(db: db, now: now, resolve: self.writer(number:))
            try ReviewDecision(id: id, request: request, reviewer: reviewer, db: db, config: self.config)
                .carryOut(with: &merger)
            return try self.report(id: id, db: db)
        }
    }

    public func reviewConflict(id: Int64) async throws -> ConflictReport {
        try await read { db in try self.report(id: id, db: db) }
    }

    func report(id: Int64, db: Database) throws -> ConflictReport {
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM _ks_conflicts WHERE id = ?", arguments: [id]) else {
            throw SyncError(.notFound, "There is no conflict record \(id).")
        }
        return try report(from: row, db: db)
    }

    /// A conflict row as the protocol reports it.
    func report(from row: Row, db: Database) throws -> ConflictReport {
        try ConflictReport(row: row, writer: writer(number:), opd: { self.opd(ofWriter: $0, db: db) })
    }
}

extension ConflictReport {
    /// A row of `_ks_conflicts` as the protocol reports it; `writer` and `opd` name the writers.
    init(row: Row, writer: (Int64) -> Writer, opd: (Int64) -> String) throws {
        func side(_ prefix: String) -> ConflictReport.Side {
            let number: Int64 = row[prefix + "_writer"]
            let hasValue: Int = row[prefix + "_has_value"]
            return ConflictReport.Side(
                replicaId: writer(number).id, opd: opd(number),
                stamp: HLC(rawValue: UInt64(bitPattern: row[prefix + "_stamp"])),
                value: hasValue == 1 ? SQLValue(row[prefix + "_value"] as DatabaseValue) : nil)
        }
        let hasBase: Int = row["has_base"]
        self.init(
            id: row["id"], table: row["tbl"], primaryKey: try PrimaryKeyCoding.decode([UInt8](row["pk"] as Data)),
            column: row["col"], kind: ConflictReport.Kind(rawValue: row["kind"]) ?? .updateUpdate,
            policy: row["policy"],
            base: hasBase == 1 ? SQLValue(row["base_value"] as DatabaseValue) : nil, winner: side("winner"),
            loser: side("loser"), status: row["status"], decidedAt: row["decided_at"])
        reason = row["reason"]
        if let text: String = row["held"] {
            held = try? HeldChange(stored: text).row
        }
        if let table: String = row["related_tbl"], let pk: Data = row["related_pk"] {
            related = RowReference(table: table, primaryKey: try PrimaryKeyCoding.decode([UInt8](pk)))
        }
        if let text: String = row["resolution"] {
            resolution = try? ProtocolJSON.decoder().decode(Resolution.self, from: Data(text.utf8))
        }
    }
}

/// A change that was not merged (a quarantined or held row), with everything needed to merge it
/// later exactly as it arrived: stored as JSON in `_ks_conflicts.held`.
struct HeldChange: Codable, Sendable, Equatable {
    /// The writer's number in `_ks_replicas` (0: the master).
    var writer: Int64
    var stamp: UInt64
    /// The device's stamp was too far ahead and was clamped.
    var clamped: Bool
    /// The row's base version.
    var version: UInt64
    /// Per-column bases, by column name.
    var columnBases: [String: UInt64]
    var changeset: UUID
    var row: HeldRow
}

extension HeldChange {
    /// Reads the stored form (`_ks_conflicts.held`).
    init(stored text: String) throws {
        self = try ProtocolJSON.decoder().decode(HeldChange.self, from: Data(text.utf8))
    }

    /// The stored form.
    func stored() throws -> String {
        String(decoding: try ProtocolJSON.encoder().encode(self), as: UTF8.self)
    }
}
