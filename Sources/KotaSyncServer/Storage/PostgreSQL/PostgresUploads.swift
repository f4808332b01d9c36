import Crypto
import Foundation
import KotaSyncCore
import Logging
import NIOCore
import PostgresNIO
import Synchronization

/// Chunked uploads in progress kept in the master on PostgreSQL: the ``PartialUploads`` of
/// ``PostgresMasterStore``. Every server of the master sees the same uploads, so an upload
/// started through one server is resumed, and committed, through another.
///
/// An upload is a row of `kotasync.uploads` (what was announced, the token that started it, the
/// offset, when it was last touched, the reply once committed) and its bytes are rows of
/// `kotasync.upload_chunks`, one per accepted chunk, keyed by where the chunk starts. A chunk is
/// checked against its SHA-256 (when it carries one) and written in the same transaction that
/// moves the offset: once the offset says a byte is there, it is committed, and a chunk whose
/// transaction did not commit left nothing. The upload's row is locked (`FOR UPDATE`) while a
/// chunk is added, so two deliveries of one chunk through two servers follow one another, and the
/// second finds the offset moved (``OffsetMismatch``). New uploads are admitted one at a time
/// across the servers (the create locks `kotasync.uploads` against other creates), so the limits
/// per token and in all hold for the master, not per server.
///
/// The commit's bytes (``assembled(id:opd:)``) are read from one snapshot, a chunk at a time,
/// into a private temporary file (removed from its directory once opened: it goes away when the
/// push has read it), checked against the announced SHA-256 as they come, and handed to the push
/// open (`UploadedChangeset`): memory holds one chunk at a time, as with the file-based
/// ``UploadStore``, and the push reads through `pread`, which the synchronous
/// `ChangesetSource` needs (a query per read would block on the network).
///
/// Timestamps (`updated_at`) are ISO 8601 text from this store's clock, as elsewhere in the
/// schema; expiry compares them as text (fixed width). Each server sweeps expired uploads at
/// most once a minute (``sweepIfDue()``); one server's sweep serves all.
final class PostgresUploads: PartialUploads {
    let master: PostgresMaster
    let maxChunkBytes: Int
    /// Seconds without activity after which an upload is discarded.
    let expiry: TimeInterval
    let maxPartialPerToken: Int
    let maxPartial: Int
    let now: @Sendable () -> Date
    /// When this process last swept.
    private let lastSweep = Mutex(Date.distantPast)

    init(
        master: PostgresMaster, maxChunkBytes: Int, expirySeconds: Int, maxPartialPerToken: Int = 4,
        maxPartial: Int = 64, now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.master = master
        self.maxChunkBytes = maxChunkBytes
        self.expiry = TimeInterval(expirySeconds)
        self.maxPartialPerToken = maxPartialPerToken
        self.maxPartial = maxPartial
        self.now = now
    }

    private var logger: Logger { SQLiteMasterStore.quietLogger }

    /// One upload's row.
    struct Record: Sendable {
        var id: String
        var opd: String
        var changesetId: UUID
        var length: Int
        var sha256: String
        var offset: Int
        var updatedAt: Date
        var reply: Data?
    }

    static let columns = "id, opd, changeset_id, length, sha256, received, updated_at, reply"

