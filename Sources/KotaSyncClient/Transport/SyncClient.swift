import Foundation
import KotaSyncCore

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The HTTP side of the protocol (`Protocol/http-api.md`), over URLSession.
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

    /// `GET /v1/pull`: one page after `cursor`.
    public func pull(after cursor: UInt64, limit: Int? = nil) async throws -> (page: Changeset, hasMore: Bool) {
        var query = [URLQueryItem(name: "after", value: String(cursor))]
        if let limit { query.append(URLQueryItem(name: "limit", value: String(limit))) }
        let (data, response) = try await send(request("v1/pull", query: query))
        let page: Changeset
        do {
            page = try ChangesetCodec.decode([UInt8](data))
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
            if let body = try? ProtocolJSON.decoder().decode(ErrorBody.self, from: data) {
                let error = body.syncError
                throw ReplicaError(
                    error.code == .unauthorized ? .unauthorized : .rejected, error.message, server: error)
            }
            let error = SyncError(http.statusCode >= 500 ? .internalError : .badRequest, "HTTP \(http.statusCode)")
            throw ReplicaError(
                http.statusCode >= 500 ? .serverUnreachable : .rejected, "The server answered HTTP \(http.statusCode).",
                server: error)
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
