import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A TCP proxy on loopback between a client and the server that breaks the link on purpose:
/// it cuts, delays, stalls, truncates, duplicates and resets connections as its plan says, can
/// throttle the link to a rate and drop every connection periodically, and counts the bytes that
/// cross it.
///
/// Plain POSIX sockets and one thread per direction of each connection: simple enough to trust
/// in a test, and independent of the code under test.
final class FaultProxy: Sendable {
    /// What happens to one connection.
    enum Fault: Sendable, Equatable, CustomStringConvertible {
        /// Forwarded faithfully.
        case none
        /// Closed after this many bytes from the client were forwarded (a request cut short).
        case cutRequest(after: Int)
        /// Closed after this many bytes of the server's answers were forwarded (a truncated reply).
        case truncateReply(after: Int)
        /// Every piece waits this long before it is forwarded.
        case delay(milliseconds: Int)
        /// After this many reply bytes, nothing more is forwarded; the connection stays open
        /// until ``stallSeconds`` have passed, then closes.
        case stall(after: Int)
        /// Every byte from the client also goes to a second connection to the server, whose
        /// answers are thrown away: each request arrives twice.
        case duplicateRequests
        /// Reset (RST) after this many bytes from the client.
        case reset(after: Int)
        /// The proxy answers the first request itself with `429 Too Many Requests` and
        /// `Retry-After`, without forwarding it.
        case tooManyRequests(retryAfter: Int)

        var description: String {
            switch self {
            case .none: "none"
            case .cutRequest(let n): "cut request after \(n) B"
            case .truncateReply(let n): "truncate reply after \(n) B"
            case .delay(let ms): "delay \(ms) ms"
            case .stall(let n): "stall after \(n) B"
            case .duplicateRequests: "duplicate requests"
            case .reset(let n): "reset after \(n) B"
            case .tooManyRequests(let s): "429, retry after \(s) s"
            }
        }
    }

    /// What crossed the proxy.
    struct Counters: Sendable, Equatable {
        /// Bytes read from clients: what the client sent over the link.
        var bytesFromClients = 0
        /// Of those, bytes of request bodies (as framed by `Content-Length`).
        var requestBodyBytes = 0
        /// Requests seen starting (request lines).
        var requests = 0
        /// Bytes forwarded to clients.
        var bytesToClients = 0
        var connections = 0
        /// Periodic drops that cut at least one open connection.
        var drops = 0
    }

    /// The port clients connect to.
    let port: Int
    /// How long a stalled connection is held open.
    let stallSeconds: Double
    private let upstreamPort: Int
    private let listener: Int32
    private let state: Mutex<State>

    private struct State {
        var counters = Counters()
        var plan: @Sendable (Int) -> Fault = { _ in .none }
        var links: [Int: Link] = [:]
        var stopped = false
        var bytesPerSecond: Double?
        var dropEvery: Double?
        /// Per direction (0 up, 1 down), when the throttled link is next free, in seconds.
        var nextFree: [Double] = [0, 0]
    }

    /// Listens on a free loopback port and forwards to `upstreamPort` on loopback.
    init(upstreamPort: Int, stallSeconds: Double = 3) throws {
        self.upstreamPort = upstreamPort
        self.stallSeconds = stallSeconds
        self.state = Mutex(State())
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket() failed: errno \(errno)") }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = Self.loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(fd, 64) == 0 else {
            close(fd)
            throw TestFailure("bind/listen failed: errno \(errno)")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        listener = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread.detachNewThread { [self] in acceptLoop() }
        Thread.detachNewThread { [self] in dropLoop() }
    }

    /// The proxy's URL.
    var url: URL { URL(string: "http://127.0.0.1:\(port)")! }

    /// Decides the fault of each new connection from its number (0, 1, 2, ...).
    func setPlan(_ plan: @escaping @Sendable (Int) -> Fault) {
        state.withLock { $0.plan = plan }
    }

    /// Throttles the link to `bytesPerSecond` in each direction (nil: unthrottled), and cuts every
    /// open connection every `dropEvery` seconds (nil: never).
    func setLink(bytesPerSecond: Double?, dropEvery: Double?) {
        state.withLock {
            $0.bytesPerSecond = bytesPerSecond
            $0.dropEvery = dropEvery
        }
    }

    var counters: Counters { state.withLock { $0.counters } }

    func resetCounters() {
        state.withLock { $0.counters = Counters() }
    }

    /// Stops accepting and cuts every connection. Only the first call does anything: closing a
    /// descriptor twice could close another test's file that reused its number.
    func stop() {
        let (first, links) = state.withLock { s -> (Bool, [Link]) in
            defer { s.stopped = true }
            return (!s.stopped, Array(s.links.values))
        }
        guard first else { return }
        // The accept loop closes the listener when it sees this, so it never accepts on a
        // number that was closed and reused.
        shutdown(listener, Int32(SHUT_RDWR))
        for link in links { link.end(reset: false) }
    }

    deinit { stop() }