    func create(_ request: UploadRequest, opd: String, token: String) async throws -> (
        status: UploadStatus, created: Bool
    ) {
        let id = UploadStore.uploadID(opd: opd, request: request)
        let now = now()
        return try await transaction { connection in
            // One create at a time across the servers, so the counts below stay true to commit
            // (a chunk or a delete arriving meanwhile waits for this short transaction; reads
            // do not).
            try await connection.query("LOCK TABLE kotasync.uploads IN SHARE ROW EXCLUSIVE MODE", logger: logger)
            if var record = try await load(id, connection), now.timeIntervalSince(record.updatedAt) <= expiry {
                record.updatedAt = now
                try await touch(id, at: now, connection)
                return (status(of: record), false)
            }
            try await connection.query("DELETE FROM kotasync.uploads WHERE id = \(id)", logger: logger)
            let cutoff = Timestamp.string(now.addingTimeInterval(-expiry))
            let counts = try await connection.query(
                """
                SELECT count(*) FILTER (WHERE token = \(token)), min(updated_at) FILTER (WHERE token = \(token)),
                    count(*), min(updated_at)
                FROM kotasync.uploads WHERE reply IS NULL AND updated_at >= \(cutoff)
                """, logger: logger)
            for try await (own, ownOldest, all, allOldest) in counts.decode((Int64, String?, Int64, String?).self) {
                if let refusal = UploadRules.admission(
                    own: .init(count: Int(own), oldest: ownOldest.flatMap(Timestamp.date)),
                    all: .init(count: Int(all), oldest: allOldest.flatMap(Timestamp.date)),
                    maxPerToken: maxPartialPerToken, maxInAll: maxPartial, expiry: expiry, now: now)
                {
                    throw refusal
                }
            }
            let record = Record(
                id: id, opd: opd, changesetId: request.changesetId, length: request.length, sha256: request.sha256,
                offset: 0, updatedAt: now)
            try await connection.query(
                """
                INSERT INTO kotasync.uploads(id, opd, token, changeset_id, length, sha256, received, updated_at)
                VALUES (\(id), \(opd), \(token), \(request.changesetId.uuidString), \(Int64(request.length)),
                    \(request.sha256), 0, \(Timestamp.string(now)))
                """, logger: logger)
            return (status(of: record), true)
        }
    }

    func status(id: String, opd: String) async throws -> UploadStatus {
        try await transaction { connection in status(of: try await live(id, opd: opd, connection)) }
    }

    func append(id: String, opd: String, offset: Int, chunk: [UInt8], sha256: String?) async throws -> UploadStatus {
        // Hashed before the upload's row is locked; refused in the order the file-based store
        // refuses (offset, size, then the hash).
        let damaged = sha256.map { UploadStore.sha256Hex(chunk) != $0.lowercased() } ?? false
        let now = now()
        return try await transaction { connection in
            try await lockForWriting(connection)
            var record = try await live(id, opd: opd, connection, lock: true)
            guard offset == record.offset, record.reply == nil else {
                throw OffsetMismatch(offset: record.reply == nil ? record.offset : record.length)
            }
            guard !chunk.isEmpty, offset + chunk.count <= record.length else {
                throw UploadRules.badChunk(count: chunk.count, offset: offset, length: record.length)
            }
            if damaged { throw UploadRules.chunkCorrupt(offset: offset) }
            // A chunk at this offset can only be one whose offset never moved, which the
            // transaction that wrote it would have: replaced, not kept.
            try await connection.query(
                """
                INSERT INTO kotasync.upload_chunks(upload, start, bytes) VALUES (\(id), \(Int64(offset)), \(ByteBuffer(bytes: chunk)))
                ON CONFLICT (upload, start) DO UPDATE SET bytes = excluded.bytes
                """, logger: logger)
            record.offset += chunk.count
            record.updatedAt = now
            try await connection.query(
                """
                UPDATE kotasync.uploads SET received = \(Int64(record.offset)), updated_at = \(Timestamp.string(now))
                WHERE id = \(id)
                """, logger: logger)
            return status(of: record)
        }
    }

