import Crypto
import Foundation
import KotaSyncCore

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The HTTP side of the protocol (`Protocol/http-api.md`), over URLSession.
///
/// Every failure is thrown as a ``ReplicaError``; ``Synchronizer`` decides with ``RetryPolicy``
/// whether to try again. One failure cannot be caught: FoundationNetworking on Linux (Swift 6.3)
/// traps when a connection ends in the middle of a response's header block
/// (swift-corelibs-foundation#5285). Nothing is lost then, since the outbox, the upload's
/// offset and every applied page are on disk before the next request, and the next run resumes.
public struct SyncClient: Sendable {
    public let baseURL: URL
    let token: String
    let session: URLSession
    /// What the device tells the server about itself on every request (`KotaSync-*` headers,
    /// shown on the Command Center's overview): never values, only ids, counts and codes.
    public var deviceHeaders: [String: String] = [:]

    public init(baseURL: URL, token: String, timeout: TimeInterval = 60) {
        self.baseURL = baseURL
        self.token = token
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = timeout
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        session = URLSession(configuration: configuration)
    }

    /// `GET /v1/schema`.
    public func schema() async throws -> SchemaDocument {
        let (data, _) = try await send(request("v1/schema"))
        return try decode(SchemaDocument.self, data)
    }

    /// `POST /v1/push`: the reply, and whether it repeats an earlier delivery's.
    public func push(_ body: [UInt8]) async throws -> (reply: PushReply, replayed: Bool) {
        var req = request("v1/push")
        req.httpMethod = "POST"
        req.setValue(changesetMediaType, forHTTPHeaderField: "Content-Type")
        req.httpBody = Data(body)
        let (data, response) = try await send(req)
        return (try decode(PushReply.self, data), response.value(forHTTPHeaderField: PullHeaders.replay) == "true")
    }

    /// `POST /v1/uploads`: announces a changeset to be sent in chunks. Announcing the same
    /// changeset again returns the same upload, with the bytes the server already holds.
    public func startUpload(_ announcement: UploadRequest) async throws -> UploadStatus {
        var req = request("v1/uploads")
        req.httpMethod = "POST"
        req.setValue("application/json", forHTTPHeaderField: "Content-Type")
        req.httpBody = try ProtocolJSON.encoder().encode(announcement)
        let (data, _) = try await send(req)
        return try decode(UploadStatus.self, data)
    }

    /// `GET /v1/uploads/{id}`: how many bytes of the upload the server holds.
    public func uploadStatus(id: String) async throws -> UploadStatus {
        let (data, _) = try await send(request("v1/uploads/\(id)"))
        return try decode(UploadStatus.self, data)
    }

    /// `PATCH /v1/uploads/{id}`: appends `chunk` at `offset`, with its SHA-256 for the server to
    /// check. Returns the upload's state after it.
    public func sendChunk(upload id: String, offset: Int, _ chunk: ArraySlice<UInt8>) async throws -> UploadStatus {
        var req = request("v1/uploads/\(id)")
        req.httpMethod = "PATCH"
        req.setValue(UploadHeaders.chunkMediaType, forHTTPHeaderField: "Content-Type")
        req.setValue(String(offset), forHTTPHeaderField: UploadHeaders.offset)
        req.setValue(sha256Hex(chunk), forHTTPHeaderField: UploadHeaders.chunkSHA256)
        req.httpBody = Data(chunk)
        let (data, _) = try await send(req)
        return try decode(UploadStatus.self, data)
    }

    /// `POST /v1/uploads/{id}/commit`: pushes the assembled changeset; the reply is that of
    /// `POST /v1/push`.
    public func commitUpload(id: String) async throws -> (reply: PushReply, replayed: Bool) {
        var req = request("v1/uploads/\(id)/commit")
        req.httpMethod = "POST"
        let (data, response) = try await send(req)
        return (try decode(PushReply.self, data), response.value(forHTTPHeaderField: PullHeaders.replay) == "true")
    }

