import Foundation
import HTTPTypes
import Hummingbird
import KotaSyncCore
import Logging
import NIOCore

/// The sync endpoints of `Protocol/http-api.md`, on a Hummingbird router.
struct SyncAPI {
    let store: any SyncStore
    let config: ServerConfig
    let authenticator: Authenticator

    func register(on router: Router<ServerRequestContext>) {
        router.get("/v1/health") { _, _ in
            try json(["status": "ok", "server": config.name])
        }
        let devices = router.guarded(.device, authenticator: authenticator)
        // Staff tokens open the review API only; refusing them here keeps `kotasync init` from
        // making a replica that could never sync.
        devices.on(.get, "/v1/schema", audit: "schema", to: "make a replica") { _, _, device in
            try json(
                SchemaDocument(
                    server: config.name, opd: device.opd, tables: config.tables, limits: config.limits.published,
                    schemaVersion: config.schemaVersion, minClientSchema: config.minClientSchema))
        }
        devices.on(.post, "/v1/push", audit: "push", to: "push changes") { request, _, device in
            if let length = request.headers[.contentLength].flatMap(Int.init), length > config.limits.maxBodyBytes {
                throw SyncError(
                    .bodyTooLarge,
                    "The body is \(length) bytes; this server accepts at most \(config.limits.maxBodyBytes).")
            }
            let buffer = try await request.body.collect(upTo: config.limits.maxBodyBytes)
            let outcome = try await pushChangeset(buffer, from: device, store: store, config: config)
            // After the push: a replica's first push is what registers it.
            await noteReport(request, from: device, cursor: nil)
            return UploadAPI.pushResponse(outcome)
        }
        devices.on(.get, "/v1/pull", audit: "pull", to: "pull rows") { request, _, device in
            let after: UInt64 = try integer(request, "after", default: 0, minimum: 0)
            let limit: Int = try integer(
                request, "limit", default: config.limits.maxPullPage, minimum: 1, lowering: config.limits.maxPullPage)
            await noteReport(request, from: device, cursor: after)
            let page = try await store.pull(after: after, limit: limit, opd: device.opd)
            RequestAudit.note(["after": String(after), "next": String(page.nextCursor), "rows": String(page.rows)])
            return Response(
                status: .ok,
                headers: [
                    .contentType: changesetMediaType,
                    .nextCursor: String(page.nextCursor),
                    .hasMore: page.hasMore ? "true" : "false",
                ],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: page.body)))
        }
        let noteReplica: @Sendable (Request, ServerRequestContext) -> Void = { request, _ in
            RequestAudit.note(replica: request.uri.queryParameters.get("replica").map { String($0.prefix(64)) })
        }
        devices.on(
            .get, "/v1/conflicts", audit: "conflicts",
            to: "list a replica's conflicts (staff use GET /v1/review/conflicts)", noting: noteReplica
        ) { request, _, device in
            guard let text = request.uri.queryParameters.get("replica"), let replica = UUID(uuidString: text) else {
                throw SyncError(.badRequest, "Pass the replica id as `replica=<uuid>`.")
            }
            let after: Int64 = try integer(request, "after", default: 0, minimum: 0)
            let limit: Int = try integer(request, "limit", default: 500, minimum: 1, lowering: 1000)
            return try json(try await store.conflicts(involving: replica, of: device, after: after, limit: limit))
        }
    }

    /// Keeps what the device says about itself (`KotaSync-*` headers) for the overview: folded
    /// into the store's next audit batch, so the request waits for no write; a failure to keep it
    /// is not the request's. The store keeps it only for a replica of the device's own OPD (the
    /// access service decides, ``AccessPolicy/acceptsReport(from:aboutReplicaOf:)``); the reply
    /// is the same either way.
    private func noteReport(_ request: Request, from device: Device, cursor: UInt64?) async {
        guard let text = request.headers[.init(DeviceHeaders.replica)!], let replica = UUID(uuidString: text) else {
            return
        }
        let header = { (name: String) in request.headers[.init(name)!].map { String($0.prefix(100)) } }
        let report = DeviceReport(
            replicaId: replica, opd: device.opd, clientVersion: header(DeviceHeaders.client),
            pending: header(DeviceHeaders.pending).flatMap(Int.init), lastError: header(DeviceHeaders.lastError),
            cursor: cursor)
        try? await store.record(report, pulled: cursor != nil)
    }
}

/// A `200` response with `value` as the protocol's JSON.
func json(_ value: some Encodable) throws -> Response {
    let data = try ProtocolJSON.encoder().encode(value)
    return Response(
        status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(data: data))
    )
}

extension HTTPField.Name {
    static let replay = Self(PullHeaders.replay)!
    static let nextCursor = Self(PullHeaders.nextCursor)!
    static let hasMore = Self(PullHeaders.hasMore)!
}
