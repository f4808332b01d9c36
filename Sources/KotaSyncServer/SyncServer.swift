import Foundation
import Hummingbird
import Logging
import NIOCore

/// The KotaSync server: the sync API and the review API over a master store, as a Hummingbird
/// application.
public enum SyncServer {
    /// Builds the application. `onListening` receives the bound port once the server accepts
    /// connections (useful with port 0).
    public static func application(
        config: ServerConfig, store: any MasterStore, host: String = "127.0.0.1", port: Int = 8080,
        logger: Logger = Logger(label: "kotasync.server"),
        routes: (Router<BasicRequestContext>) -> Void = { _ in },
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let router = Router()
        router.add(middleware: ErrorMiddleware(logger: logger))
        routes(router)
        SyncAPI(store: store, config: config).register(on: router)
        ReviewAPI(store: store, logger: logger).register(on: router)
        return Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: "KotaSync"),
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? port) },
            logger: logger)
    }
}
