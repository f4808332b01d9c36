import Foundation
import GRDB
import Hummingbird
import KotaSyncCore
import Testing

@testable import KotaSyncClient
@testable import KotaSyncServer

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The chunked upload routes over HTTP, as `Protocol/http-api.md` ("Chunked uploads") states them.
struct UploadAPITests {
    /// A request with `headers`, answered as status, headers (lower-case names) and body.
    static func send(
        _ method: String, _ url: URL, token: String, headers: [String: String] = [:], body: [UInt8]? = nil
    ) async throws -> (status: Int, headers: [String: String], body: Data) {
        var request = URLRequest(url: url)
        request.httpMethod = method
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        if let body { request.httpBody = Data(body) }
        let (data, response) = try await URLSession.shared.data(for: request)
        let http = response as! HTTPURLResponse
        var fields: [String: String] = [:]
        for (k, v) in http.allHeaderFields { fields["\(k)".lowercased()] = "\(v)" }
        return (http.statusCode, fields, data)
    }

    static func chunk(_ bytes: ArraySlice<UInt8>, at offset: Int, sha: String? = nil) -> [String: String] {
        [
            "Content-Type": UploadHeaders.chunkMediaType, UploadHeaders.offset: String(offset),
            UploadHeaders.chunkSHA256: sha ?? sha256(bytes),
        ]
    }

    /// SHA-256 in hex, as the client library sends it.
    static func sha256(_ bytes: some Collection<UInt8>) -> String { sha256Hex(Array(bytes)) }

    @Test func anUploadIsAnnouncedSentInCheckedChunksAndCommittedLikeAPush() async throws {
        try await InProcessServerTests.withServer { url, store, dir in
            let token = try await store.createToken(opd: "pkm-binjai-kota", expiresAt: nil).token
            let path = dir.appendingPathComponent("r.sqlite").path
            let (replica, _, _) = try await Synchronizer.initialize(path: path, serverURL: url, token: token)
            try await DatabaseQueue(path: path).write { db in
                for i in 0..<30 {
                    try db.execute(
                        sql: "INSERT INTO villages VALUES (?, ?, 'Uji')",
                        arguments: ["u\(i)", String(repeating: "desa \(i) ", count: 30)])
                }
            }
            let outbound = try #require(try replica.nextOutbound())
            let body = outbound.body
            let half = body.count / 2
            let announcement = try ProtocolJSON.encoder().encode(
                UploadRequest(changesetId: outbound.id, length: body.count, sha256: Self.sha256(body)))
            let uploads = url.appendingPathComponent("v1/uploads")

            let created = try await Self.send(
                "POST", uploads, token: token, headers: ["Content-Type": "application/json"],
                body: [UInt8](announcement))
            #expect(created.status == 201)
            let status = try ProtocolJSON.decoder().decode(UploadStatus.self, from: created.body)
            #expect(status.offset == 0 && status.length == body.count && !status.committed)
            let upload = uploads.appendingPathComponent(status.id)

            let damaged = try await Self.send(
                "PATCH", upload, token: token, headers: Self.chunk(body[0..<half], at: 0, sha: Self.sha256([1, 2])),
                body: Array(body[0..<half]))
            #expect(damaged.status == 400 && errorCode(damaged.body) == "chunk_corrupt")

            let first = try await Self.send(
                "PATCH", upload, token: token, headers: Self.chunk(body[0..<half], at: 0), body: Array(body[0..<half]))
            #expect(first.status == 200 && first.headers["upload-offset"] == String(half))

            let again = try await Self.send(
                "PATCH", upload, token: token, headers: Self.chunk(body[0..<half], at: 0), body: Array(body[0..<half]))
            #expect(again.status == 409 && errorCode(again.body) == "upload_offset_mismatch")
            #expect(again.headers["upload-offset"] == String(half))

            let early = try await Self.send("POST", upload.appendingPathComponent("commit"), token: token)
            #expect(early.status == 409 && errorCode(early.body) == "upload_incomplete")

            let reannounced = try await Self.send(
                "POST", uploads, token: token, headers: ["Content-Type": "application/json"],
                body: [UInt8](announcement))
            #expect(reannounced.status == 200)
            #expect(try ProtocolJSON.decoder().decode(UploadStatus.self, from: reannounced.body).offset == half)

            let other = try await store.createToken(opd: "pkm-kebun-lada", expiresAt: nil).token
            let foreign = try await Self.send("GET", upload, token: other)
            #expect(foreign.status == 404 && errorCode(foreign.body) == "upload_not_found")
            let staff = try await store.createStaffToken(name: "Ani", role: .admin, expiresAt: nil).token
            #expect(try await Self.send("GET", upload, token: staff).status == 403)

            let rest = try await Self.send(
                "PATCH", upload, token: token, headers: Self.chunk(body[half...], at: half), body: Array(body[half...]))
            #expect(rest.status == 200 && rest.headers["upload-offset"] == String(body.count))

            let committed = try await Self.send("POST", upload.appendingPathComponent("commit"), token: token)
            #expect(committed.status == 200 && committed.headers["kotasync-replay"] == nil)
            let reply = try ProtocolJSON.decoder().decode(PushReply.self, from: committed.body)
            #expect(reply.changesetId == outbound.id && reply.applied == 30)

            let replayed = try await Self.send("POST", upload.appendingPathComponent("commit"), token: token)
            #expect(replayed.status == 200 && replayed.headers["kotasync-replay"] == "true")
            #expect(replayed.body == committed.body)
            // The same bytes by POST /v1/push are the same changeset: its stored reply.
            let pushed = try await http("POST", url.appendingPathComponent("v1/push"), token: token, body: body)
            #expect(pushed.status == 200 && pushed.headers["kotasync-replay"] == "true")
        }
    }