    // MARK: - Connections

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if state.withLock({ $0.stopped }) {
                if client >= 0 { close(client) }
                close(listener)
                return
            }
            if client < 0 { continue }
            var yes: Int32 = 1
            setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &yes, socklen_t(MemoryLayout<Int32>.size))
            guard let upstream = Self.connectUpstream(upstreamPort) else {
                close(client)
                continue
            }
            let (number, fault) = state.withLock { s -> (Int, Fault) in
                let number = s.counters.connections
                s.counters.connections += 1
                return (number, s.plan(number))
            }
            let shadow = fault == .duplicateRequests ? Self.connectUpstream(upstreamPort) : nil
            let link = Link(number: number, client: client, upstream: upstream, shadow: shadow)
            let stopped = state.withLock { s -> Bool in
                if !s.stopped { s.links[number] = link }
                return s.stopped
            }
            if stopped {
                link.end(reset: false)
                for _ in 0..<link.pumps { link.finishPump() }
                continue
            }
            Thread.detachNewThread { [self] in pumpUp(link, fault) }
            Thread.detachNewThread { [self] in pumpDown(link, fault) }
            if let shadow {
                Thread.detachNewThread { [self] in
                    Self.drain(shadow, until: link)
                    finish(link)
                }
            }
        }
    }

    /// Client to server.
    private func pumpUp(_ link: Link, _ fault: Fault) {
        defer { finish(link) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        var forwarded = 0
        var framing = RequestFraming()
        var answered = false
        while true {
            let n = read(link.client, &buffer, throttled ? 1024 : buffer.count)
            if n <= 0 { break }
            let piece = Array(buffer[0..<n])
            let (requests, bodyBytes) = framing.consume(piece)
            state.withLock {
                $0.counters.bytesFromClients += n
                $0.counters.requests += requests
                $0.counters.requestBodyBytes += bodyBytes
            }
            var allowed = n
            var endAfter: Bool? = nil
            switch fault {
            case .cutRequest(let limit):
                allowed = max(0, min(n, limit - forwarded))
                if forwarded + n >= limit { endAfter = false }
            case .reset(let limit):
                allowed = max(0, min(n, limit - forwarded))
                if forwarded + n >= limit { endAfter = true }
            case .delay(let ms):
                usleep(UInt32(ms) * 1000)
            case .tooManyRequests(let seconds):
                // Answer once, then close gently: read (and drop) whatever the client still
                // sends until it closes, so its kernel does not see a reset before the answer.
                if !answered {
                    answered = true
                    let reply =
                        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: \(seconds)\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    _ = Self.writeAll(link.client, Array(reply.utf8))
                    shutdown(link.client, Int32(SHUT_WR))
                }
                continue
            default: break
            }
            pace(direction: 0, bytes: allowed)
            if allowed > 0 {
                guard Self.writeAll(link.upstream, Array(piece[0..<allowed])) else { break }
                if let shadow = link.shadow { _ = Self.writeAll(shadow, Array(piece[0..<allowed])) }
                forwarded += allowed
            }
            if let reset = endAfter {
                link.end(reset: reset)
                return
            }
        }
        link.end(reset: false)
    }

    /// Server to client.
    private func pumpDown(_ link: Link, _ fault: Fault) {
        defer { finish(link) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        var forwarded = 0
        var framing = ResponseFraming()
        while true {
            let n = read(link.upstream, &buffer, throttled ? 1024 : buffer.count)
            if n <= 0 { break }
            var allowed = n
            switch fault {
            case .truncateReply(let limit), .stall(let limit):
                // Cut at the limit, but never inside a response's header block: FoundationNetworking
                // on Linux traps ("Transfer completed, but there's no response") when a connection
                // ends there (swift-corelibs-foundation#5285). A cut before a response or in its
                // body is what is tested. A stall stops at the same kind of place.
                allowed = 0
                while allowed < n, forwarded + allowed < limit || framing.inHeaders {
                    framing.consume(buffer[allowed])
                    allowed += 1
                }
            case .delay(let ms):
                usleep(UInt32(ms) * 1000)
            default: break
            }
            pace(direction: 1, bytes: allowed)
            if allowed > 0 {
                guard Self.writeAll(link.client, Array(buffer[0..<allowed])) else { break }
                forwarded += allowed
                state.withLock { $0.counters.bytesToClients += allowed }
            }
            if allowed < n {
                if case .stall = fault {
                    // Hold the connection open, silent, as a link that stopped moving does.
                    let deadline = Date().addingTimeInterval(stallSeconds)
                    while Date() < deadline, !link.isEnded { usleep(20_000) }
                }
                link.end(reset: false)
                return
            }
        }
        link.end(reset: false)
    }

    private func finish(_ link: Link) {
        if link.finishPump() { state.withLock { _ = $0.links.removeValue(forKey: link.number) } }
    }

    private var throttled: Bool { state.withLock { $0.bytesPerSecond != nil } }

    /// Waits until the throttled link could have carried `bytes` more in `direction`.
    private func pace(direction: Int, bytes: Int) {
        guard bytes > 0 else { return }
        let wait = state.withLock { s -> Double in
            guard let rate = s.bytesPerSecond else { return 0 }
            let now = Self.seconds()
            let start = max(s.nextFree[direction], now)
            s.nextFree[direction] = start + Double(bytes) / rate
            return s.nextFree[direction] - now
        }
        if wait > 0 { usleep(UInt32(wait * 1_000_000)) }
    }

    private func dropLoop() {
        var last = Self.seconds()
        while !state.withLock({ $0.stopped }) {
            usleep(10_000)
            guard let period = state.withLock({ $0.dropEvery }) else {
                last = Self.seconds()
                continue
            }
            guard Self.seconds() - last >= period else { continue }
            last = Self.seconds()
            let links = state.withLock { s -> [Link] in
                let open = Array(s.links.values)
                if !open.isEmpty { s.counters.drops += 1 }
                return open
            }
            for link in links { link.end(reset: false) }
        }
    }

    // MARK: - Sockets

    private static func drain(_ fd: Int32, until link: Link) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while read(fd, &buffer, buffer.count) > 0 {}
        link.end(reset: false)
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            sent += n
        }
        return true
    }

    private static func connectUpstream(_ port: Int) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var address = loopback(port: port)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            close(fd)
            return nil
        }
        var yes: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &yes, socklen_t(MemoryLayout<Int32>.size))
        return fd
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }

    private static func seconds() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
}