    func assembled(id: String, opd: String) async throws -> AssembledUpload {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent(
            "kotasync-upload-\(UUID().uuidString).part")
        defer { try? FileManager.default.removeItem(at: file) }
        enum Read: Sendable {
            case committed(Data)
            case bytes(length: Int, whole: Bool)
        }
        let read: Read = try await master.readSnapshot { connection in
            // Read-only: an expired upload is left to the sweep.
            let record = try await live(id, opd: opd, connection, discarding: false)
            if let reply = record.reply { return .committed(reply) }
            guard record.offset == record.length else { throw OffsetMismatch(offset: record.offset, incomplete: true) }
            guard FileManager.default.createFile(atPath: file.path, contents: nil) else {
                throw SyncError(.internalError, "Cannot write the assembled upload to a temporary file.")
            }
            let handle = try FileHandle(forWritingTo: file)
            defer { try? handle.close() }
            var hash = SHA256()
            var written = 0
            var contiguous = true
            let chunks = try await connection.query(
                "SELECT start, bytes FROM kotasync.upload_chunks WHERE upload = \(id) ORDER BY start", logger: logger)
            for try await (start, bytes) in chunks.decode((Int64, ByteBuffer).self) {
                guard start == written else {
                    contiguous = false
                    break
                }
                bytes.withUnsafeReadableBytes { hash.update(bufferPointer: $0) }
                try handle.write(contentsOf: Array(buffer: bytes))
                written += bytes.readableBytes
            }
            let whole =
                contiguous && written == record.length
                && UploadStore.hex(hash.finalize()) == record.sha256.lowercased()
            return .bytes(length: record.length, whole: whole)
        }
        switch read {
        case .committed(let reply):
            return .committed(reply)
        case .bytes(let length, let whole):
            guard whole else {
                try await transaction { connection in
                    try await connection.query("DELETE FROM kotasync.uploads WHERE id = \(id)", logger: logger)
                }
                throw UploadRules.uploadCorrupt
            }
            // Open before the file leaves its directory (the deferred removal): the push reads it
            // through the open descriptor.
            let source = try UploadedChangeset(path: file.path, length: length)
            let now = now()
            try await transaction { connection in try await touch(id, at: now, connection) }
            return .complete(UploadedBytes(source))
        }
    }

    func committed(id: String, reply: Data) async throws {
        let now = now()
        try await transaction { connection in
            try await connection.query(
                """
                UPDATE kotasync.uploads SET reply = \(ByteBuffer(bytes: reply)), updated_at = \(Timestamp.string(now))
                WHERE id = \(id)
                """, logger: logger)
            try await connection.query("DELETE FROM kotasync.upload_chunks WHERE upload = \(id)", logger: logger)
        }
    }

    func delete(id: String, opd: String) async throws {
        try await transaction { connection in
            try await lockForWriting(connection)
            _ = try await live(id, opd: opd, connection, lock: true)
            try await connection.query("DELETE FROM kotasync.uploads WHERE id = \(id)", logger: logger)
        }
    }

    /// Discards every upload untouched for longer than the expiry (their chunks go with them).
    func sweep() async throws {
        let cutoff = Timestamp.string(now().addingTimeInterval(-expiry))
        try await transaction { connection in
            try await connection.query("DELETE FROM kotasync.uploads WHERE updated_at < \(cutoff)", logger: logger)
        }
    }

    /// Sweeps when this process last swept more than ``UploadStore/sweepInterval`` ago.
    func sweepIfDue() async throws {
        let now = now()
        let due = lastSweep.withLock { last in
            guard now.timeIntervalSince(last) >= UploadStore.sweepInterval else { return false }
            last = now
            return true
        }
        if due { try await sweep() }
    }

    /// The ids of the uploads in the master, expired or not.
    func uploadIDs() async throws -> [String] {
        var ids: [String] = []
        for try await id in try await master.client.query(
            "SELECT id FROM kotasync.uploads ORDER BY id", logger: logger
        ).decode(String.self) {
            ids.append(id)
        }
        return ids
    }

    /// The row of a live upload of `opd` (locked to commit when `lock`); anything else is
    /// `upload_not_found` (an upload of another OPD is not revealed), and an expired one is
    /// discarded.
    private func live(
        _ id: String, opd: String, _ connection: PostgresConnection, lock: Bool = false, discarding: Bool = true
    ) async throws -> Record {
        guard UploadStore.isValidID(id), let record = try await load(id, connection, lock: lock), record.opd == opd
        else {
            throw UploadRules.notFound(id)
        }
        guard now().timeIntervalSince(record.updatedAt) <= expiry else {
            let expired = UploadRules.expired(id, expiry: expiry)
            guard discarding else { throw expired }
            try await connection.query("DELETE FROM kotasync.uploads WHERE id = \(id)", logger: logger)
            throw Discarded(error: expired)
        }
        return record
    }

