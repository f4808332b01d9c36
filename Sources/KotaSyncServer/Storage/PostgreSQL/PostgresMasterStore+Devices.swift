import Foundation
import KotaSyncCore
import PostgresNIO

/// The devices' reports on PostgreSQL (`kotasync.devices`), kept as the SQLite master keeps them:
/// folded in memory per replica and written with the next audit batch (within a second, and
/// before the overview is read: ``overview(days:timeZone:now:)`` flushes first), not in a
/// transaction of their own per request.
///
/// With several servers, each writes the reports it received. A write never takes a report back
/// in time: `last_seen_at` and `last_pull_at` only move forward, and what a report says (client,
/// pending count, last error, cursor) replaces what is stored only when it is the newer report
/// (one another server wrote later is kept; what it left unsaid is filled in from ours).
extension PostgresMasterStore {
    public func record(_ report: DeviceReport, pulled: Bool) async throws {
        noteDeviceReport(report, pulled: pulled, at: Date())
    }

    /// Remembers what a device said about itself on a request; written with the next audit
    /// batch, folded with the replica's other reports since the last one.
    func noteDeviceReport(_ report: DeviceReport, pulled: Bool, at date: Date) {
        auditBuffer.withLock { buffer in
            buffer.deviceReports[
                DeviceReportKey(replica: report.replicaId, opd: report.opd), default: PendingDeviceReport()
            ].fold(report, pulled: pulled, at: date)
        }
        scheduleAuditFlush(now: false)
    }

    /// Writes folded device reports inside the caller's transaction, in one statement per
    /// thousand replicas; reports of replicas the master does not know (yet), and reports about
    /// a replica of another OPD than the sender's, are dropped (the access service decides).
    func writeDeviceReports(_ reports: [DeviceReportKey: PendingDeviceReport], _ connection: PostgresConnection)
        async throws
    {
        guard !reports.isEmpty else { return }
        let uuids = Set(reports.keys.map(\.replica)).map { ByteBuffer(bytes: $0.bytes) }
        var owners: [UUID: (number: Int64, opd: String)] = [:]
        let rows = try await connection.query(
            "SELECT uuid, number, opd FROM kotasync.replicas WHERE uuid = ANY(\(uuids)::bytea[])", logger: logger)
        for try await (uuid, number, opd) in rows.decode((ByteBuffer, Int64, String).self) {
            owners[UUID(bytes: Array(buffer: uuid))] = (number, opd)
        }
        // In replica order: two servers writing the same replicas lock their rows in one order.
        let accepted = reports.compactMap { key, pending -> (Int64, PendingDeviceReport)? in
            guard let owner = owners[key.replica], config.access.acceptsReport(from: key.opd, aboutReplicaOf: owner.opd)
            else { return nil }
            return (owner.number, pending)
        }.sorted { $0.0 < $1.0 }
        // Reports about one replica from two OPDs: only its own OPD's is accepted, so a number
        // appears once (an upsert may not touch a row twice).
        for batch in stride(from: 0, to: accepted.count, by: 1000) {
            var bindings = PostgresBindings(capacity: 7 * min(1000, accepted.count - batch))
            var tuples: [String] = []
            for (number, pending) in accepted[batch..<min(batch + 1000, accepted.count)] {
                let first = bindings.count + 1
                tuples.append(
                    "($\(first)::bigint, $\(first + 1)::text, $\(first + 2)::bigint, $\(first + 3)::text, "
                        + "$\(first + 4)::bigint, $\(first + 5)::text, $\(first + 6)::text)")
                let report = pending.report
                bindings.append(number)
                bindings.append(report?.clientVersion)
                bindings.append(report?.pending.map(Int64.init))
                bindings.append(report?.lastError)
                bindings.append(report?.cursor.map { Int64(clamping: $0) })
                bindings.append(pending.pulledAt.map(Timestamp.string))
                bindings.append(Timestamp.string(pending.seenAt))
            }
            try await connection.query(
                PostgresQuery(
                    unsafeSQL: """
                        INSERT INTO kotasync.devices AS d (replica, client, pending, last_error, cursor, last_pull_at,
                            last_seen_at)
                        VALUES \(tuples.joined(separator: ", "))
                        ON CONFLICT (replica) DO UPDATE SET
                            client = CASE WHEN \(Self.newer) THEN coalesce(excluded.client, d.client)
                                ELSE coalesce(d.client, excluded.client) END,
                            pending = CASE WHEN \(Self.newer) THEN coalesce(excluded.pending, d.pending)
                                ELSE coalesce(d.pending, excluded.pending) END,
                            last_error = CASE WHEN \(Self.newer) THEN excluded.last_error ELSE d.last_error END,
                            cursor = CASE WHEN \(Self.newer) THEN coalesce(excluded.cursor, d.cursor)
                                ELSE coalesce(d.cursor, excluded.cursor) END,
                            last_pull_at = GREATEST(d.last_pull_at, excluded.last_pull_at),
                            last_seen_at = GREATEST(d.last_seen_at, excluded.last_seen_at)
                        """, binds: bindings), logger: logger)
        }
    }

    /// The condition under which the report being written is the newer one (the timestamps are
    /// fixed-width ISO text: they compare as text).
    private static let newer = "excluded.last_seen_at >= d.last_seen_at"
}
