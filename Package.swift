// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "KotaSync",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "KotaSyncCore", targets: ["KotaSyncCore"]),
        .library(name: "KotaSyncClient", targets: ["KotaSyncClient"]),
        .library(name: "KotaSyncServer", targets: ["KotaSyncServer"]),
        .executable(name: "kotasync", targets: ["kotasync"]),
        .executable(name: "kotasync-server", targets: ["kotasync-server"]),
    ],
    dependencies: [
        .package(url: "https://github.com/groue/GRDB.swift", exact: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", exact: "2.28.1"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
        // The client's transport: progress (read) timeouts and streaming bodies, which
        // FoundationNetworking's URLSession on Linux does not have.
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        // ByteBuffer and HTTP types of the client's transport (already built for the server).
        .package(url: "https://github.com/apple/swift-nio", from: "2.100.0"),
        // The master on PostgreSQL (issue 15): the wire protocol, a connection pool that runs as a
        // service, and SCRAM authentication. Its build time (swift-nio-ssl, transport services) buys
        // what a city's Command Center already runs, backs up and replicates; the embedded SQLite
        // master stays the default and needs nothing installed.
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        // TLS settings of the PostgreSQL connection (sslmode); postgres-nio already builds it.
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        // C layer: module maps and shims only.
        .systemLibrary(
            name: "CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        .systemLibrary(
            name: "CZlib",
            providers: [.apt(["zlib1g-dev"])]
        ),

        // Shared: values, changesets, the wire codec, clocks, protocol types, errors.
        .target(
            name: "KotaSyncCore",
            dependencies: ["CZlib", .product(name: "Crypto", package: "swift-crypto")]
        ),
        // SQLite plumbing shared by replica and master: value bridging, schema introspection.
        .target(
            name: "KotaSyncSQLite",
            dependencies: [
                "KotaSyncCore",
                "CSQLite",
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
        // OPD side: the replica, its change log, and the sync client.
        .target(
            name: "KotaSyncClient",
            dependencies: [
                "KotaSyncCore",
                "KotaSyncSQLite",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                // SHA-256 of upload chunks; the server already builds it.
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        // Command Center side: config, master store, merge engine, HTTP API.
        .target(
            name: "KotaSyncServer",
            dependencies: [
                "KotaSyncCore",
                "KotaSyncSQLite",
                "CSQLite",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                // ConnectionPoolError: what the pool throws when no connection can be made.
                .product(name: "_ConnectionPoolModule", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                // NIOThreadPool: the PostgreSQL merge's blocking thread.
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        // What the test targets share: a private PostgreSQL cluster (and, as suites move here, a
        // running server, replicas and the oracles), so each suite can run against either backend.
        .target(
            name: "KotaSyncTesting",
            dependencies: [
                "KotaSyncServer",
                "KotaSyncCore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The Command Center's web pages (server-rendered HTML) over the master store.
        .target(
            name: "KotaSyncDashboard",
            dependencies: [
                "KotaSyncServer",
                "KotaSyncCore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Mustache", package: "swift-mustache"),
            ]
        ),
        .executableTarget(
            name: "kotasync",
            dependencies: [
                "KotaSyncClient",
                "KotaSyncCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "kotasync-server",
            dependencies: [
                "KotaSyncServer",
                "KotaSyncDashboard",
                "KotaSyncCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // The benchmark: `swift run -c release kotasync-bench`.
        .executableTarget(
            name: "kotasync-bench",
            dependencies: [
                "KotaSyncClient",
                "KotaSyncServer",
                "KotaSyncCore",
                "CSQLite",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ]
        ),

        .testTarget(name: "KotaSyncCoreTests", dependencies: ["KotaSyncCore"]),
        .testTarget(
            name: "KotaSyncClientTests",
            dependencies: ["KotaSyncClient", "KotaSyncSQLite", .product(name: "GRDB", package: "GRDB.swift")]
        ),
        // KotaSyncTesting: the property tests of the merge run on a PostgreSQL master too.
        .testTarget(
            name: "KotaSyncServerTests",
            dependencies: [
                "KotaSyncServer", "KotaSyncCore", "KotaSyncTesting",
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ]
        ),
        // The PostgreSQL master's stores against a real cluster (KotaSyncTesting starts one).
        .testTarget(
            name: "PostgresStoreTests",
            dependencies: [
                "KotaSyncServer", "KotaSyncCore", "KotaSyncTesting", "KotaSyncSQLite",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "EndToEndTests",
            dependencies: [
                "KotaSyncTesting",
                "KotaSyncClient", "KotaSyncServer", "KotaSyncSQLite", "KotaSyncDashboard",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