    /// An error after which the transaction still commits: what it discarded stays discarded.
    private struct Discarded: Error {
        var error: SyncError
    }

    /// Runs `body` in a transaction of the master: committed when it returns or throws
    /// ``Discarded`` (whose error is then thrown), rolled back when it throws anything else.
    private func transaction<T: Sendable>(
        isolation: isolated (any Actor)? = #isolation, _ body: (PostgresConnection) async throws -> T
    ) async throws -> T {
        try await master.client.withConnection { connection in
            try await connection.query("BEGIN", logger: logger)
            do {
                let value = try await body(connection)
                try await connection.query("COMMIT", logger: logger)
                return value
            } catch let discarded as Discarded {
                try await connection.query("COMMIT", logger: logger)
                throw discarded.error
            } catch {
                _ = try? await connection.query("ROLLBACK", logger: logger)
                throw error
            }
        }
    }

    private func load(_ id: String, _ connection: PostgresConnection, lock: Bool = false) async throws -> Record? {
        let rows = try await connection.query(
            PostgresQuery(
                unsafeSQL: "SELECT \(Self.columns) FROM kotasync.uploads WHERE id = $1\(lock ? " FOR UPDATE" : "")",
                binds: {
                    var bindings = PostgresBindings()
                    bindings.append(id)
                    return bindings
                }()), logger: logger)
        for try await (id, opd, changeset, length, sha256, received, updatedAt, reply) in rows.decode(
            (String, String, String, Int64, String, Int64, String, ByteBuffer?).self)
        {
            guard let changesetId = UUID(uuidString: changeset), let updated = Timestamp.date(updatedAt) else {
                throw SyncError(.internalError, "The master holds an upload record it cannot read.")
            }
            return Record(
                id: id, opd: opd, changesetId: changesetId, length: Int(length), sha256: sha256, offset: Int(received),
                updatedAt: updated, reply: reply.map { Data(Array(buffer: $0)) })
        }
        return nil
    }

    /// Takes the table lock an upload's write needs before its row lock: taken after (as an
    /// `UPDATE` would), it could wait for a create of the same upload that waits for the row.
    private func lockForWriting(_ connection: PostgresConnection) async throws {
        try await connection.query("LOCK TABLE kotasync.uploads IN ROW EXCLUSIVE MODE", logger: logger)
    }

    private func touch(_ id: String, at date: Date, _ connection: PostgresConnection) async throws {
        try await connection.query(
            "UPDATE kotasync.uploads SET updated_at = \(Timestamp.string(date)) WHERE id = \(id)", logger: logger)
    }

    private func status(of record: Record) -> UploadStatus {
        UploadStatus(
            id: record.id, changesetId: record.changesetId, length: record.length, sha256: record.sha256,
            offset: record.reply == nil ? record.offset : record.length, maxChunkBytes: maxChunkBytes,
            expiresAt: Timestamp.string(record.updatedAt.addingTimeInterval(expiry)), committed: record.reply != nil)
    }
}

extension PostgresMasterStore {
    /// Uploads in the master (``PostgresUploads``): every server of the master sees them, so an
    /// upload started through one can be resumed and committed through another.
    public func partialUploads(limits: ServerConfig.Limits) throws -> any PartialUploads {
        PostgresUploads(
            master: master, maxChunkBytes: limits.maxChunkBytes, expirySeconds: limits.uploadExpirySeconds,
            maxPartialPerToken: limits.maxPartialUploadsPerToken, maxPartial: limits.maxPartialUploads)
    }
}
