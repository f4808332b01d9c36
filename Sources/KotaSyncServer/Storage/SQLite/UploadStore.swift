import Crypto
import Foundation
import KotaSyncCore
import Synchronization

/// Chunked uploads in progress, kept on disk beside a SQLite master until they are committed or
/// abandoned: the ``PartialUploads`` of ``SQLiteMasterStore``.
///
/// Partial uploads live in files, not in the master: they are not the city's data, and keeping
/// them out leaves the master's single writer (and its WAL and backups) to merges. Each upload is
/// two files in ``directory``: `ID.part`, the bytes received so far, and `ID.json`, what was
/// announced and how many bytes are durable (the offset). A chunk is checked against its SHA-256
/// (when it carries one; a streamed chunk's part that arrived before a drop is kept as it is),
/// appended and flushed to disk, and only then does the offset move, so an acknowledged offset
/// survives a crash; bytes past the offset (a chunk cut by a crash) are cut off before the next
/// append. Memory holds one chunk at a time, also at the commit: the assembled file is checked
/// against its SHA-256 a piece at a time and handed to the push open (``UploadedChangeset``), which
/// reads it from there.
///
/// An upload's id is derived from its OPD, changeset id, length and SHA-256, so announcing the same
/// changeset again returns the same upload with its offset: a client that lost its state, or the
/// reply to its announcement, resumes instead of starting over. Uploads untouched for longer than
/// the expiry are deleted by ``sweep()``, which the HTTP API runs now and then.
///
/// Every operation runs on one serial queue: two deliveries of the same chunk cannot interleave
/// their writes, and file I/O never blocks Swift's cooperative threads.
public final class UploadStore: PartialUploads {
    /// Where the upload files are.
    public let directory: URL
    /// The largest chunk accepted.
    public let maxChunkBytes: Int
    /// Seconds without activity after which an upload is discarded.
    public let expiry: TimeInterval
    /// The most unfinished uploads one token may have at a time.
    public let maxPartialPerToken: Int
    /// The most unfinished uploads of all tokens together: with ``maxPartialPerToken`` what bounds
    /// the disk a device, or all of them, can fill with uploads they never finish (each at most
    /// `max_body_bytes`).
    public let maxPartial: Int
    let now: @Sendable () -> Date
    private let queue = DispatchQueue(label: "kotasync.uploads")
    /// When the directory was last swept for abandoned uploads.
    private let lastSweep: Mutex<Date>
    /// The unfinished (not committed) uploads on disk: id → the token that started it and when
    /// it was last touched. Built from the records when the store opens, kept in step on the
    /// queue, so that counting them reads no file.
    private let partial = Mutex<[String: (token: String, updatedAt: Date)]>([:])

    /// How often ``sweepIfDue()`` sweeps, at most: often enough that disk space comes back
    /// within a minute of the expiry, rarely enough that a busy server does not list the
    /// directory on every request.
    static let sweepInterval: TimeInterval = 60

    /// What is kept about one upload, in `ID.json`.
    struct Record: Codable, Sendable {
        var id: String
        var opd: String
        var changesetId: UUID
        var length: Int
        var sha256: String
        var offset: Int
        var updatedAt: Date
        /// The id of the token that started the upload (records of older versions have none).
        var token: String?
        /// The push reply once the assembled changeset was merged (its bytes are deleted then).
        var reply: Data?
    }

    /// What a commit finds.
    enum Assembled: Sendable {
        /// Every byte, checked against the announced SHA-256, in its file.
        case complete(UploadedChangeset)
        /// The upload was committed before; its stored push reply.
        case committed(Data)
    }

    /// Opens (creating if needed) the upload directory and discards expired uploads.
    public init(
        directory: URL, maxChunkBytes: Int, expirySeconds: Int, maxPartialPerToken: Int = 4, maxPartial: Int = 64,
        now: @escaping @Sendable () -> Date = { Date() }
    ) throws {
        self.directory = directory
        self.maxChunkBytes = maxChunkBytes
        self.expiry = TimeInterval(expirySeconds)
        self.maxPartialPerToken = maxPartialPerToken
        self.maxPartial = maxPartial
        self.now = now
        self.lastSweep = Mutex(now())
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try sweepNow()
    }

