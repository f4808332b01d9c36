import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A TCP proxy on loopback between a client and the server that breaks the link on purpose: the
/// link emulator of the tests.
///
/// Per connection, as its plan says, it cuts, delays, stalls, truncates, duplicates, resets, or
/// answers nothing at all (``Fault/silent``). For the whole link (``setLink``) it throttles to a
/// bandwidth, adds a one-way delay (half the round trip) in each direction, cuts every open
/// connection every T seconds, and cuts each connection once it has carried N bytes. It counts
/// the bytes that cross it.
///
/// Plain POSIX sockets and one thread per direction of each connection (two with a delay: one
/// reads and time-stamps, one forwards when the delay has passed): simple enough to trust in a
/// test, and independent of the code under test.
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
        /// The connection is accepted and what the client sends is read, but nothing is forwarded
        /// and nothing ever comes back: a server (or a link) gone silent. Held until the client
        /// gives up or the proxy stops.
        case silent

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
            case .silent: "silent"
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
        /// Periodic drops that cut at least one open connection, and connections cut after
        /// carrying the link's byte budget.
        var drops = 0
    }

    /// How the whole link behaves, for every connection.
    struct Link: Sendable, Equatable {
        /// Bytes per second in each direction (nil: as fast as loopback).
        var bytesPerSecond: Double?
        /// Added to every byte's trip in each direction: half the round-trip time.
        var oneWayDelay: Double = 0
        /// Every open connection is cut this often, in seconds (nil: never).
        var dropEvery: Double?
        /// Each connection is cut once it has carried this many bytes, both directions together
        /// (nil: never).
        var cutAfterBytes: Int?
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
        var links: [Int: Connection] = [:]
        var stopped = false
        var link = Link()
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
        setLink(Link(bytesPerSecond: bytesPerSecond, dropEvery: dropEvery))
    }

    /// Makes the whole link behave as `link` says, from the next byte on.
    func setLink(_ link: Link) {
        state.withLock { $0.link = link }
    }

    var counters: Counters { state.withLock { $0.counters } }

    func resetCounters() {
        state.withLock { $0.counters = Counters() }
    }

    /// Stops accepting and cuts every connection. Only the first call does anything: closing a
    /// descriptor twice could close another test's file that reused its number.
    func stop() {
        let (first, links) = state.withLock { s -> (Bool, [Connection]) in
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
            let link = Connection(number: number, client: client, upstream: upstream, shadow: shadow)
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
    private func pumpUp(_ link: Connection, _ fault: Fault) {
        defer { finish(link) }
        let out = Forwarder(
            proxy: self, link: link, direction: 0, to: link.upstream, shadow: link.shadow,
            delay: state.withLock { $0.link.oneWayDelay })
        defer { out.finish() }
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
            case .silent:
                continue
            default: break
            }
            let (budget, cut) = carry(link, allowed)
            if cut { endAfter = endAfter ?? false }
            if budget > 0 {
                guard out.send(Array(piece[0..<budget])) else { break }
                forwarded += budget
            }
            if let reset = endAfter {
                link.end(reset: reset)
                return
            }
        }
        out.drain()
        link.end(reset: false)
    }

    /// Server to client.
    private func pumpDown(_ link: Connection, _ fault: Fault) {
        defer { finish(link) }
        let out = Forwarder(
            proxy: self, link: link, direction: 1, to: link.client, shadow: nil,
            delay: state.withLock { $0.link.oneWayDelay })
        defer { out.finish() }
        var buffer = [UInt8](repeating: 0, count: 4096)
        var forwarded = 0
        while true {
            let n = read(link.upstream, &buffer, throttled ? 1024 : buffer.count)
            if n <= 0 { break }
            var allowed = n
            switch fault {
            case .truncateReply(let limit), .stall(let limit):
                allowed = max(0, min(n, limit - forwarded))
            case .delay(let ms):
                usleep(UInt32(ms) * 1000)
            default: break
            }
            let (budget, cut) = carry(link, allowed)
            if budget > 0 {
                guard out.send(Array(buffer[0..<budget])) else { break }
                forwarded += budget
            }
            if cut {
                link.end(reset: false)
                return
            }
            if allowed < n {
                if case .stall = fault {
                    // Hold the connection open, silent, as a link that stopped moving does.
                    out.drain()
                    let deadline = Date().addingTimeInterval(stallSeconds)
                    while Date() < deadline, !link.isEnded { usleep(20_000) }
                }
                link.end(reset: false)
                return
            }
        }
        out.drain()
        link.end(reset: false)
    }

    private func finish(_ link: Connection) {
        if link.finishPump() { state.withLock { _ = $0.links.removeValue(forKey: link.number) } }
    }

    /// Of `bytes` about to cross `link`, how many its byte budget lets through, and whether the
    /// budget is spent (the connection is then cut, counted as a drop).
    private func carry(_ link: Connection, _ bytes: Int) -> (Int, Bool) {
        guard let budget = state.withLock({ $0.link.cutAfterBytes }) else { return (bytes, false) }
        let (allowed, spent) = link.carry(bytes, budget: budget)
        if spent, link.markCut() { state.withLock { $0.counters.drops += 1 } }
        return (allowed, spent)
    }

    fileprivate func countToClient(_ bytes: Int) {
        state.withLock { $0.counters.bytesToClients += bytes }
    }

    fileprivate var throttled: Bool { state.withLock { $0.link.bytesPerSecond != nil } }

    /// Waits until the throttled link could have carried `bytes` more in `direction`.
    fileprivate func pace(direction: Int, bytes: Int) {
        guard bytes > 0 else { return }
        let wait = state.withLock { s -> Double in
            guard let rate = s.link.bytesPerSecond else { return 0 }
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
            guard let period = state.withLock({ $0.link.dropEvery }) else {
                last = Self.seconds()
                continue
            }
            guard Self.seconds() - last >= period else { continue }
            last = Self.seconds()
            let links = state.withLock { s -> [Connection] in
                let open = Array(s.links.values)
                if !open.isEmpty { s.counters.drops += 1 }
                return open
            }
            for link in links { link.end(reset: false) }
        }
    }

    // MARK: - Sockets

    private static func drain(_ fd: Int32, until link: Connection) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while read(fd, &buffer, buffer.count) > 0 {}
        link.end(reset: false)
    }

    fileprivate static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
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

    fileprivate static func seconds() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
}

