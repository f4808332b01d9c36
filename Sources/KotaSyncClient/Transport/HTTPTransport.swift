import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// The client's HTTP connections to the server: one `AsyncHTTPClient` for the process, with
/// progress-based timeouts and streamed bodies.
///
/// A transfer is abandoned only when it stops moving: no byte sent or received for
/// ``Timeouts/idle`` (20 s by default). However long a large chunk takes on a slow link, a
/// connection that keeps moving bytes is never cut by a timer; there is no whole-request timeout.
/// Establishing a connection has its own, separate limit (``Timeouts/connect``).
///
/// Waiting costs nothing: the event loop sleeps in `epoll` while the link is silent, and the
/// idle watch is one timer per request, re-armed only when it fires.
///
/// One transport serves every request of a process (``shared`` for library users and tests);
/// the `kotasync` command makes its own with the command line's timeouts and shuts it down once,
/// before it exits.
public final class HTTPTransport: Sendable {
    /// How long a connection may take to open, and how long a transfer may stand still.
    public struct Timeouts: Sendable, Equatable {
        /// The longest wait for a TCP (and TLS) connection to open.
        public var connect: Duration
        /// The longest time without a byte moving in either direction, from the request's first
        /// byte to the reply's last; then the request fails as `server_unreachable`, to be resumed.
        public var idle: Duration

        /// A connect limit and an idle limit; see the properties.
        public init(connect: Duration = .seconds(10), idle: Duration = .seconds(20)) {
            self.connect = connect
            self.idle = idle
        }

        /// Connect within 10 s; give a transfer up after 20 s without a byte moving.
        public static let standard = Timeouts()
    }

    /// The limits this transport applies.
    public let timeouts: Timeouts
    private let client: HTTPClient

    /// The transport of library users that do not make their own (default timeouts). It lives as
    /// long as the process and is never shut down.
    public static let shared = HTTPTransport(timeouts: .standard)

    /// A transport with `timeouts`. Call ``shutdown()`` once when done with it (dropping it
    /// without closes its connections in the background).
    public init(timeouts: Timeouts = .standard) {
        self.timeouts = timeouts
        var configuration = HTTPClient.Configuration(
            // The Authorization header must not follow a redirect to another host.
            redirectConfiguration: .disallow,
            timeout: HTTPClient.Configuration.Timeout(
                connect: Self.amount(timeouts.connect), read: Self.amount(timeouts.idle),
                write: Self.amount(timeouts.idle)),
            // A connection left idle this long is closed; the next request opens a new one.
            connectionPool: HTTPClient.Configuration.ConnectionPool(idleTimeout: .seconds(30)),
            decompression: .disabled
        )
        // A refused connection fails at once: the synchronizer's own backoff (with jitter, and
        // progress counted) decides when to try again, not a second retry loop inside the pool.
        configuration.connectionPool.retryConnectionEstablishment = false
        // One request at a time per connection; an HTTP/2 stream would share one connection's fate
        // between the page being read and the page asked for ahead.
        configuration.httpVersion = .http1Only
        client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }

    /// Closes the connections. Requests still running fail.
    public func shutdown() async throws {
        try await client.shutdown()
    }

    // A transport dropped without ``shutdown()`` (a test's, a library user's) closes its
    // connections in the background; after a shutdown this only reports "already shut down".
    deinit {
        client.shutdown(queue: .global()) { _ in }
    }

    /// An answer: the status, the headers, and the whole body.
    struct Response: Sendable {
        var status: Int
        var headers: HTTPHeaders
        var body: [UInt8]

        func header(_ name: String) -> String? { headers.first(name: name) }
    }

    /// Why a request did not get an answer.
    enum Failure: Error, CustomStringConvertible {
        /// No byte moved for the idle limit.
        case idle(Duration)
        /// The connection could not be opened in time.
        case connectTimeout
        /// The reply's body is larger than the caller accepts.
        case tooLarge(Int)
        /// Anything else on the way: refused, reset, closed early, a TLS failure.
        case link(String)

        var description: String {
            switch self {
            case .idle(let limit): "no data moved for \(limit.components.seconds) s"
            case .connectTimeout: "the connection could not be opened in time"
            case .tooLarge(let limit): "the answer is larger than \(limit) bytes"
            case .link(let what): what
            }
        }
    }

