import Hummingbird
import KotaSyncCore

/// Answers a request that runs longer than `limits.request_timeout_seconds` with `503
/// request_timeout`, so a slow or stalled client (a body trickled byte by byte) does not hold a
/// connection and a handler forever.
///
/// The handler is cancelled; a body still arriving stops at once. Work already inside the master
/// database (a push waiting for its group commit) finishes first: a push that commits is then
/// answered `503`, and its resend gets the stored reply.
struct TimeoutMiddleware<Context: RequestContext>: RouterMiddleware {
    let seconds: Int

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        try await withoutActuallyEscaping(next) { next in
            let handler = Handler(next: next)
            return try await withThrowingTaskGroup(of: Response?.self) { group in
                group.addTask { try await handler.next(request, context) }
                group.addTask {
                    try await Task.sleep(for: .seconds(seconds))
                    return nil
                }
                defer { group.cancelAll() }
                guard let response = try await group.next() ?? nil else {
                    throw SyncError(
                        .requestTimeout,
                        "The request took longer than the server allows (\(seconds) s). Send it again; a push already applied gets its stored reply."
                    )
                }
                return response
            }
        }
    }

    /// The next handler, for the child task that runs it. `@unchecked Sendable` because the
    /// closure is not marked `@Sendable`, but it is called once, by that one child task, and the
    /// task group awaits the child before `handle` returns, so it never outlives the call.
    private struct Handler: @unchecked Sendable {
        let next: (Request, Context) async throws -> Response
    }
}
