import Foundation
import Hummingbird
import Logging
import NIOCore

/// The KotaSync server: the sync API, the review API, logins and the admin API over a master
/// store, as a Hummingbird application.
public enum SyncServer {
    /// Builds the application. `onListening` receives the bound port once the server accepts
    /// connections (useful with port 0).
    ///
    /// Every request is audited, answered with the protocol's error body on failure, and cut
    /// off after `limits.request_timeout_seconds`. `logins` checks staff logins; pass the one
    /// the dashboard's login form uses, so failures count together (a new one when nil).
    /// Chunked uploads are kept in `uploads`; without one, where the store keeps them
    /// (``defaultUploads(for:config:)``). When they cannot be opened, the upload routes are left
    /// out (and logged): pushes still work through `POST /v1/push`.
    public static func application(
        config: ServerConfig, store: any MasterStore, host: String = "127.0.0.1", port: Int = 8080,
        logger: Logger = Logger(label: "kotasync.server"), logins: StaffLogins? = nil,
        uploads: (any PartialUploads)? = nil,
        routes: (Router<ServerRequestContext>) -> Void = { _ in },
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let router = Router(context: ServerRequestContext.self)
        let limits = RequestLimits(config.limits)
        let logins = logins ?? StaffLogins(store: store, limits: config.limits)
        let authenticator = Authenticator(store: store, limits: limits)
        router.add(
            middleware: AuditMiddleware(
                store: store, trustedProxies: config.trustedProxies, refusedPerMinute: config.limits.refusedPerMinute))
        router.add(middleware: ErrorMiddleware(logger: logger))
        router.add(middleware: TimeoutMiddleware(seconds: config.limits.requestTimeoutSeconds))
        let routeTable = RouteTable()
        router.add(middleware: MethodNotAllowedMiddleware(table: routeTable))
        routes(router)
        SyncAPI(store: store, config: config, authenticator: authenticator).register(on: router)
        do {
            let uploads = try uploads ?? defaultUploads(for: store, config: config)
            UploadAPI(store: store, uploads: uploads, config: config, authenticator: authenticator).register(on: router)
        } catch {
            logger.error("chunked uploads are off: cannot open where they are kept", metadata: ["error": "\(error)"])
        }
        ReviewAPI(store: store, logger: logger, authenticator: authenticator).register(on: router)
        SessionAPI(store: store, config: config, authenticator: authenticator, logins: logins).register(on: router)
        AdminAPI(store: store, authenticator: authenticator).register(on: router)
        routeTable.load(router)
        return Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: "KotaSync"),
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? port) },
            logger: logger)
    }

    /// Where `store` keeps chunked uploads (``SyncStore/partialUploads(limits:)``), with the
    /// config's chunk size, expiry and limits.
    public static func defaultUploads(for store: any SyncStore, config: ServerConfig) throws -> any PartialUploads {
        try store.partialUploads(limits: config.limits)
    }
}