    @Test func anUploadLargerThanTheServerAcceptsIsRefusedWhenAnnounced() async throws {
        try await InProcessServerTests.withServer { url, store, _ in
            let token = try await store.createToken(opd: "pkm-binjai-kota", expiresAt: nil).token
            let announcement = try ProtocolJSON.encoder().encode(
                UploadRequest(changesetId: UUID(), length: 1 << 30, sha256: String(repeating: "a", count: 64)))
            let refused = try await Self.send(
                "POST", url.appendingPathComponent("v1/uploads"), token: token,
                headers: ["Content-Type": "application/json"], body: [UInt8](announcement))
            #expect(refused.status == 413 && errorCode(refused.body) == "body_too_large")
        }
    }

    /// A streamed chunk (no `KotaSync-Chunk-SHA256`) that the link cuts in the middle keeps the
    /// bytes that arrived: the upload's offset moves to them and the client sends only the rest.
    /// A checked chunk cut the same way keeps nothing (it cannot be checked). Then the rest is
    /// sent and the commit checks the whole against the announced SHA-256.
    @Test func aStreamedChunkCutInTheMiddleKeepsTheBytesThatArrived() async throws {
        try await InProcessServerTests.withServer { url, store, dir in
            let token = try await store.createToken(opd: "pkm-binjai-kota", expiresAt: nil).token
            let path = dir.appendingPathComponent("r.sqlite").path
            let (replica, _, _) = try await Synchronizer.initialize(path: path, serverURL: url, token: token)
            try await DatabaseQueue(path: path).write { db in
                for i in 0..<40 {
                    try db.execute(
                        sql: "INSERT INTO villages VALUES (?, ?, 'Uji')",
                        arguments: ["s\(i)", String(repeating: "desa \(i) ", count: 40)])
                }
            }
            let outbound = try #require(try replica.nextOutbound())
            let body = outbound.body
            let announcement = try ProtocolJSON.encoder().encode(
                UploadRequest(changesetId: outbound.id, length: body.count, sha256: Self.sha256(body)))
            let uploads = url.appendingPathComponent("v1/uploads")
            let created = try await Self.send(
                "POST", uploads, token: token, headers: ["Content-Type": "application/json"],
                body: [UInt8](announcement))
            let id = try ProtocolJSON.decoder().decode(UploadStatus.self, from: created.body).id
            let upload = uploads.appendingPathComponent(id)
            let port = try #require(url.port)
            func cut(after arrived: Int, checked: Bool) async throws {
                var head =
                    "PATCH /v1/uploads/\(id) HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(token)\r\n"
                    + "Content-Type: \(UploadHeaders.chunkMediaType)\r\nUpload-Offset: 0\r\n"
                    + "Content-Length: \(body.count)\r\n"
                if checked { head += "\(UploadHeaders.chunkSHA256): \(Self.sha256(body))\r\n" }
                try await RawHTTP.sendAndClose(port: port, Array((head + "\r\n").utf8) + body[0..<arrived])
            }
            func offset() async throws -> Int {
                try ProtocolJSON.decoder().decode(
                    UploadStatus.self, from: try await Self.send("GET", upload, token: token).body
                ).offset
            }

            try await cut(after: body.count / 3, checked: true)
            let arrived = body.count / 2
            try await cut(after: arrived, checked: false)
            // The server learns of the cut on its own schedule: ask until the kept bytes show, within a bound.
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(10)
            var held = try await offset()
            while held != arrived, clock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
                held = try await offset()
            }
            // Not a third of the body (the checked chunk kept nothing), not zero: what arrived.
            #expect(held == arrived)

            let rest = try await Self.send(
                "PATCH", upload, token: token,
                headers: ["Content-Type": UploadHeaders.chunkMediaType, UploadHeaders.offset: String(held)],
                body: Array(body[held...]))
            #expect(rest.status == 200 && rest.headers["upload-offset"] == String(body.count))
            let committed = try await Self.send("POST", upload.appendingPathComponent("commit"), token: token)
            #expect(committed.status == 200)
            #expect(try ProtocolJSON.decoder().decode(PushReply.self, from: committed.body).applied == 40)
        }
    }

    /// The upload routes know partial uploads only as ``PartialUploads``: given uploads kept
    /// somewhere else than files beside the master (as a master several servers share keeps them
    /// in a table), an upload is sent in chunks and committed as a push, and nothing is written
    /// beside the master.
    @Test func theUploadRoutesKeepUploadsWhereTheServerIsTold() async throws {
        let memory = MemoryUploads(maxChunkBytes: 1 << 20)
        try await InProcessServerTests.withServer(uploads: memory) { url, store, dir in
            let token = try await store.createToken(opd: "pkm-binjai-kota", expiresAt: nil).token
            let path = dir.appendingPathComponent("r.sqlite").path
            let (replica, _, _) = try await Synchronizer.initialize(path: path, serverURL: url, token: token)
            try await DatabaseQueue(path: path).write { db in
                for i in 0..<20 {
                    try db.execute(sql: "INSERT INTO villages VALUES (?, ?, 'Uji')", arguments: ["m\(i)", "desa \(i)"])
                }
            }
            let outbound = try #require(try replica.nextOutbound())
            let body = outbound.body
            let half = body.count / 2
            let uploads = url.appendingPathComponent("v1/uploads")
            let created = try await Self.send(
                "POST", uploads, token: token, headers: ["Content-Type": "application/json"],
                body: [UInt8](
                    try ProtocolJSON.encoder().encode(
                        UploadRequest(changesetId: outbound.id, length: body.count, sha256: Self.sha256(body)))))
            #expect(created.status == 201)
            let upload = uploads.appendingPathComponent(
                try ProtocolJSON.decoder().decode(UploadStatus.self, from: created.body).id)
            for range in [0..<half, half..<body.count] {
                let sent = try await Self.send(
                    "PATCH", upload, token: token, headers: Self.chunk(body[range], at: range.lowerBound),
                    body: Array(body[range]))
                #expect(sent.status == 200 && sent.headers["upload-offset"] == String(range.upperBound))
            }
            let committed = try await Self.send("POST", upload.appendingPathComponent("commit"), token: token)
            #expect(committed.status == 200)
            #expect(try ProtocolJSON.decoder().decode(PushReply.self, from: committed.body).applied == 20)
            #expect(await memory.chunks == 2)
            let beside = dir.appendingPathComponent("master.sqlite.uploads").path
            #expect((try? FileManager.default.contentsOfDirectory(atPath: beside)) ?? [] == [])
        }
    }
}