/// One proxied connection: its sockets, ended once, closed when both directions are done.
private final class Connection: Sendable {
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

    /// Bytes carried both ways, and whether the byte budget cut this connection.
    private let carried = Mutex((bytes: 0, cut: false))

    /// Counts `bytes` against `budget`: how many may still pass, and whether the budget is spent.
    func carry(_ bytes: Int, budget: Int) -> (allowed: Int, spent: Bool) {
        carried.withLock { c in
            let allowed = max(0, min(bytes, budget - c.bytes))
            c.bytes += allowed
            return (allowed, c.bytes >= budget)
        }
    }

    /// True the first time only: the connection is counted as cut once.
    func markCut() -> Bool {
        carried.withLock { c in
            defer { c.cut = true }
            return !c.cut
        }
    }

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

/// Forwards one direction of a connection: at once, or, with a one-way delay, through a queue
/// that a second thread empties when each piece's delay has passed, so the delay adds latency
/// without lowering the throughput. The queue holds at most 256 KiB, like a bottleneck's buffer:
/// beyond it the reading side waits, and the sender's TCP with it.
private final class Forwarder: @unchecked Sendable {
    // The queue and flags are guarded by `condition`; the rest is set in init and only read.
    private let proxy: FaultProxy
    private let link: Connection
    private let direction: Int
    private let fd: Int32
    private let shadow: Int32?
    private let delay: Double
    private let condition = NSCondition()
    private var queue: [(due: Double, bytes: [UInt8])] = []
    private var queued = 0
    private var closing = false
    private var failed = false
    private var done = false
    static let capacity = 256 * 1024

    init(proxy: FaultProxy, link: Connection, direction: Int, to fd: Int32, shadow: Int32?, delay: Double) {
        self.proxy = proxy
        self.link = link
        self.direction = direction
        self.fd = fd
        self.shadow = shadow
        self.delay = delay
        if delay > 0 {
            Thread.detachNewThread { [self] in run() }
        } else {
            done = true
        }
    }

    /// Forwards `bytes` (now, or queued for later); false once the other side is gone.
    func send(_ bytes: [UInt8]) -> Bool {
        guard delay > 0 else { return write(bytes) }
        condition.lock()
        defer { condition.unlock() }
        while queued >= Self.capacity, !failed, !link.isEnded { condition.wait(until: Date().addingTimeInterval(0.05)) }
        if failed { return false }
        queue.append((FaultProxy.seconds() + delay, bytes))
        queued += bytes.count
        condition.broadcast()
        return true
    }

    /// Waits until everything queued went out (or the connection ended).
    func drain() {
        guard delay > 0 else { return }
        condition.lock()
        defer { condition.unlock() }
        while !queue.isEmpty, !failed, !link.isEnded { condition.wait(until: Date().addingTimeInterval(0.05)) }
    }

    /// Stops the forwarding thread and waits for it, so the sockets outlive it.
    func finish() {
        guard delay > 0 else { return }
        condition.lock()
        closing = true
        condition.broadcast()
        while !done { condition.wait(until: Date().addingTimeInterval(0.05)) }
        condition.unlock()
    }

    private func run() {
        while true {
            condition.lock()
            while queue.isEmpty, !closing { condition.wait(until: Date().addingTimeInterval(0.05)) }
            if queue.isEmpty || link.isEnded || failed {
                if closing || link.isEnded || failed {
                    done = true
                    condition.broadcast()
                    condition.unlock()
                    return
                }
                condition.unlock()
                continue
            }
            let (due, bytes) = queue.removeFirst()
            queued -= bytes.count
            condition.broadcast()
            condition.unlock()
            let wait = due - FaultProxy.seconds()
            if wait > 0 { usleep(UInt32(wait * 1_000_000)) }
            if link.isEnded || !write(bytes) {
                condition.lock()
                failed = true
                condition.broadcast()
                condition.unlock()
            }
        }
    }

    private func write(_ bytes: [UInt8]) -> Bool {
        proxy.pace(direction: direction, bytes: bytes.count)
        guard FaultProxy.writeAll(fd, bytes) else { return false }
        if let shadow { _ = FaultProxy.writeAll(shadow, bytes) }
        if direction == 1 { proxy.countToClient(bytes.count) }
        return true
    }
}
