import Crypto
import Foundation
import KotaSyncCore
import NIOHTTP1
import Synchronization

/// The HTTP side of the protocol (`Protocol/http-api.md`), over an ``HTTPTransport``.
///
/// Every failure is thrown as a ``ReplicaError``; ``Synchronizer`` decides with ``RetryPolicy``
/// whether to try again. A request is abandoned only when its connection stops moving bytes for
/// the transport's idle limit; bodies are streamed both ways.
public struct SyncClient: Sendable {
    public let baseURL: URL
    let token: String
    /// The connections; one per process.
    public let transport: HTTPTransport
    /// What the device tells the server about itself on every request (`KotaSync-*` headers,
    /// shown on the Command Center's overview): never values, only ids, counts and codes.
    public var deviceHeaders: [String: String] = [:]
    /// Counts the bytes each request moves, and those of failed requests as resent.
    public let meter: LinkMeter

    /// A client of the server at `baseURL` with a device token, over `transport`, counting on
    /// `meter`.
    public init(baseURL: URL, token: String, transport: HTTPTransport = .shared, meter: LinkMeter = LinkMeter()) {
        self.baseURL = baseURL
        self.token = token
        self.transport = transport
        self.meter = meter
    }

    /// `GET /v1/schema`.
    public func schema() async throws -> SchemaDocument {
        try decode(SchemaDocument.self, try await send(.GET, "v1/schema"))
    }

    /// `POST /v1/push`: the reply, and whether it repeats an earlier delivery's.
    public func push(_ body: [UInt8]) async throws -> (reply: PushReply, replayed: Bool) {
        let response = try await send(
            .POST, "v1/push", headers: [("Content-Type", changesetMediaType)], body: body[...], limit: Self.replyLimit)
        return (try decode(PushReply.self, response), response.header(PullHeaders.replay) == "true")
    }

    /// `POST /v1/uploads`: announces a changeset to be sent in chunks. Announcing the same
    /// changeset again returns the same upload, with the bytes the server already holds.
    public func startUpload(_ announcement: UploadRequest) async throws -> UploadStatus {
        let json = [UInt8](try ProtocolJSON.encoder().encode(announcement))
        let response = try await send(
            .POST, "v1/uploads", headers: [("Content-Type", "application/json")], body: json[...])
        return try decode(UploadStatus.self, response)
    }

    /// `GET /v1/uploads/{id}`: how many bytes of the upload the server holds.
    public func uploadStatus(id: String) async throws -> UploadStatus {
        try decode(UploadStatus.self, try await send(.GET, "v1/uploads/\(id)"))
    }

    /// `PATCH /v1/uploads/{id}`: appends `chunk` at `offset`, streamed. Returns the upload's state
    /// after it.
    public func sendChunk(upload id: String, offset: Int, _ chunk: ArraySlice<UInt8>) async throws -> UploadStatus {
        // A streamed chunk (no `KotaSync-Chunk-SHA256`): when the link drops in the middle, the
        // server keeps what arrived, so a drop costs the bytes in flight, not the whole chunk.
        // The whole changeset's SHA-256, announced, is checked at the commit.
        let headers = [("Content-Type", UploadHeaders.chunkMediaType), (UploadHeaders.offset, String(offset))]
        return try decode(UploadStatus.self, try await send(.PATCH, "v1/uploads/\(id)", headers: headers, body: chunk))
    }

    /// `POST /v1/uploads/{id}/commit`: pushes the assembled changeset; the reply is that of
    /// `POST /v1/push`.
    public func commitUpload(id: String) async throws -> (reply: PushReply, replayed: Bool) {
        let response = try await send(.POST, "v1/uploads/\(id)/commit", limit: Self.replyLimit)
        return (try decode(PushReply.self, response), response.header(PullHeaders.replay) == "true")
    }

    /// `DELETE /v1/uploads/{id}`: gives an upload up.
    public func cancelUpload(id: String) async throws {
        _ = try await send(.DELETE, "v1/uploads/\(id)")
    }

    /// `GET /v1/pull`: one page after `cursor`.
    public func pull(after cursor: UInt64, limit: Int? = nil) async throws -> (page: Changeset, hasMore: Bool) {
        do {
            let (page, hasMore, _) = try await pullPage(after: cursor, limit: limit)
            return (page, hasMore)
        } catch let cut as PageCut {
            throw cut.error
        }
    }

    /// `GET /v1/pull`: one page after `cursor`, and its encoded size. A page cut off on the way
    /// is thrown as ``PageCut``, with the bytes of it that arrived.
    func pullPage(after cursor: UInt64, limit: Int?) async throws -> (page: Changeset, hasMore: Bool, bytes: Int) {
        var query = [("after", String(cursor))]
        if let limit { query.append(("limit", String(limit))) }
        let moved = Tally()
        let response: HTTPTransport.Response
        do {
            response = try await send(.GET, "v1/pull", query: query, limit: Self.pageLimit, page: true, tally: moved)
        } catch let error as ReplicaError where error.code == .serverUnreachable && error.server == nil {
            throw PageCut(error: error, received: moved.counts.withLock { $0.received }, limit: limit)
        }
        let page: Changeset
        do {
            page = try ChangesetCodec.decode(response.body, limits: .pullPage)
        } catch {
            throw ReplicaError(.invalidResponse, "The server's pull page does not decode: \(error.message)")
        }
        return (page, response.header(PullHeaders.hasMore) == "true", response.body.count)
    }

