import Hummingbird
import NIOCore

/// The request context of every route of the server: Hummingbird's basic context plus the
/// connection's peer address, for the audit log and the failed-login limit, and the credential
/// that opened a guarded route. Routes added from
/// outside (the dashboard) register on a `Router<ServerRequestContext>`.
public struct ServerRequestContext: RequestContext {
    /// Hummingbird's per-request storage (logger, parameters).
    public var coreContext: CoreRequestContextStorage
    /// The address of the connection's other end: the client, or a reverse proxy.
    public let peer: String?
    /// The credential that opened the route, set by the route group's credential check
    /// (``CredentialMiddleware``); nil on a route that needs none.
    public internal(set) var credential: Device?

    /// The context of a request arriving on `source`'s channel.
    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        peer = source.channel.remoteAddress?.ipAddress
    }
}

/// Which address the request came from: the connection's peer, or, when the peer is a trusted
/// reverse proxy, the last address in `X-Forwarded-For` that is not itself a trusted proxy (the
/// entries before it were written by the client and prove nothing).
public enum ClientAddress {
    /// The client's address given the connection's `peer`, the request's `X-Forwarded-For`
    /// header, and the config's `trusted_proxies`.
    public static func of(peer: String?, forwardedFor: String?, trusted: [String]) -> String? {
        guard let peer, trusted.contains(peer), let forwardedFor else { return peer }
        let hops = forwardedFor.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        return hops.last { !$0.isEmpty && !trusted.contains($0) } ?? peer
    }
}