/// One proxied connection: its sockets, ended once, closed when both directions are done.
private final class Link: Sendable {
    let number: Int
    let client: Int32
    let upstream: Int32
    let shadow: Int32?
    /// Threads that use the sockets: one per direction, and one draining the shadow.
    let pumps: Int
    private let ended = Mutex(false)
    private let pumpsLeft: Mutex<Int>

    init(number: Int, client: Int32, upstream: Int32, shadow: Int32?) {
        self.number = number
        self.client = client
        self.upstream = upstream
        self.shadow = shadow
        self.pumps = shadow == nil ? 2 : 3
        self.pumpsLeft = Mutex(pumps)
    }

    var isEnded: Bool { ended.withLock { $0 } }

    /// Ends the connection: both directions stop. A reset closes the client's side with an RST
    /// (once both directions are done) instead of a FIN.
    func end(reset: Bool) {
        let first = ended.withLock { e -> Bool in
            defer { e = true }
            return !e
        }
        guard first else { return }
        if reset {
            var linger = linger(l_onoff: 1, l_linger: 0)
            setsockopt(client, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
            shutdown(client, Int32(SHUT_RD))
        } else {
            shutdown(client, Int32(SHUT_RDWR))
        }
        shutdown(upstream, Int32(SHUT_RDWR))
        if let shadow { shutdown(shadow, Int32(SHUT_RDWR)) }
    }

    /// Called by each thread when it is done; the last one closes the sockets and returns true.
    @discardableResult
    func finishPump() -> Bool {
        let last = pumpsLeft.withLock { n -> Bool in
            n -= 1
            return n == 0
        }
        guard last else { return false }
        close(client)
        close(upstream)
        if let shadow { close(shadow) }
        return true
    }
}

/// Follows HTTP/1.1 request framing in a byte stream, to count requests and body bytes.
private struct RequestFraming {
    private var header: [UInt8] = []
    private var bodyLeft = 0

    /// Returns the requests that started in `bytes` and how many of `bytes` were body.
    mutating func consume(_ bytes: [UInt8]) -> (requests: Int, bodyBytes: Int) {
        var requests = 0
        var body = 0
        var i = 0
        while i < bytes.count {
            if bodyLeft > 0 {
                let take = min(bodyLeft, bytes.count - i)
                bodyLeft -= take
                body += take
                i += take
                continue
            }
            header.append(bytes[i])
            i += 1
            if header.count >= 4, header.suffix(4) == [13, 10, 13, 10] {
                requests += 1
                let text = String(decoding: header, as: UTF8.self).lowercased()
                if let line = text.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") }) {
                    bodyLeft = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) ?? 0
                }
                header.removeAll(keepingCapacity: true)
            }
        }
        return (requests, body)
    }
}

/// Follows HTTP/1.1 response framing byte by byte, to know whether a cut would fall inside a
/// header block.
private struct ResponseFraming {
    private var header: [UInt8] = []
    private var bodyLeft = 0

    /// True between the first byte of a response and the end of its header block.
    var inHeaders: Bool { !header.isEmpty }

    mutating func consume(_ byte: UInt8) {
        if bodyLeft > 0 {
            bodyLeft -= 1
            return
        }
        header.append(byte)
        guard header.count >= 4, header.suffix(4) == [13, 10, 13, 10] else { return }
        let text = String(decoding: header, as: UTF8.self).lowercased()
        if let line = text.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") }) {
            bodyLeft = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) ?? 0
        }
        header.removeAll(keepingCapacity: true)
    }
}