    /// `GET /v1/conflicts`: conflicts of `replica` after id `after`.
    public func conflicts(replica: UUID, after: Int64) async throws -> ConflictList {
        let response = try await send(
            .GET, "v1/conflicts", query: [("replica", replica.uuidString), ("after", String(after))],
            limit: Self.replyLimit)
        return try decode(ConflictList.self, response)
    }

    /// The most bytes of a JSON answer read (a push reply lists its conflicts; a conflict list
    /// holds at most 1,000 records).
    static let replyLimit = 64 * 1024 * 1024
    /// The most bytes of a pull page read: a page of the server's largest size.
    static let pageLimit = 512 * 1024 * 1024
    /// The most bytes of any other answer (an upload's status, an error body, the schema).
    static let smallLimit = 4 * 1024 * 1024

    /// Sends one request and returns the answer if its status is 2xx; any other outcome is thrown
    /// as a ``ReplicaError``. The bytes it moves are counted on ``meter``; a request that fails on
    /// the way counts them as resent.
    private func send(
        _ method: HTTPMethod, _ path: String, query: [(String, String)] = [], headers: [(String, String)] = [],
        body: ArraySlice<UInt8>? = nil, limit: Int = Self.smallLimit, page: Bool = false, tally: Tally = Tally()
    ) async throws -> HTTPTransport.Response {
        var all = [("Authorization", "Bearer \(token)")] + headers
        for (name, value) in deviceHeaders.sorted(by: { $0.key < $1.key }) { all.append((name, value)) }
        let moved = tally
        let meter = self.meter
        meter.count { $0.requests += 1 }
        defer {
            if page {
                let received = moved.counts.withLock { $0.received }
                meter.count { $0.largestPage = max($0.largestPage, received) }
            }
        }
        let response: HTTPTransport.Response
        do {
            response = try await transport.exchange(
                method, url(path, query: query), headers: all, body: body, limit: limit,
                moved: { sent, received in
                    moved.counts.withLock {
                        $0.sent += sent
                        $0.received += received
                    }
                    meter.count {
                        $0.bytesSent += sent
                        $0.bytesReceived += received
                    }
                })
        } catch {
            let lost = moved.counts.withLock { $0.sent + $0.received }
            meter.count { $0.bytesResent += lost }
            if case .tooLarge = error {
                throw ReplicaError(.invalidResponse, "The server's answer is too large: \(error).")
            }
            throw ReplicaError(
                .serverUnreachable,
                "Cannot reach the server at \(baseURL.absoluteString) (\(error)). Local changes are kept; sync again when the connection is back."
            )
        }
        guard (200..<300).contains(response.status) else {
            let retryAfter = response.header("Retry-After").flatMap(Double.init)
            if let body = try? ProtocolJSON.decoder().decode(ErrorBody.self, from: Data(response.body)) {
                let error = body.syncError
                throw ReplicaError(
                    error.code == .unauthorized ? .unauthorized : .rejected, error.message, server: error,
                    retryAfter: retryAfter)
            }
            // Not the protocol's error body (a proxy, or a body cut short): judged by the status.
            let code: SyncError.Code =
                switch response.status {
                case 429: .rateLimited
                case 500...: .internalError
                default: .badRequest
                }
            throw ReplicaError(
                response.status >= 500 ? .serverUnreachable : .rejected, "The server answered HTTP \(response.status).",
                server: SyncError(code, "HTTP \(response.status)"), retryAfter: retryAfter)
        }
        return response
    }

    /// The URL of `path` under the base URL, with `query` (values percent-encoded).
    private func url(_ path: String, query: [(String, String)]) -> String {
        var components = URLComponents(url: baseURL.appendingPathComponent(path), resolvingAgainstBaseURL: false)!
        if !query.isEmpty { components.queryItems = query.map { URLQueryItem(name: $0.0, value: $0.1) } }
        return components.url!.absoluteString
    }

    private func decode<T: Decodable>(_ type: T.Type, _ response: HTTPTransport.Response) throws -> T {
        do {
            return try ProtocolJSON.decoder().decode(type, from: Data(response.body))
        } catch {
            throw ReplicaError(.invalidResponse, "The server's answer is not valid \(T.self) JSON: \(error)")
        }
    }
}

/// A pull page that did not arrive whole: the link's error, and how much of the page came.
struct PageCut: Error {
    var error: ReplicaError
    var received: Int
    var limit: Int?
}

/// The bytes one request moved, each way.
final class Tally: Sendable {
    let counts = Mutex((sent: 0, received: 0))
}

/// SHA-256 of `bytes` as 64 lower-case hex digits, as the upload routes carry it.
func sha256Hex(_ bytes: some DataProtocol) -> String {
    SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
}