    /// The upload for `request` from a device of `opd` with the token `token` (its id): the one
    /// already started for the same changeset, or a new, empty one. `created` tells which. A new
    /// one beyond ``maxPartialPerToken`` unfinished uploads of the token, or ``maxPartial`` in
    /// all, is refused with `too_many_uploads`.
    public func create(_ request: UploadRequest, opd: String, token: String = "") async throws -> (
        status: UploadStatus, created: Bool
    ) {
        try await run { [self] in
            let id = Self.uploadID(opd: opd, request: request)
            if var record = try load(id), now().timeIntervalSince(record.updatedAt) <= expiry {
                record.updatedAt = now()
                try save(record)
                return (status(of: record), false)
            }
            try remove(id)
            try admitNew(token: token)
            let record = Record(
                id: id, opd: opd, changesetId: request.changesetId, length: request.length, sha256: request.sha256,
                offset: 0, updatedAt: now(), token: token)
            FileManager.default.createFile(atPath: partURL(id).path, contents: nil)
            try save(record)
            return (status(of: record), true)
        }
    }

    /// The upload's state; `upload_not_found` unless it exists for `opd` and has not expired.
    public func status(id: String, opd: String) async throws -> UploadStatus {
        try await run { [self] in status(of: try live(id, opd: opd)) }
    }

    /// Appends `chunk` at `offset` after checking it against `sha256` (a streamed chunk has none:
    /// the whole upload's SHA-256 is checked at the commit); returns the new state.
    public func append(id: String, opd: String, offset: Int, chunk: [UInt8], sha256: String?) async throws
        -> UploadStatus
    {
        try await run { [self] in
            var record = try live(id, opd: opd)
            guard offset == record.offset, record.reply == nil else {
                throw OffsetMismatch(offset: record.reply == nil ? record.offset : record.length)
            }
            guard !chunk.isEmpty, offset + chunk.count <= record.length else {
                throw UploadRules.badChunk(count: chunk.count, offset: offset, length: record.length)
            }
            if let sha256, Self.hex(SHA256.hash(data: chunk)) != sha256.lowercased() {
                throw UploadRules.chunkCorrupt(offset: offset)
            }
            let handle = try FileHandle(forUpdating: partURL(id))
            defer { try? handle.close() }
            // Bytes past the durable offset belong to a chunk that was never acknowledged.
            try handle.truncate(atOffset: UInt64(offset))
            try handle.seekToEnd()
            try handle.write(contentsOf: chunk)
            try handle.synchronize()
            record.offset += chunk.count
            record.updatedAt = now()
            try save(record)
            return status(of: record)
        }
    }

    /// Every byte of a complete upload, checked against the announced SHA-256, or the stored
    /// reply of a committed one. An upload whose bytes do not match is discarded
    /// (`upload_corrupt`); one that is not complete gives ``OffsetMismatch`` with its offset.
    func assemble(id: String, opd: String) async throws -> Assembled {
        try await run { [self] in
            var record = try live(id, opd: opd)
            if let reply = record.reply { return .committed(reply) }
            guard record.offset == record.length else { throw OffsetMismatch(offset: record.offset, incomplete: true) }
            // Opened here, on the upload queue: a commit that finishes first deletes the file, and
            // an open file stays readable after that.
            let file = try UploadedChangeset(path: partURL(id).path, length: record.length)
            guard file.isWhole, try file.sha256() == record.sha256.lowercased() else {
                try remove(id)
                throw UploadRules.uploadCorrupt
            }
            record.updatedAt = now()
            try save(record)
            return .complete(file)
        }
    }

    /// ``assemble(id:opd:)`` as ``PartialUploads`` hands it out: the open file behind the bytes.
    public func assembled(id: String, opd: String) async throws -> AssembledUpload {
        switch try await assemble(id: id, opd: opd) {
        case .complete(let file): .complete(UploadedBytes(file))
        case .committed(let reply): .committed(reply)
        }
    }

