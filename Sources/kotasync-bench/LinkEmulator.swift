import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A poor field link between a client and the server, on loopback: a bandwidth in each
/// direction, a one-way delay (half the round trip) and a cut of every open connection every few
/// seconds. The benchmark's counterpart of the tests' `FaultProxy`, reduced to what the
/// "bad link" figure needs.
///
/// Each direction of a connection has a reader, which time-stamps what arrives and queues it
/// (up to 64 KiB, a bottleneck's buffer: beyond it the sender waits), and a writer, which sends
/// each piece once its delay has passed and the link's rate allows.
final class LinkEmulator: Sendable {
    struct Shape: Sendable {
        /// Bytes per second in each direction.
        var bytesPerSecond: Double
        /// Half the round trip, in seconds.
        var oneWayDelay: Double
        /// Every open connection is cut this often, in seconds (nil: never).
        var dropEvery: Double?
    }

    struct Counters: Sendable {
        var bytesUp = 0
        var bytesDown = 0
        var connections = 0
        var drops = 0
    }

    let port: Int
    private let upstreamPort: Int
    private let listener: Int32
    private let state: Mutex<State>

    private struct State {
        var shape: Shape?
        var counters = Counters()
        var open: [Int: Pipe] = [:]
        var stopped = false
        var nextFree: [Double] = [0, 0]
    }

    /// A link in front of the server on `upstreamPort`, faithful until ``setShape(_:)``.
    init(upstreamPort: Int) throws {
        self.upstreamPort = upstreamPort
        state = Mutex(State())
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = Self.loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard fd >= 0, bound == 0, listen(fd, 64) == 0 else { throw BenchError("the link emulator cannot listen") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        listener = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread.detachNewThread { [self] in acceptLoop() }
        Thread.detachNewThread { [self] in dropLoop() }
    }

    var url: URL { URL(string: "http://127.0.0.1:\(port)")! }
    var counters: Counters { state.withLock { $0.counters } }

    func setShape(_ shape: Shape?) {
        state.withLock {
            $0.shape = shape
            $0.counters = Counters()
        }
    }

    func stop() {
        let pipes = state.withLock { s -> [Pipe] in
            s.stopped = true
            return Array(s.open.values)
        }
        shutdown(listener, Int32(SHUT_RDWR))
        for pipe in pipes { pipe.cut() }
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if state.withLock({ $0.stopped }) {
                if client >= 0 { close(client) }
                close(listener)
                return
            }
            guard client >= 0, let upstream = Self.connect(upstreamPort) else {
                if client >= 0 { close(client) }
                continue
            }
            let number = state.withLock { s -> Int in
                s.counters.connections += 1
                return s.counters.connections
            }
            let pipe = Pipe(client: client, upstream: upstream)
            state.withLock { $0.open[number] = pipe }
            for direction in 0..<2 {
                let queue = Queue()
                Thread.detachNewThread { [self] in
                    read(pipe, direction, into: queue)
                    if pipe.finished() { state.withLock { _ = $0.open.removeValue(forKey: number) } }
                }
                Thread.detachNewThread { [self] in
                    write(pipe, direction, from: queue)
                    if pipe.finished() { state.withLock { _ = $0.open.removeValue(forKey: number) } }
                }
            }
        }
    }

    private func read(_ pipe: Pipe, _ direction: Int, into queue: Queue) {
        let fd = direction == 0 ? pipe.client : pipe.upstream
        var buffer = [UInt8](repeating: 0, count: 1024)
        while true {
            let n = Glibc.read(fd, &buffer, buffer.count)
            if n <= 0 { break }
            let delay = state.withLock { $0.shape?.oneWayDelay ?? 0 }
            guard queue.put(Array(buffer[0..<n]), due: Self.seconds() + delay, pipe: pipe) else { break }
        }
        // The writer sends what is queued, then ends the connection.
        queue.close()
    }

    private func write(_ pipe: Pipe, _ direction: Int, from queue: Queue) {
        let fd = direction == 0 ? pipe.upstream : pipe.client
        while let (due, bytes) = queue.take(pipe: pipe) {
            let wait = due - Self.seconds()
            if wait > 0 { usleep(UInt32(wait * 1_000_000)) }
            pace(direction, bytes.count)
            if pipe.isCut || !Self.writeAll(fd, bytes) { break }
            state.withLock {
                if direction == 0 { $0.counters.bytesUp += bytes.count } else { $0.counters.bytesDown += bytes.count }
            }
        }
        pipe.cut()
    }

    private func pace(_ direction: Int, _ bytes: Int) {
        let wait = state.withLock { s -> Double in
            guard let rate = s.shape?.bytesPerSecond else { return 0 }
            let now = Self.seconds()
            s.nextFree[direction] = max(s.nextFree[direction], now) + Double(bytes) / rate
            return s.nextFree[direction] - now
        }
        if wait > 0 { usleep(UInt32(wait * 1_000_000)) }
    }

    private func dropLoop() {
        var last = Self.seconds()
        while !state.withLock({ $0.stopped }) {
            usleep(50_000)
            guard let period = state.withLock({ $0.shape?.dropEvery }) else {
                last = Self.seconds()
                continue
            }
            guard Self.seconds() - last >= period else { continue }
            last = Self.seconds()
            let pipes = state.withLock { s -> [Pipe] in
                if !s.open.isEmpty { s.counters.drops += 1 }
                return Array(s.open.values)
            }
            for pipe in pipes { pipe.cut() }
        }
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

    private static func connect(_ port: Int) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = loopback(port: port)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard fd >= 0, connected == 0 else {
            if fd >= 0 { close(fd) }
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

    static func seconds() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
}

/// One connection's two sockets: cut once, closed when its four threads are done.
private final class Pipe: Sendable {
    let client: Int32
    let upstream: Int32
    private let state = Mutex((cut: false, threads: 4))

    init(client: Int32, upstream: Int32) {
        self.client = client
        self.upstream = upstream
    }

    var isCut: Bool { state.withLock { $0.cut } }

    func cut() {
        let first = state.withLock { s -> Bool in
            defer { s.cut = true }
            return !s.cut
        }
        guard first else { return }
        shutdown(client, Int32(SHUT_RDWR))
        shutdown(upstream, Int32(SHUT_RDWR))
    }

    /// A thread is done; true for the last, which closed the sockets.
    func finished() -> Bool {
        let last = state.withLock { s -> Bool in
            s.threads -= 1
            return s.threads == 0
        }
        if last {
            close(client)
            close(upstream)
        }
        return last
    }
}

/// The pieces in flight in one direction: at most 64 KiB queued.
private final class Queue: @unchecked Sendable {
    // Guarded by `condition`.
    private let condition = NSCondition()
    private var items: [(Double, [UInt8])] = []
    private var bytes = 0
    private var closed = false
    static let capacity = 64 * 1024

    func put(_ piece: [UInt8], due: Double, pipe: Pipe) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while bytes >= Self.capacity, !pipe.isCut { condition.wait(until: Date().addingTimeInterval(0.05)) }
        if pipe.isCut { return false }
        items.append((due, piece))
        bytes += piece.count
        condition.broadcast()
        return true
    }

    func take(pipe: Pipe) -> (Double, [UInt8])? {
        condition.lock()
        defer { condition.unlock() }
        while items.isEmpty, !closed, !pipe.isCut { condition.wait(until: Date().addingTimeInterval(0.05)) }
        if items.isEmpty || pipe.isCut { return nil }
        let item = items.removeFirst()
        bytes -= item.1.count
        condition.broadcast()
        return item
    }

    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }
}
