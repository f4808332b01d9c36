import Foundation
import GRDB
import KotaSyncCore

/// What `kotasync status` reports.
public struct ReplicaStatus: Codable, Sendable, Equatable {
    /// A changeset sent but not yet acknowledged.
    public struct InFlight: Codable, Sendable, Equatable {
        public var changesetId: UUID
        public var rows: Int
        public var createdAt: String
    }

    public var replicaId: UUID
    public var server: String
    public var opd: String
    public var database: String
    /// Rows with local changes the server has not acknowledged.
    public var pendingChanges: Int
    /// Entries in the change log (one per captured write).
    public var logEntries: Int
    public var inFlight: InFlight?
    /// The master version this replica has pulled up to.
    public var cursor: UInt64
    public var lastPushAt: String?
    public var lastPullAt: String?
    public var lastSyncAt: String?
    public var lastError: ErrorRecord?
    /// Conflicts the server reported for this replica's changes.
    public var conflicts: [ConflictReport]
}

extension Replica {
    public func status() throws -> ReplicaStatus {
        try dbQueue.read { db in
            let entries = try self.readLog(db)
            let pending = ChangeLog.coalesce(entries).count
            let inFlight = try Row.fetchOne(db, sql: "SELECT id, rows, created_at FROM _ks_outbox LIMIT 1").map {
                ReplicaStatus.InFlight(
                    changesetId: UUID(uuidString: $0["id"])!, rows: $0["rows"], createdAt: $0["created_at"])
            }
            let decoder = ProtocolJSON.decoder()
            let conflicts = try String.fetchAll(db, sql: "SELECT report FROM _ks_conflicts ORDER BY id").compactMap {
                try? decoder.decode(ConflictReport.self, from: Data($0.utf8))
            }
            let lastError = try (Self.state(db, StateKey.lastError) as String?).flatMap {
                try? JSONDecoder().decode(ErrorRecord.self, from: Data($0.utf8))
            }
            return ReplicaStatus(
                replicaId: self.id, server: self.serverURL.absoluteString, opd: try Self.state(db, StateKey.opd) ?? "",
                database: self.path, pendingChanges: pending, logEntries: entries.count, inFlight: inFlight,
                cursor: UInt64(bitPattern: try Self.state(db, StateKey.cursor) ?? 0),
                lastPushAt: try Self.state(db, StateKey.lastPushAt),
                lastPullAt: try Self.state(db, StateKey.lastPullAt),
                lastSyncAt: try Self.state(db, StateKey.lastSyncAt), lastError: lastError, conflicts: conflicts)
        }
    }

    /// The id after which to ask the server for more conflicts.
    func conflictsAfter() throws -> Int64 {
        try dbQueue.read { db in try Self.state(db, StateKey.conflictsAfter) ?? 0 }
    }

    /// Keeps conflicts fetched from the server.
    func record(conflicts: [ConflictReport]) throws {
        guard let last = conflicts.map(\.id).max() else { return }
        try dbQueue.write { db in
            try self.store(conflicts, db)
            try Self.setState(db, StateKey.conflictsAfter, max(last, try Self.state(db, StateKey.conflictsAfter) ?? 0))
        }
    }
}
