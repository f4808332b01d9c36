import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import KotaSyncCore
import NIOCore

/// Chunked, resumable pushes (`Protocol/http-api.md`, "Chunked uploads"): a changeset too large
/// to send in one request over a poor link is announced, sent in checked chunks that survive a
/// dropped connection, and committed. The commit runs the assembled bytes through the same push
/// path as `POST /v1/push` (limits, decoding, the store's idempotency by changeset id).
struct UploadAPI {
    let store: any SyncStore
    let uploads: any PartialUploads
    let config: ServerConfig
    let authenticator: Authenticator

    func register(on router: Router<ServerRequestContext>) {
        let devices = router.guarded(.device, authenticator: authenticator)
        devices.on(.post, "/v1/uploads", audit: nil, to: "push changes") { request, _, device in
            // Abandoned uploads are discarded as new ones arrive (and at start).
            try await uploads.sweepIfDue()
            let body = try await request.body.collect(upTo: 64 * 1024)
            let announced = try UploadRequest.checked(
                json: Data(body.readableBytesView), maxLength: config.limits.maxBodyBytes)
            let (status, created) = try await uploads.create(
                announced, opd: device.opd, token: device.tokenID)
            return try Self.reply(status, status: created ? .created : .ok)
        }
        devices.on(.get, "/v1/uploads/:id", audit: nil, to: "push changes") { request, context, device in
            return try Self.reply(try await uploads.status(id: try Self.id(context), opd: device.opd))
        }
        devices.on(.patch, "/v1/uploads/:id", audit: nil, to: "push changes") { request, context, device in
            let id = try Self.id(context)
            guard let offsetText = request.headers[.uploadOffset] else {
                throw SyncError(.badRequest, "Send where the chunk starts as `\(UploadHeaders.offset): <bytes>`.")
            }
            let offset = Int(
                try IntegerField(UploadHeaders.offset, 0...Int64(config.limits.maxBodyBytes)).parse(offsetText))
            // Checked chunks carry their SHA-256 and arrive whole or not at all; streamed chunks
            // carry none and keep what arrived when the connection drops mid-way.
            let sha = request.headers[.chunkSHA256]
            if let sha, sha.utf8.count != 64 {
                throw SyncError(
                    .badRequest, "Send the chunk's SHA-256 as `\(UploadHeaders.chunkSHA256): <64 hex digits>`, or none."
                )
            }
            let announced = try request.headers[.contentLength].map {
                Int(try IntegerField("Content-Length", 0...Int64.max).parse($0))
            }
            if let announced, announced > uploads.maxChunkBytes {
                throw SyncError(
                    .bodyTooLarge,
                    "The chunk is \(announced) bytes; this server accepts chunks of at most \(uploads.maxChunkBytes).")
            }
            let received = try await Self.receive(request.body, upTo: uploads.maxChunkBytes)
            let cutShort = received.error != nil || announced.map { received.bytes.count < $0 } ?? false
            if cutShort {
                // The link dropped in the middle of the chunk. A streamed chunk keeps the bytes that
                // arrived (the client asks for the offset and sends the rest); a checked one cannot
                // be checked, so it keeps nothing.
                if sha == nil, !received.bytes.isEmpty {
                    _ = try? await uploads.append(
                        id: id, opd: device.opd, offset: offset, chunk: received.bytes, sha256: nil)
                }
                throw received.error ?? SyncError(.badRequest, "The chunk ended before its Content-Length.")
            }
            do {
                let status = try await uploads.append(
                    id: id, opd: device.opd, offset: offset, chunk: received.bytes, sha256: sha)
                return try Self.reply(status)
            } catch let mismatch as OffsetMismatch {
                return Self.mismatch(mismatch, asked: offset)
            }
        }
        devices.on(.post, "/v1/uploads/:id/commit", audit: nil, to: "push changes") { request, context, device in
            let id = try Self.id(context)
            let assembled: AssembledUpload
            do {
                assembled = try await uploads.assembled(id: id, opd: device.opd)
            } catch let mismatch as OffsetMismatch {
                return Self.mismatch(mismatch, asked: nil)
            }
            switch assembled {
            case .committed(let reply):
                return Self.pushResponse(PushOutcome(reply: reply, replayed: true))
            case .complete(let bytes):
                let outcome = try await pushChangeset(bytes.source, from: device, store: store, config: config)
                try await uploads.committed(id: id, reply: outcome.reply)
                return Self.pushResponse(outcome)
            }
        }
        devices.on(.delete, "/v1/uploads/:id", audit: nil, to: "push changes") { request, context, device in
            try await uploads.delete(id: try Self.id(context), opd: device.opd)
            return Response(status: .noContent)
        }
    }

