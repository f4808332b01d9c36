import Foundation
import HTTPTypes
import Hummingbird
import KotaSyncCore
import NIOCore
import Synchronization

/// The paths a router serves and their methods, read from the router once every route is
/// registered (``load(_:)``), so that a request for a known path with another method can be told
/// from a request for an unknown path.
final class RouteTable: Sendable {
    private let routes = Mutex<[(path: RouterPath, methods: [HTTPRequest.Method])]>([])

    /// Takes the router's routes; call it after the last route is registered.
    func load<Context>(_ router: Router<Context>) {
        var byPath: [String: (path: RouterPath, methods: [HTTPRequest.Method])] = [:]
        for route in router.routes {
            byPath[route.path.description, default: (route.path, [])].methods.append(route.method)
        }
        routes.withLock { $0 = Array(byPath.values) }
    }

    /// The names of the methods served at `path` (a request's path, without its query), sorted;
    /// empty when no route matches it.
    func methods(at path: String) -> [String] {
        let segments = path.split(separator: "/", omittingEmptySubsequences: true)
        var names: Set<String> = []
        routes.withLock { routes in
            for route in routes where Self.matches(route.path, segments) {
                for method in route.methods { names.insert(method.rawValue) }
            }
        }
        return names.sorted()
    }

    private static func matches(_ route: RouterPath, _ segments: [Substring]) -> Bool {
        var i = 0
        for element in route.components {
            if element.description == "**" { return i < segments.count }
            guard i < segments.count, element ~= segments[i] else { return false }
            i += 1
        }
        return i == segments.count
    }
}

/// Answers a request for a path the router serves, with a method it does not serve there, `405
/// method_not_allowed` with an `Allow` header (RFC 9110 §15.5.6) instead of the router's `404`.
///
/// It only looks at requests the router found no route for (its `404`), so the routes it serves
/// cost nothing; the router's routes come from the ``RouteTable`` filled after registration.
struct MethodNotAllowedMiddleware<Context: RequestContext>: RouterMiddleware {
    let table: RouteTable

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            let allowed = table.methods(at: request.uri.path)
            guard !allowed.isEmpty else { throw error }
            let names = allowed.joined(separator: ", ")
            let refusal = SyncError(
                .methodNotAllowed, "\(request.uri.path) does not take \(request.method.rawValue); it takes \(names).")
            let body = (try? ProtocolJSON.encoder().encode(ErrorBody(refusal))) ?? Data()
            return Response(
                status: .methodNotAllowed, headers: [.contentType: "application/json", .allow: names],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
        }
    }
}
