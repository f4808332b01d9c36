import Foundation
import Hummingbird
import KotaSyncCore
import Logging
import NIOCore

/// The Command Center's review queue over HTTP (`Protocol/http-api.md`, "Review API"): staff
/// list and read conflict records (viewer and above) and resolve them (reviewer and above).
struct ReviewAPI {
    let store: any ReviewStore
    let logger: Logger

    /// The most bytes a resolve request may have: a decision with a few corrected values.
    static let maxResolveBodyBytes = 1 << 20

    let authenticator: Authenticator

    func register(on router: Router<ServerRequestContext>) {
        let viewers = router.guarded(.staff(.viewer), authenticator: authenticator)
        let reviewers = router.guarded(.staff(.reviewer), authenticator: authenticator)
        let noteID: @Sendable (Request, ServerRequestContext) -> Void = { _, context in
            RequestAudit.note(["conflict_id": context.parameters.get("id") ?? ""])
        }
        viewers.on(.get, "/v1/review/conflicts", audit: "review.list", to: "read the review queue") { request, _, _ in
            let query = request.uri.queryParameters
            let filter = ReviewFilter(
                status: try nonEmpty(query.get("status"), "status"), table: try nonEmpty(query.get("table"), "table"),
                opd: try nonEmpty(query.get("opd"), "opd"),
                after: try integer(request, "after", default: 0, minimum: 0),
                limit: try integer(request, "limit", default: 100, minimum: 1, lowering: 1000))
            return try json(try await store.reviewConflicts(filter))
        }
        viewers.on(
            .get, "/v1/review/conflicts/:id", audit: "review.show", to: "read the review queue", noting: noteID
        ) { _, context, _ in
            return try json(try await store.reviewConflict(id: try recordID(context)))
        }
        reviewers.on(
            .post, "/v1/review/conflicts/:id/resolve", audit: "review.resolve", to: "resolve conflicts",
            noting: noteID
        ) { request, context, reviewer in
            let id = try recordID(context)
            let body = try await request.body.collect(upTo: Self.maxResolveBodyBytes)
            let decision: ResolveRequest
            do {
                decision = try ProtocolJSON.decoder().decode(ResolveRequest.self, from: Data(body.readableBytesView))
            } catch {
                throw SyncError(
                    .badRequest,
                    "The body must be a JSON ResolveRequest: {\"take\": \"local\"|\"remote\"|\"merged\", \"set\": {column: value}, \"note\": text} (\(describe(error)))."
                )
            }
            // An unknown id is `not_found` whatever the body says, before anything is decided.
            _ = try await store.reviewConflict(id: id)
            RequestAudit.note(["take": decision.take.rawValue])
            let resolved = try await store.resolveConflict(id: id, decision, by: reviewer.name ?? reviewer.tokenID)
            RequestAudit.note([
                "table": resolved.table, "master_version": resolved.resolution?.masterVersion.map(String.init) ?? "-",
            ])
            // Who decided what, for the audit trail; values stay out of the log (patient data).
            logger.info(
                "conflict resolved",
                metadata: [
                    "conflict_id": "\(id)", "take": "\(decision.take.rawValue)", "token_id": "\(reviewer.tokenID)",
                    "master_version": "\(resolved.resolution?.masterVersion.map(String.init) ?? "-")",
                ])
            return try json(resolved)
        }
    }

    /// The `{id}` path segment: a record id is an integer of at least 1.
    private func recordID(_ context: ServerRequestContext) throws -> Int64 {
        let text = context.parameters.get("id") ?? ""
        guard let id = Int64(text), id >= 1 else {
            throw SyncError(.badRequest, "`\(text)` is not a conflict record id (an integer of at least 1).")
        }
        return id
    }

    /// A text query parameter; present but empty is a mistake, not "all".
    private func nonEmpty(_ value: String?, _ name: String) throws -> String? {
        guard let value else { return nil }
        guard !value.isEmpty else { throw SyncError(.badRequest, "`\(name)` is empty; leave it out to list all.") }
        return value
    }

    /// What was wrong with a JSON body, in a form a person can act on.
    private func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): "missing `\(key.stringValue)`"
        case DecodingError.dataCorrupted(let context), DecodingError.typeMismatch(_, let context),
            DecodingError.valueNotFound(_, let context):
            ([context.codingPath.map(\.stringValue).joined(separator: ".")].filter { !$0.isEmpty }
                + [context.debugDescription]).joined(separator: ": ")
        default: "not valid JSON"
        }
    }
}