    /// The body's bytes as they arrive, at most `limit` of them (`413 body_too_large` beyond), and
    /// the error that ended them early, if the connection failed before the end.
    private static func receive(_ body: RequestBody, upTo limit: Int) async throws -> (
        bytes: [UInt8], error: (any Error)?
    ) {
        var bytes: [UInt8] = []
        do {
            for try await piece in body {
                guard bytes.count + piece.readableBytes <= limit else {
                    throw SyncError(
                        .bodyTooLarge, "The chunk is larger than this server accepts (at most \(limit) bytes).")
                }
                bytes.append(contentsOf: piece.readableBytesView)
            }
        } catch let error as SyncError {
            throw error
        } catch {
            return (bytes, error)
        }
        return (bytes, nil)
    }

    private static func id(_ context: ServerRequestContext) throws -> String {
        guard let id = context.parameters.get("id") else { throw SyncError(.badRequest, "No upload id in the path.") }
        return id
    }

    /// An `UploadStatus` as JSON, with its offset also in `Upload-Offset`.
    private static func reply(_ upload: UploadStatus, status: HTTPResponse.Status = .ok) throws -> Response {
        let data = try ProtocolJSON.encoder().encode(upload)
        return Response(
            status: status, headers: [.contentType: "application/json", .uploadOffset: String(upload.offset)],
            body: ResponseBody(byteBuffer: ByteBuffer(data: data)))
    }

    /// `409 upload_offset_mismatch` or `upload_incomplete`, with the server's offset in
    /// `Upload-Offset` so the client can go on without asking.
    private static func mismatch(_ mismatch: OffsetMismatch, asked: Int?) -> Response {
        let error =
            mismatch.incomplete
            ? SyncError(
                .uploadIncomplete,
                "The server holds \(mismatch.offset) bytes of this upload; send the rest from there, then commit.")
            : SyncError(
                .uploadOffsetMismatch,
                "The chunk starts at \(asked ?? 0) but the server holds \(mismatch.offset) bytes of this upload; go on from \(mismatch.offset)."
            )
        let body = (try? ProtocolJSON.encoder().encode(ErrorBody(error))) ?? Data()
        return Response(
            status: HTTPResponse.Status(code: error.code.httpStatus),
            headers: [.contentType: "application/json", .uploadOffset: String(mismatch.offset)],
            body: ResponseBody(byteBuffer: ByteBuffer(data: body)))
    }

    /// The push reply as `POST /v1/push` sends it.
    static func pushResponse(_ outcome: PushOutcome) -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if outcome.replayed { headers[.replay] = "true" }
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(data: outcome.reply)))
    }
}

/// The one push path, for `POST /v1/push` and for committed uploads: the size limit on the whole
/// body, decoding and checking every row within the limits (before anything is inflated, the
/// envelope), then the store, which answers a known changeset id with its stored reply and reads
/// the rows again as it merges them. Nothing holds more than the compressed body and one window
/// of the inflated payload (`CheckedPush`).
func pushChangeset(_ body: any ChangesetSource, from device: Device, store: any SyncStore, config: ServerConfig)
    async throws -> PushOutcome
{
    guard body.count <= config.limits.maxBodyBytes else {
        throw SyncError(
            .bodyTooLarge,
            "The body is \(body.count) bytes; this server accepts at most \(config.limits.maxBodyBytes).")
    }
    let checked = try CheckedPush(body, limits: config.limits.decodeLimits, schema: config.tables)
    RequestAudit.note(replica: checked.changeset.replicaID.uuidString, checked.auditDetail)
    let outcome = try await store.push(checked, from: device)
    if outcome.replayed { RequestAudit.note(["replayed": "true"]) }
    return outcome
}

/// A request body is read in place, not copied into an array.
extension ByteBuffer: ChangesetSource {
    package var count: Int { readableBytes }

    package func copyBytes(from offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(SyncError) -> Int {
        withUnsafeReadableBytes { bytes in Self.copy(bytes, from: offset, into: buffer) }
    }
}

extension HTTPField.Name {
    static let uploadOffset = Self(UploadHeaders.offset)!
    static let chunkSHA256 = Self(UploadHeaders.chunkSHA256)!
}