    /// `DELETE /v1/uploads/{id}`: gives an upload up.
    public func cancelUpload(id: String) async throws {
        var req = request("v1/uploads/\(id)")
        req.httpMethod = "DELETE"
        _ = try await send(req)
    }

    /// `GET /v1/pull`: one page after `cursor`.
    public func pull(after cursor: UInt64, limit: Int? = nil) async throws -> (page: Changeset, hasMore: Bool) {
        var query = [URLQueryItem(name: "after", value: String(cursor))]
        if let limit { query.append(URLQueryItem(name: "limit", value: String(limit))) }
        let (data, response) = try await send(request("v1/pull", query: query))
        let page: Changeset
        do {
            page = try ChangesetCodec.decode([UInt8](data), limits: .pullPage)
        } catch {
            throw ReplicaError(.invalidResponse, "The server's pull page does not decode: \(error.message)")
        }
        return (page, response.value(forHTTPHeaderField: PullHeaders.hasMore) == "true")
    }

    /// `GET /v1/conflicts`: conflicts of `replica` after id `after`.
    public func conflicts(replica: UUID, after: Int64) async throws -> ConflictList {
        let (data, _) = try await send(
            request(
                "v1/conflicts",
                query: [
                    URLQueryItem(name: "replica", value: replica.uuidString),
                    URLQueryItem(name: "after", value: String(after)),
                ]))
        return try decode(ConflictList.self, data)
    }

    private func request(_ path: String, query: [URLQueryItem] = []) -> URLRequest {
        var components = URLComponents(url: baseURL.appendingPathComponent(path), resolvingAgainstBaseURL: false)!
        if !query.isEmpty { components.queryItems = query }
        var req = URLRequest(url: components.url!)
        req.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        for (name, value) in deviceHeaders { req.setValue(value, forHTTPHeaderField: name) }
        return req
    }

    private func send(_ request: URLRequest) async throws -> (Data, HTTPURLResponse) {
        let data: Data
        let response: URLResponse
        do {
            (data, response) = try await session.data(for: request)
        } catch {
            throw ReplicaError(
                .serverUnreachable,
                "Cannot reach the server at \(baseURL.absoluteString) (\(error.localizedDescription)). Local changes are kept; sync again when the connection is back."
            )
        }
        guard let http = response as? HTTPURLResponse else {
            throw ReplicaError(.invalidResponse, "The server's answer is not HTTP.")
        }
        guard (200..<300).contains(http.statusCode) else {
            let retryAfter = http.value(forHTTPHeaderField: "Retry-After").flatMap(Double.init)
            if let body = try? ProtocolJSON.decoder().decode(ErrorBody.self, from: data) {
                let error = body.syncError
                throw ReplicaError(
                    error.code == .unauthorized ? .unauthorized : .rejected, error.message, server: error,
                    retryAfter: retryAfter)
            }
            // Not the protocol's error body (a proxy, or a body cut short): judged by the status.
            let code: SyncError.Code =
                switch http.statusCode {
                case 429: .rateLimited
                case 500...: .internalError
                default: .badRequest
                }
            throw ReplicaError(
                http.statusCode >= 500 ? .serverUnreachable : .rejected, "The server answered HTTP \(http.statusCode).",
                server: SyncError(code, "HTTP \(http.statusCode)"), retryAfter: retryAfter)
        }
        return (data, http)
    }

    private func decode<T: Decodable>(_ type: T.Type, _ data: Data) throws -> T {
        do {
            return try ProtocolJSON.decoder().decode(type, from: data)
        } catch {
            throw ReplicaError(.invalidResponse, "The server's answer is not valid \(T.self) JSON: \(error)")
        }
    }
}

/// SHA-256 of `bytes` as 64 lower-case hex digits, as the upload routes carry it.
func sha256Hex(_ bytes: some DataProtocol) -> String {
    SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
}