/// Partial uploads kept in memory: the shape of a table-backed ``PartialUploads`` (a master
/// that several servers share keeps them in a table), with no file or path anywhere. It keeps
/// the protocol's promises that the HTTP API relies on, and counts the chunks it took, so a test
/// can tell the server used it.
actor MemoryUploads: PartialUploads {
    struct Upload {
        var opd: String
        var request: UploadRequest
        var bytes: [UInt8] = []
        var reply: Data?
    }

    nonisolated let maxChunkBytes: Int
    private var uploads: [String: Upload] = [:]
    /// Chunks appended, over all uploads.
    private(set) var chunks = 0

    init(maxChunkBytes: Int) {
        self.maxChunkBytes = maxChunkBytes
    }

    func create(_ request: UploadRequest, opd: String, token: String) throws -> (status: UploadStatus, created: Bool) {
        let id = String(
            sha256Hex(Array("\(opd)\n\(request.changesetId)\n\(request.length)\n\(request.sha256)".utf8)).prefix(32))
        if let known = uploads[id] { return (status(id, known), false) }
        uploads[id] = Upload(opd: opd, request: request)
        return (status(id, uploads[id]!), true)
    }

    func status(id: String, opd: String) throws -> UploadStatus { status(id, try live(id, opd: opd)) }

    func append(id: String, opd: String, offset: Int, chunk: [UInt8], sha256: String?) throws -> UploadStatus {
        var upload = try live(id, opd: opd)
        guard offset == upload.bytes.count, upload.reply == nil else {
            throw OffsetMismatch(offset: upload.bytes.count)
        }
        if let sha256, sha256Hex(chunk) != sha256.lowercased() {
            throw SyncError(.chunkCorrupt, "The chunk is damaged.")
        }
        upload.bytes += chunk
        uploads[id] = upload
        chunks += 1
        return status(id, upload)
    }

    func assembled(id: String, opd: String) throws -> AssembledUpload {
        let upload = try live(id, opd: opd)
        if let reply = upload.reply { return .committed(reply) }
        guard upload.bytes.count == upload.request.length else {
            throw OffsetMismatch(offset: upload.bytes.count, incomplete: true)
        }
        guard sha256Hex(upload.bytes) == upload.request.sha256.lowercased() else {
            uploads[id] = nil
            throw SyncError(.uploadCorrupt, "The assembled changeset does not match its SHA-256.")
        }
        return .complete(UploadedBytes(ByteBuffer(bytes: upload.bytes)))
    }

    func committed(id: String, reply: Data) {
        uploads[id]?.reply = reply
        uploads[id]?.bytes = []
    }

    func delete(id: String, opd: String) throws {
        _ = try live(id, opd: opd)
        uploads[id] = nil
    }

    func sweepIfDue() {}

    private func live(_ id: String, opd: String) throws -> Upload {
        guard let upload = uploads[id], upload.opd == opd else {
            throw SyncError(.uploadNotFound, "There is no upload \(id) for this OPD.")
        }
        return upload
    }

    private func status(_ id: String, _ upload: Upload) -> UploadStatus {
        UploadStatus(
            id: id, changesetId: upload.request.changesetId, length: upload.request.length,
            sha256: upload.request.sha256, offset: upload.reply == nil ? upload.bytes.count : upload.request.length,
            maxChunkBytes: maxChunkBytes, expiresAt: "2099-01-01T00:00:00.000Z", committed: upload.reply != nil)
    }

    private func sha256Hex(_ bytes: [UInt8]) -> String { UploadStore.sha256Hex(bytes) }
}
