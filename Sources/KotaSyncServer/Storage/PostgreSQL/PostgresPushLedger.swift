import Foundation
import KotaSyncCore
import NIOCore
import PostgresNIO

/// The push envelope's port (``PushLedger``) on the PostgreSQL master, on the blocking
/// connection of the merge's transaction: `kotasync.changesets`, `kotasync.replicas`,
/// `kotasync.devices`, and the scope reads of the device view (`kotasync.rows`,
/// `kotasync.conflicts`).
struct PostgresPushLedger: PushLedger {
    let connection: PostgresBlockingConnection

    private static func bytes(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }

    func storedReply(of id: UUID) throws -> (reply: Data, opd: String)? {
        let rows = try connection.rows(
            """
            SELECT c.reply, r.opd FROM kotasync.changesets c JOIN kotasync.replicas r ON r.number = c.replica
            WHERE c.id = \(Self.bytes(id.bytes))
            """)
        guard let row = rows.first else { return nil }
        let (reply, opd) = try row.decode((Data, String).self)
        return (reply, opd)
    }

    func replica(_ id: UUID) throws -> LedgerReplica? {
        let rows = try connection.rows(
            "SELECT number, opd, last_sequence FROM kotasync.replicas WHERE uuid = \(Self.bytes(id.bytes))")
        guard let row = rows.first else { return nil }
        let (number, opd, last) = try row.decode((Int64, String, Int64).self)
        return LedgerReplica(number: number, opd: opd, lastSequence: UInt64(max(0, last)))
    }

    func registerReplica(_ id: UUID, opd: String, at time: String) throws -> Int64 {
        let rows = try connection.rows(
            """
            INSERT INTO kotasync.replicas(uuid, opd, first_seen_at) VALUES (\(Self.bytes(id.bytes)), \(opd), \(time))
            RETURNING number
            """)
        guard let number = try rows.first?.decode(Int64.self) else {
            throw SyncError(.internalError, "The master gave the new replica no number.")
        }
        return number
    }

    func recordChangeset(_ changeset: Changeset, replica: Int64, rows: Int, at time: String, reply: Data) throws {
        // One round trip for both.
        try connection.run(
            """
            WITH stored AS (
                INSERT INTO kotasync.changesets(id, replica, first_sequence, last_sequence, rows, received_at, reply)
                VALUES (\(Self.bytes(changeset.id.bytes)), \(replica), \(Int64(bitPattern: changeset.firstSequence)),
                    \(Int64(bitPattern: changeset.lastSequence)), \(Int64(rows)), \(time), \(reply))
            )
            UPDATE kotasync.replicas SET last_sequence = \(Int64(bitPattern: changeset.lastSequence)),
                last_push_at = \(time) WHERE number = \(replica)
            """)
    }

    func countRefused(_ count: Int, replica: Int64, at time: String) throws {
        try connection.run(
            """
            INSERT INTO kotasync.devices(replica, last_seen_at, refused) VALUES (\(replica), \(time), \(Int64(count)))
            ON CONFLICT (replica) DO UPDATE SET refused = kotasync.devices.refused + excluded.refused
            """)
    }

    func storedScopes(of rows: Set<RowReference>) throws -> [RowReference: SQLValue] {
        var out: [RowReference: SQLValue] = [:]
        for (table, refs) in Dictionary(grouping: rows, by: \.table) {
            var asked: [[UInt8]: [RowReference]] = [:]
            for ref in refs { asked[PrimaryKeyCoding.encode(ref.primaryKey), default: []].append(ref) }
            var bindings = PostgresBindings()
            bindings.append(table)
            bindings.append(asked.keys.map(Self.bytes))
            let found = try connection.rows(
                sql: """
                    SELECT pk, \(PostgresColumnType.value.select("scope").joined(separator: ", ")) FROM kotasync.rows
                    WHERE tbl = $1 AND pk = ANY($2)
                    """, bindings)
            for row in found {
                let cells = row.makeRandomAccess()
                let pk = Array(buffer: try cells[0].decode(ByteBuffer.self))
                let scope = try PostgresColumnType.value.decode(cells, at: 1)
                for ref in asked[pk] ?? [] { out[ref] = scope }
            }
        }
        return out
    }

    func firstHeldChange(of table: String, key: [SQLValue]) throws -> String? {
        let rows = try connection.rows(
            """
            SELECT held FROM kotasync.conflicts
            WHERE kind IN ('unique', 'foreign_key') AND status IN ('open', 'held') AND tbl = \(table)
                AND pk = \(Self.bytes(PrimaryKeyCoding.encode(key)))
            ORDER BY id LIMIT 1
            """)
        return try rows.first?.decode(String?.self) ?? nil
    }
}