    /// Keeps `reply` as the upload's outcome and drops its bytes: a repeated commit (its reply was
    /// lost) returns the reply without the bytes.
    public func committed(id: String, reply: Data) async throws {
        try await run { [self] in
            guard var record = try load(id) else { return }
            record.reply = reply
            record.updatedAt = now()
            try save(record)
            try? FileManager.default.removeItem(at: partURL(id))
            partial.withLock { _ = $0.removeValue(forKey: id) }
        }
    }

    /// Discards the upload (the client gave it up).
    public func delete(id: String, opd: String) async throws {
        try await run { [self] in
            _ = try live(id, opd: opd)
            try remove(id)
        }
    }

    /// Discards every upload untouched for longer than the expiry.
    public func sweep() async throws {
        try await run { [self] in try sweepNow() }
    }

    /// Sweeps when the last sweep is older than ``sweepInterval``.
    public func sweepIfDue() async throws {
        let now = now()
        let due = lastSweep.withLock { last in
            guard now.timeIntervalSince(last) >= Self.sweepInterval else { return false }
            last = now
            return true
        }
        if due { try await sweep() }
    }

    /// The ids of the uploads on disk, expired or not.
    public func uploadIDs() async throws -> [String] {
        try await run { [self] in
            try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".json") }
                .map { String($0.dropLast(5)) }.sorted()
        }
    }

    /// Refuses a new upload of `token` when it, or all tokens together, already have as many
    /// unfinished uploads as allowed: `429 too_many_uploads`, with the seconds until the oldest of
    /// those expires (or is finished sooner).
    private func admitNew(token: String) throws {
        let now = now()
        let live = partial.withLock { uploads in
            uploads = uploads.filter { now.timeIntervalSince($0.value.updatedAt) <= expiry }
            return uploads
        }
        let own = live.values.filter { $0.token == token }.map(\.updatedAt)
        if let refusal = UploadRules.admission(
            own: .init(count: own.count, oldest: own.min()),
            all: .init(count: live.count, oldest: live.values.map(\.updatedAt).min()), maxPerToken: maxPartialPerToken,
            maxInAll: maxPartial, expiry: expiry, now: now)
        {
            throw refusal
        }
    }

    private func sweepNow() throws {
        for name in try FileManager.default.contentsOfDirectory(atPath: directory.path) {
            let url = directory.appendingPathComponent(name)
            if name.hasSuffix(".json") {
                let id = String(name.dropLast(5))
                let record = try? load(id)
                if record.map({ now().timeIntervalSince($0.updatedAt) > expiry }) ?? true {
                    try remove(id)
                } else if let record, record.reply == nil {
                    partial.withLock { $0[id] = (record.token ?? "", record.updatedAt) }
                }
            } else if name.hasSuffix(".part"),
                !FileManager.default.fileExists(atPath: recordURL(String(name.dropLast(5))).path)
            {
                // A part file whose record was never written (a crash during create).
                try? FileManager.default.removeItem(at: url)
            } else if name.hasSuffix(".tmp") || name.hasPrefix(".dat.nosync") {
                // A record's temporary file, or one Foundation wrote for it before (versions that
                // saved with `createFile`), left by a kill before the rename.
                try? FileManager.default.removeItem(at: url)
            }
        }
    }

    /// The record of a live upload of `opd`; anything else is `upload_not_found` (an upload of
    /// another OPD is not revealed).
    private func live(_ id: String, opd: String) throws -> Record {
        guard Self.isValidID(id), let record = try load(id), record.opd == opd else {
            throw UploadRules.notFound(id)
        }
        guard now().timeIntervalSince(record.updatedAt) <= expiry else {
            try remove(id)
            throw UploadRules.expired(id, expiry: expiry)
        }
        return record
    }

    private func status(of record: Record) -> UploadStatus {
        UploadStatus(
            id: record.id, changesetId: record.changesetId, length: record.length, sha256: record.sha256,
            offset: record.reply == nil ? record.offset : record.length, maxChunkBytes: maxChunkBytes,
            expiresAt: Timestamp.string(record.updatedAt.addingTimeInterval(expiry)), committed: record.reply != nil)
    }

    private func load(_ id: String) throws -> Record? {
        guard let data = FileManager.default.contents(atPath: recordURL(id).path) else { return nil }
        return try JSONDecoder().decode(Record.self, from: data)
    }

    /// Writes the record through a temporary file and a rename, so it is never half written.
    private func save(_ record: Record) throws {
        let temporary = directory.appendingPathComponent("\(record.id).json.tmp")
        // Written in place: `createFile` would write through a hidden `.dat.nosync…` file of its
        // own, which a kill leaves behind under a name the sweep does not know.
        try JSONEncoder().encode(record).write(to: temporary)
        let handle = try FileHandle(forUpdating: temporary)
        try handle.synchronize()
        try handle.close()
        if rename(temporary.path, recordURL(record.id).path) != 0 {
            throw SyncError(.internalError, "Cannot store the state of upload \(record.id) (errno \(errno)).")
        }
        if record.reply == nil { partial.withLock { $0[record.id] = (record.token ?? "", record.updatedAt) } }
    }

    private func remove(_ id: String) throws {
        partial.withLock { _ = $0.removeValue(forKey: id) }
        for url in [partURL(id), recordURL(id)] where FileManager.default.fileExists(atPath: url.path) {
            try FileManager.default.removeItem(at: url)
        }
    }

    private func partURL(_ id: String) -> URL { directory.appendingPathComponent("\(id).part") }
    private func recordURL(_ id: String) -> URL { directory.appendingPathComponent("\(id).json") }

    private func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try body() }) }
        }
    }

    /// The upload id: the first 128 bits of SHA-256 over the OPD and the announcement, in hex.
    static func uploadID(opd: String, request: UploadRequest) -> String {
        let text = "\(opd)\n\(request.changesetId.uuidString)\n\(request.length)\n\(request.sha256.lowercased())"
        return String(hex(SHA256.hash(data: Array(text.utf8))).prefix(32))
    }

    /// 32 lower-case hex digits; anything else never names a file.
    static func isValidID(_ id: String) -> Bool {
        id.utf8.count == 32 && id.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    static func hex(_ digest: SHA256.Digest) -> String {
        digest.map { String(format: "%02x", $0) }.joined()
    }

    /// SHA-256 of `bytes` in lower-case hex, as the upload routes carry it.
    static func sha256Hex(_ bytes: some DataProtocol) -> String { hex(SHA256.hash(data: bytes)) }
}

