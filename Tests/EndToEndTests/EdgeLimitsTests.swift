import Foundation
import GRDB
import KotaSyncCore
import KotaSyncServer
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The limits that keep one client from wearing the server down (issue 14 items 10–13), on a
/// real server over real HTTP: the login limit under simultaneous attempts, the quota of
/// unfinished uploads, a flood of requests with garbage tokens, and a malformed chunked body.
struct EdgeLimitsTests {
    /// Issue 14 item 10: 40 simultaneous wrong passwords got 6–16 password checks against a limit
    /// of 5. Each attempt is counted before its password is checked, so exactly 5 are checked.
    @Test func simultaneousWrongPasswordsGetNoMoreChecksThanTheLimit() async throws {
        try await InProcessServerTests.withServer(configure: CredentialTests.limit("login_failures: 5")) {
            url, store, _ in
            _ = try await store.addUser(name: "Ani", role: .admin, password: "teh manis dingin")
            let configuration = URLSessionConfiguration.ephemeral
            configuration.httpMaximumConnectionsPerHost = 40
            let session = URLSession(configuration: configuration)
            let body = try ProtocolJSON.encoder().encode(LoginRequest(name: "Ani", password: "teh manis panas"))
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<40 {
                    group.addTask {
                        var request = URLRequest(url: url.appendingPathComponent("v1/login"))
                        request.httpMethod = "POST"
                        request.httpBody = body
                        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
                        let (_, response) = try await session.data(for: request)
                        return (response as! HTTPURLResponse).statusCode
                    }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            // A 401 is an attempt whose password was checked; a 429 was refused before.
            #expect(statuses.filter { $0 == 401 }.count == 5, "\(statuses.sorted())")
            #expect(statuses.filter { $0 == 429 }.count == 35)
        }
    }

    static func announce(
        _ url: URL, token: String,
        _ request: UploadRequest = UploadRequest(
            changesetId: UUID(), length: 1000, sha256: String(repeating: "ab", count: 32))
    ) async throws -> (status: Int, headers: [String: String], body: Data) {
        try await http(
            "POST", url.appendingPathComponent("v1/uploads"), token: token,
            body: [UInt8](try ProtocolJSON.encoder().encode(request)), contentType: "application/json")
    }

    /// Issue 14 item 11: 30 unfinished 1 MiB uploads per token were accepted and kept for a day.
    /// A token may have `max_partial_uploads_per_token` of them, all tokens together
    /// `max_partial_uploads`; the next is `429 too_many_uploads` with a `Retry-After`.
    @Test func unfinishedUploadsAreCappedPerTokenAndInTotal() async throws {
        let configure: (String) -> String = {
            CredentialTests.limit("max_partial_uploads: 3")(
                CredentialTests.limit("max_partial_uploads_per_token: 2")($0))
        }
        try await InProcessServerTests.withServer(configure: configure) { url, store, _ in
            let a = try await store.createToken(opd: "pkm-binjai-kota", expiresAt: nil).token
            let b = try await store.createToken(opd: "pkm-kebun-lada", expiresAt: nil).token
            let announcement = UploadRequest(
                changesetId: UUID(), length: 1000, sha256: String(repeating: "cd", count: 32))
            let first = try await Self.announce(url, token: a, announcement)
            #expect(first.status == 201)
            #expect(try await Self.announce(url, token: a).status == 201)
            let third = try await Self.announce(url, token: a)
            #expect(third.status == 429)
            #expect(errorCode(third.body) == "too_many_uploads")
            let wait = try #require(third.headers["retry-after"].flatMap(Int.init))
            #expect(wait > 0 && wait <= 86_400)
            // Announcing an upload again resumes it: not a new one.
            #expect(try await Self.announce(url, token: a, announcement).status == 200)
            // Another token has its own two, but the server holds three in all.
            #expect(try await Self.announce(url, token: b).status == 201)
            let total = try await Self.announce(url, token: b)
            #expect(total.status == 429)
            #expect(errorCode(total.body) == "too_many_uploads")
            // Giving one up makes room.
            let id = try ProtocolJSON.decoder().decode(UploadStatus.self, from: first.body).id
            #expect(try await http("DELETE", url.appendingPathComponent("v1/uploads/\(id)"), token: a).status == 204)
            #expect(try await Self.announce(url, token: a).status == 201)
        }
    }

    /// Issue 14 item 12: every request with a garbage token wrote an audit entry, without limit.
    /// Beyond `refused_per_minute` from one address they are answered `429` and not audited one
    /// by one; a valid token from that address is still served, other addresses (behind a
    /// trusted proxy) are not affected, and the token is in no entry.
    @Test func aFloodOfGarbageTokensIsLimitedPerAddressAndNotAuditedOneByOne() async throws {
        let configure: (String) -> String = {
            CredentialTests.limit("refused_per_minute: 5")($0)
                .replacingOccurrences(
                    of: "# trusted_proxies: [\"127.0.0.1\"]", with: "trusted_proxies: [\"127.0.0.1\"]")
        }
        try await InProcessServerTests.withServer(configure: configure) { url, store, dir in
            let valid = try await store.createToken(opd: "pkm-binjai-kota", expiresAt: nil).token
            let garbage = "kst_deadbeef_" + String(repeating: "x", count: 43)
            func pull(_ token: String, from address: String) async throws -> (
                status: Int, headers: [String: String], body: Data
            ) {
                var request = URLRequest(url: url.appendingPathComponent("v1/pull"))
                request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
                request.setValue(address, forHTTPHeaderField: "X-Forwarded-For")
                let (data, response) = try await URLSession.shared.data(for: request)
                let http = response as! HTTPURLResponse
                var headers: [String: String] = [:]
                for (k, v) in http.allHeaderFields { headers["\(k)".lowercased()] = "\(v)" }
                return (http.statusCode, headers, data)
            }
            // The allowance is per calendar minute: count the minutes the requests span (on a
            // loaded machine they may take more than one).
            func minute() -> Int { Int(Date().timeIntervalSince1970 / 60) }
            let firstMinute = minute()
            var statuses: [Int] = []
            for _ in 0..<40 { statuses.append(try await pull(garbage, from: "10.1.2.3").status) }
            let minutes = minute() - firstMinute + 1
            #expect(statuses.filter { $0 == 401 }.count <= 5 * minutes, "5 a minute over \(minutes): \(statuses)")
            #expect(statuses.filter { $0 == 429 }.count >= 40 - 5 * minutes)
            // The next refusal over the allowance (a minute that turns meanwhile gives 5 more).
            var limited = try await pull(garbage, from: "10.1.2.3")
            for _ in 0..<6 where limited.status != 429 { limited = try await pull(garbage, from: "10.1.2.3") }
            #expect(limited.status == 429)
            #expect(errorCode(limited.body) == "rate_limited")
            #expect(limited.headers["retry-after"].flatMap(Int.init) != nil)
            #expect(try await pull(valid, from: "10.1.2.3").status == 200)
            #expect(try await pull(garbage, from: "10.9.9.9").status == 401)

            try await store.flushAudit()
            let path = dir.appendingPathComponent("master.sqlite").path
            let refused = try await DatabaseQueue(path: path).read { db in
                try Int.fetchOne(
                    db, sql: "SELECT count(*) FROM _ks_audit WHERE address = '10.1.2.3' AND actor_kind = 'anonymous'")
                    ?? 0
            }
            let spanned = minute() - firstMinute + 1
            #expect(refused <= 6 * spanned, "up to 47 refused requests over \(spanned) minutes made \(refused) entries")
            for file in [path, path + "-wal"] where FileManager.default.fileExists(atPath: file) {
                let bytes = try Data(contentsOf: URL(fileURLWithPath: file))
                #expect(bytes.range(of: Data(String(repeating: "x", count: 43).utf8)) == nil, "no token in \(file)")
            }
            #expect(try await store.verifyAudit().problem == nil)
        }
    }

    /// Issue 14 item 13: a request whose chunked body is not valid HTTP got `500`; it is `400`.
    @Test func aMalformedChunkedBodyIsABadRequest() async throws {
        try await InProcessServerTests.withServer { url, store, _ in
            let token = try await store.createToken(opd: "pkm-binjai-kota", expiresAt: nil).token
            let reply = try await RawHTTP.exchange(
                port: url.port!,
                "POST /v1/push HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(token)\r\n"
                    + "Content-Type: \(changesetMediaType)\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + "4\r\nKSYN\r\nzz-not-hex\r\n\r\n")
            #expect(reply.hasPrefix("HTTP/1.1 400"), "\(reply.prefix(200))")
            #expect(reply.contains("bad_request"))
            #expect(try await http("GET", url.appendingPathComponent("v1/health")).status == 200)
        }
    }
}

/// One request written byte for byte to the server's socket, for requests a URL session will not
/// send (a broken chunked body); returns what the server answered until it closed or went quiet.
enum RawHTTP {
    /// Runs the blocking socket calls on a dispatch thread: on one of Swift's few cooperative
    /// threads they would keep an in-process server in the same process from answering.
    static func exchange(port: Int, _ request: String) async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(with: Result { try blockingExchange(port: port, request) })
            }
        }
    }

    /// Writes `bytes` to the server and closes the connection without reading the answer: a
    /// request the link cut off in the middle.
    static func sendAndClose(port: Int, _ bytes: [UInt8]) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            DispatchQueue.global().async {
                continuation.resume(
                    with: Result {
                        let fd = try connected(port: port)
                        defer { close(fd) }
                        try write(fd, bytes)
                    })
            }
        }
    }

    private static func connected(port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket() failed: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            close(fd)
            throw TestFailure("connect() failed: errno \(errno)")
        }
        return fd
    }

    private static func write(_ fd: Int32, _ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw TestFailure("send() failed: errno \(errno)") }
            sent += n
        }
    }

    private static func blockingExchange(port: Int, _ request: String) throws -> String {
        let fd = try connected(port: port)
        defer { close(fd) }
        // Not a readiness wait: a bound on how long a server that never answers is waited for, beyond
        // the server's own request timeout (120 s), which would answer 503 first.
        var timeout = timeval(tv_sec: 150, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let bytes = Array(request.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { break }
            sent += n
        }
        var reply: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { break }
            reply += buffer[0..<n]
            // One complete response (headers and a JSON body) is enough.
            if let text = String(bytes: reply, encoding: .utf8), text.contains("\r\n\r\n"), text.hasSuffix("}") {
                break
            }
        }
        return String(decoding: reply, as: UTF8.self)
    }
}