    /// Sends one request and reads the whole answer, abandoning it when no byte moves for
    /// ``Timeouts/idle``.
    ///
    /// The request body is streamed in pieces of at most 16 KiB, each handed over when the
    /// connection can take it; `moved` is told the bytes of each piece sent and of each piece of
    /// the answer received, as they move. The answer is collected once, into one array of at most
    /// `limit` bytes.
    func exchange(
        _ method: HTTPMethod, _ url: String, headers: [(String, String)], body: ArraySlice<UInt8>? = nil,
        limit: Int, moved: @escaping @Sendable (_ sent: Int, _ received: Int) -> Void = { _, _ in }
    ) async throws(Failure) -> Response {
        var request = HTTPClientRequest(url: url)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        let watch = Activity()
        let sending: @Sendable (Int) -> Void = { bytes in
            watch.touch()
            moved(bytes, 0)
        }
        let receiving: @Sendable (Int) -> Void = { bytes in
            watch.touch()
            moved(0, bytes)
        }
        if let body {
            request.body = .stream(BodyPieces(bytes: body, moved: sending), length: .known(Int64(body.count)))
        }
        let idle = timeouts.idle
        let prepared = request
        do {
            return try await withThrowingTaskGroup(of: Response?.self) { group in
                group.addTask { [client] in
                    let response = try await client.execute(prepared, deadline: .distantFuture)
                    receiving(0)
                    var bytes: [UInt8] = []
                    if let length = response.headers.first(name: "Content-Length").flatMap(Int.init) {
                        guard length <= limit else { throw Failure.tooLarge(limit) }
                        bytes.reserveCapacity(length)
                    }
                    for try await piece in response.body {
                        guard bytes.count + piece.readableBytes <= limit else { throw Failure.tooLarge(limit) }
                        bytes.append(contentsOf: piece.readableBytesView)
                        receiving(piece.readableBytes)
                    }
                    return Response(status: Int(response.status.code), headers: response.headers, body: bytes)
                }
                group.addTask {
                    try await watch.wait(idle: idle)
                    return nil
                }
                defer { group.cancelAll() }
                guard let first = try await group.next(), let response = first else {
                    // The request always ends first or with an error; only the watch returns nil.
                    throw Failure.idle(idle)
                }
                return response
            }
        } catch let failure as Failure {
            throw failure
        } catch let error as HTTPClientError {
            switch error {
            case .connectTimeout: throw .connectTimeout
            case .readTimeout, .writeTimeout: throw .idle(idle)
            default: throw .link(String(describing: error))
            }
        } catch {
            throw .link(String(describing: error))
        }
    }

    private static func amount(_ duration: Duration) -> TimeAmount {
        let (seconds, attoseconds) = duration.components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

/// When a request last moved a byte, and a wait that ends in a throw once it stood still too long.
private final class Activity: Sendable {
    private let last = Mutex(ContinuousClock.now)

    func touch() {
        last.withLock { $0 = .now }
    }

    /// Returns never: throws ``HTTPTransport/Failure/idle(_:)`` once nothing moved for `idle`,
    /// or `CancellationError` when the request ended first. Sleeps until the earliest moment the
    /// limit could be reached, so a silent link wakes it once per `idle`, not in a loop.
    func wait(idle: Duration) async throws {
        while true {
            let deadline = last.withLock { $0 } + idle
            if ContinuousClock.now >= deadline { throw HTTPTransport.Failure.idle(idle) }
            try await Task.sleep(until: deadline, clock: .continuous)
        }
    }
}

/// A request body handed to the connection a piece at a time, as it can take them: each piece
/// is copied once into the buffer that goes to the socket, and its size reported.
private struct BodyPieces: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let bytes: ArraySlice<UInt8>
    let moved: @Sendable (Int) -> Void
    static let piece = 16 * 1024

    struct AsyncIterator: AsyncIteratorProtocol {
        var rest: ArraySlice<UInt8>
        let moved: @Sendable (Int) -> Void

        mutating func next() async throws -> ByteBuffer? {
            guard !rest.isEmpty else { return nil }
            let piece = rest.prefix(BodyPieces.piece)
            rest = rest.dropFirst(piece.count)
            moved(piece.count)
            return ByteBuffer(bytes: piece)
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(rest: bytes, moved: moved) }
}
