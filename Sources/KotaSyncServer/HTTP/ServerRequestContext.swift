import Hummingbird
import NIOCore

/// The request context of every route: Hummingbird's basic context plus the connection's peer
/// address, for the audit log and the failed-login limit.
struct ServerRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    /// The address of the connection's other end: the client, or a reverse proxy.
    let peer: String?

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        peer = source.channel.remoteAddress?.ipAddress
    }
}

/// Which address the request came from: the connection's peer, or, when the peer is a trusted
/// reverse proxy, the last address in `X-Forwarded-For` that is not itself a trusted proxy (the
/// entries before it were written by the client and prove nothing).
enum ClientAddress {
    static func of(peer: String?, forwardedFor: String?, trusted: [String]) -> String? {
        guard let peer, trusted.contains(peer), let forwardedFor else { return peer }
        let hops = forwardedFor.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        return hops.last { !$0.isEmpty && !trusted.contains($0) } ?? peer
    }
}