/// The bytes of a complete upload, read from its file while it is pushed, not loaded whole.
///
/// It holds the file open, so it reads the same bytes even after the upload's files were deleted
/// (by a commit of the same upload that finished first, or a sweep): nothing writes to a complete
/// upload's file. Reads are positional (`pread`), so it is safe to share.
final class UploadedChangeset: ChangesetSource {
    private let descriptor: Int32
    let count: Int
    /// False when the file holds fewer than `count` bytes.
    let isWhole: Bool

    /// Opens the first `length` bytes of the file at `path`.
    init(path: String, length: Int) throws {
        descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw SyncError(.internalError, "Cannot open the assembled upload (errno \(errno)).")
        }
        count = length
        var status = stat()
        isWhole = fstat(descriptor, &status) == 0 && Int(status.st_size) >= length
    }

    deinit { close(descriptor) }

    func copyBytes(from offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(SyncError) -> Int {
        var done = 0
        let wanted = max(0, min(buffer.count, count - offset))
        while done < wanted {
            let n = pread(descriptor, buffer.baseAddress! + done, wanted - done, off_t(offset + done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                throw SyncError(
                    .internalError, "Cannot read the assembled upload at byte \(offset + done) (errno \(errno)).")
            }
            done += n
        }
        return done
    }

    /// The SHA-256 of the bytes in lower-case hex, read a megabyte at a time.
    func sha256() throws -> String {
        var hash = SHA256()
        try forEachChunk(in: 0..<count, chunkSize: 1 << 20) { chunk in hash.update(bufferPointer: chunk) }
        return UploadStore.hex(hash.finalize())
    }
}
