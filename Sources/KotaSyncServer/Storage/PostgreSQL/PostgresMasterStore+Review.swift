import Foundation
import KotaSyncCore
import PostgresNIO

/// The review role on PostgreSQL: the queue read from `kotasync.conflicts`, and a reviewer's
/// decision carried out by the same procedure as on SQLite (``ReviewDecision`` over
/// ``PostgresMergeStore``), in one transaction under the merge lock: a decision is a new change
/// of the master and takes the next version.
extension PostgresMasterStore {
    public func reviewConflicts(_ filter: ReviewFilter) async throws -> ConflictList {
        let limit = max(1, min(filter.limit, 1000))
        if let status = filter.status, ConflictReport.Status(rawValue: status) == nil {
            throw SyncError(
                .badRequest,
                "Unknown status \(status); use one of \(ConflictReport.Status.allCases.map(\.rawValue).joined(separator: ", "))."
            )
        }
        return try await master.blockingTransaction(lock: nil) { connection in
            var statement = PostgresStatement()
            var clauses = ["c.id > \(statement.bind(filter.after))"]
            if let status = filter.status { clauses.append("c.status = \(statement.bind(status))") }
            if let table = filter.table { clauses.append("c.tbl = \(statement.bind(table))") }
            if let opd = filter.opd {
                // The master itself is OPD "master"; replicas are theirs.
                let name = statement.bind(opd)
                clauses.append(
                    """
                    (c.winner_writer IN (SELECT number FROM kotasync.replicas WHERE opd = \(name))
                     OR c.loser_writer IN (SELECT number FROM kotasync.replicas WHERE opd = \(name))
                     OR (\(name) = 'master' AND (c.winner_writer = 0 OR c.loser_writer = 0)))
                    """)
            }
            return try Self.conflictList(
                connection, statement, where: clauses.joined(separator: " AND "), limit: limit)
        }
    }

    public func reviewConflict(id: Int64) async throws -> ConflictReport {
        try await master.blockingTransaction(lock: nil) { connection in try Self.report(id: id, connection) }
    }

    public func resolveConflict(id: Int64, _ request: ResolveRequest, by reviewer: String) async throws
        -> ConflictReport
    {
        let config = self.config
        return try await inMergeTurn {
            let now = Date()
            return try await master.blockingTransaction(lock: .merge) { connection in
                var merger = try self.mergeWriter(connection, now: now)
                try ReviewDecision(id: id, request: request, reviewer: reviewer, config: config).carryOut(with: &merger)
                try merger.finish()
                return try Self.report(id: id, connection)
            }
        }
    }

    /// Record `id` as the protocol reports it; `not_found` if there is none.
    static func report(id: Int64, _ connection: PostgresBlockingConnection) throws -> ConflictReport {
        var statement = PostgresStatement()
        let clause = "c.id = \(statement.bind(id))"
        guard let report = try reports(connection, &statement, where: clause).first else {
            throw SyncError(.notFound, "There is no conflict record \(id).")
        }
        return report
    }
}
