import Foundation
import HTTPTypes
import Hummingbird
import KotaSyncCore
import KotaSyncDashboard
import KotaSyncServer
import Logging
import Testing
import Yams

/// `Protocol/openapi.yaml` and the server's router list the same API: every route the server
/// registers under `/v1` is a path and method of the spec, and every path and method of the spec
/// is routed. Paths outside `/v1` are the dashboard's HTML pages, which the API spec leaves out;
/// the spec must not name one.
struct RouteCoverageTests {
    static let methods = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]

    /// "METHOD /path" for every operation of the spec, paths as the spec writes them (`{id}`).
    static func specRoutes() throws -> Set<String> {
        let text = try String(
            contentsOf: packageRoot.appendingPathComponent("Protocol/openapi.yaml"), encoding: .utf8)
        let document = try #require(try Yams.load(yaml: text) as? [String: Any])
        let paths = try #require(document["paths"] as? [String: Any])
        var routes: Set<String> = []
        for (path, item) in paths {
            let operations = try #require(item as? [String: Any], "\(path)")
            for method in Self.methods where operations[method] != nil {
                routes.insert("\(method.uppercased()) \(path)")
            }
        }
        return routes
    }

    /// "METHOD /path" for every route of the router `kotasync-server serve` builds: the API and the
    /// dashboard, registered as the serve command registers them. Hummingbird writes a captured
    /// segment as `{name}`, as OpenAPI does.
    static func serverRoutes() throws -> Set<String> {
        let dir = try makeTemporaryDirectory()
        let config = try ServerConfig.load(from: try sampleConfig(in: dir, scoped: true))
        let store = try SQLiteMasterStore(path: dir.appendingPathComponent("master.sqlite").path, config: config)
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        let logins = StaffLogins(store: store, limits: config.limits)
        let dashboard = try Dashboard(store: store, sessions: StaffSessions(logins), logger: logger)
        var captured: Router<ServerRequestContext>?
        _ = SyncServer.application(
            config: config, store: store, port: 0, logger: logger, logins: logins,
            routes: { router in
                captured = router
                dashboard.register(on: router)
            })
        let router = try #require(captured)
        return Set(router.routes.map { "\($0.method.rawValue) \($0.path.description)" })
    }

    @Test func everyRouteTheServerRegistersIsInOpenAPIAndEveryOperationIsRouted() throws {
        let spec = try Self.specRoutes()
        let server = try Self.serverRoutes()
        let api = server.filter { $0.split(separator: " ")[1].hasPrefix("/v1/") }
        let dashboard = server.subtracting(api)

        #expect(api.subtracting(spec).isEmpty, "routed but not in openapi.yaml: \(api.subtracting(spec).sorted())")
        #expect(spec.subtracting(api).isEmpty, "in openapi.yaml but not routed: \(spec.subtracting(api).sorted())")
        #expect(spec.allSatisfy { $0.split(separator: " ")[1].hasPrefix("/v1/") }, "the API spec names only /v1 paths")
        // The only routes left out of the spec are the dashboard's pages.
        #expect(!dashboard.isEmpty)
        #expect(
            dashboard.allSatisfy {
                let path = $0.split(separator: " ")[1]
                return path == "/" || path == "/dashboard" || path.hasPrefix("/dashboard/")
            }, "a route outside /v1 that is not the dashboard's: \(dashboard.sorted())")
        #expect(spec.count >= 19)
    }

    /// The spec's operations, each sent to the real server once with no token: every one is
    /// routed (not `404`/`405`), so a route the router lists is one requests reach.
    @Test func everyOperationOfTheSpecReachesARouteOfTheRealServer() async throws {
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(config: try sampleConfig(in: dir), directory: dir)
        defer { server.stop() }
        for route in try Self.specRoutes().sorted() {
            let parts = route.split(separator: " ")
            let path = parts[1].replacingOccurrences(of: "{id}", with: "1")
            let answer = try await http(String(parts[0]), URL(string: server.url.absoluteString + path)!)
            // Health needs no token; a login with no body is a bad request; everything else
            // asks for a token first.
            let expected = path == "/v1/health" ? 200 : path == "/v1/login" ? 400 : 401
            #expect(answer.status == expected, "\(route) without a token answered \(answer.status)")
        }
    }

    /// A path the server serves, asked with another method: `405 method_not_allowed` with `Allow`
    /// naming what it takes; an unknown path stays `404 not_found`.
    @Test func aKnownPathWithAnotherMethodIs405WithAllow() async throws {
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(config: try sampleConfig(in: dir), directory: dir)
        defer { server.stop() }
        let base = server.url.absoluteString
        let cases: [(String, String, String)] = [
            ("DELETE", "/v1/push", "POST"), ("GET", "/v1/push", "POST"), ("POST", "/v1/pull", "GET"),
            ("PUT", "/v1/uploads/0123456789abcdef0123456789abcdef", "DELETE, GET, PATCH"),
            ("GET", "/v1/admin/tokens/abc/revoke", "POST"), ("PATCH", "/v1/admin/tokens", "GET, POST"),
            ("DELETE", "/dashboard", "GET"),
        ]
        for (method, path, allow) in cases {
            let answer = try await http(method, URL(string: base + path)!)
            #expect(answer.status == 405, "\(method) \(path): \(answer.status)")
            #expect(answer.headers["allow"] == allow, "\(method) \(path): Allow \(answer.headers["allow"] ?? "none")")
            #expect(errorCode(answer.body) == "method_not_allowed")
        }
        for (method, path) in [("GET", "/v1/nothing"), ("DELETE", "/v1/pull/extra"), ("GET", "/v2/push")] {
            let answer = try await http(method, URL(string: base + path)!)
            #expect(answer.status == 404, "\(method) \(path): \(answer.status)")
            #expect(errorCode(answer.body) == "not_found")
        }
        #expect(try await http("GET", URL(string: base + "/v1/health")!).status == 200)
    }

    /// The refusals http-api.md and openapi.yaml list for the upload announcement and the JSON
    /// bodies with a 16 KiB cap are the ones the server gives.
    @Test func refusalsOfAnnouncementsLoginsAndTokenRequestsAreTheDocumentedOnes() async throws {
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(config: try sampleConfig(in: dir), directory: dir)
        defer { server.stop() }
        let device = try server.token(opd: "pkm-binjai-kota")
        let admin = try server.staffToken("Ani", role: "admin")
        let uploads = server.url.appendingPathComponent("v1/uploads")
        let sha = String(repeating: "a", count: 64)
        let id = UUID().uuidString
        let announcements: [(String, Int, String)] = [
            ("{\"changeset_id\": \"\(id)\", \"length\": 0, \"sha256\": \"\(sha)\"}", 400, "bad_request"),
            ("{\"changeset_id\": \"\(id)\", \"length\": -5, \"sha256\": \"\(sha)\"}", 400, "bad_request"),
            ("{\"changeset_id\": \"\(id)\", \"length\": 10, \"sha256\": \"abc\"}", 400, "bad_request"),
            (
                "{\"changeset_id\": \"\(id)\", \"length\": 10, \"sha256\": \"\(String(repeating: "g", count: 64))\"}",
                400,
                "bad_request"
            ),
            ("not json", 400, "bad_request"),
            ("{\"changeset_id\": \"x\", \"length\": 10, \"sha256\": \"\(sha)\"}", 400, "bad_request"),
            ("{\"changeset_id\": \"\(id)\", \"length\": 999999999999, \"sha256\": \"\(sha)\"}", 413, "body_too_large"),
        ]
        for (body, status, code) in announcements {
            let answer = try await http(
                "POST", uploads, token: device, body: Array(body.utf8), contentType: "application/json")
            #expect(answer.status == status, "\(body): \(answer.status)")
            #expect(errorCode(answer.body) == code, "\(body)")
        }
        let big = Array("{\"name\": \"\(String(repeating: "x", count: 17 * 1024))\", \"password\": \"p\"}".utf8)
        let login = try await http(
            "POST", server.url.appendingPathComponent("v1/login"), body: big, contentType: "application/json")
        #expect(login.status == 413)
        #expect(errorCode(login.body) == "body_too_large")
        let tokens = server.url.appendingPathComponent("v1/admin/tokens")
        let huge = try await http("POST", tokens, token: admin, body: big, contentType: "application/json")
        #expect(huge.status == 413)
        #expect(errorCode(huge.body) == "body_too_large")
        // CreateTokenRequest: one of two shapes, nothing else.
        for body in [
            "{}", "{\"opd\": \"dinkes\", \"staff\": \"Ani\", \"role\": \"viewer\"}", "{\"staff\": \"Ani\"}",
            "{\"opd\": \"dinkes\", \"role\": \"viewer\"}", "{\"opd\": \"dinkes\", \"role\": \"bogus\"}",
            "{\"staff\": \"Ani\", \"role\": \"device\"}", "{\"staff\": \"   \", \"role\": \"viewer\"}",
        ] {
            let answer = try await http(
                "POST", tokens, token: admin, body: Array(body.utf8), contentType: "application/json")
            #expect(answer.status == 400, "\(body): \(answer.status)")
            #expect(errorCode(answer.body) == "bad_request", "\(body)")
        }
        for body in ["{\"opd\": \"dinkes\"}", "{\"staff\": \"Ani\", \"role\": \"viewer\", \"expires_days\": 30}"] {
            let answer = try await http(
                "POST", tokens, token: admin, body: Array(body.utf8), contentType: "application/json")
            #expect(answer.status == 201, "\(body): \(answer.status)")
        }
    }
}
