import Foundation
import KotaSyncCore
import Testing

@testable import KotaSyncServer

/// Where the master is: a path or a `postgresql://` URL from `--master`, `KOTASYNC_MASTER` or the
/// config, in that order; the password from a file or the environment, never the URL. (No
/// PostgreSQL needed.)
struct MasterLocationTests {
    @Test func aURLNamesUserHostPortDatabaseAndSSLMode() throws {
        let location = try PostgresLocation(
            parsing: "postgresql://kotasync@db.binjai.go.id:6543/master?sslmode=verify-full")
        #expect(
            location
                == PostgresLocation(
                    user: "kotasync", host: "db.binjai.go.id", port: 6543, database: "master", sslMode: .verifyFull))
        #expect(location.description == "postgresql://kotasync@db.binjai.go.id:6543/master?sslmode=verify-full")
        let short = try PostgresLocation(parsing: "postgres://ks@127.0.0.1/ks_master")
        #expect(short.port == 5432)
        #expect(short.sslMode == .prefer)
        let v6 = try PostgresLocation(parsing: "postgresql://ks@[::1]:5433/m")
        #expect(v6.host == "::1")
        #expect(v6.port == 5433)
        #expect(v6.description == "postgresql://ks@[::1]:5433/m")
        let encoded = try PostgresLocation(parsing: "postgresql://kota%20sync@h:1/my%2Ddb")
        #expect(encoded.user == "kota sync")
        #expect(encoded.database == "my-db")
    }

    @Test func aPathOrAURLIsTellApartAndRelativePathsFollowTheConfig() throws {
        #expect(try MasterLocation(parsing: "kotasync-master.sqlite") == .file(path: "kotasync-master.sqlite"))
        #expect(
            try MasterLocation(parsing: "/var/lib/kotasync/master.sqlite")
                == .file(path: "/var/lib/kotasync/master.sqlite"))
        let base = URL(fileURLWithPath: "/etc/kotasync/")
        #expect(
            try MasterLocation(parsing: "data/master.sqlite", relativeTo: base)
                == .file(path: "/etc/kotasync/data/master.sqlite"))
        #expect(try MasterLocation(parsing: "/abs.sqlite", relativeTo: base) == .file(path: "/abs.sqlite"))
        guard case .postgres(let location) = try MasterLocation(parsing: "postgresql://ks@h:5432/m") else {
            Issue.record("a postgresql URL is a PostgreSQL master")
            return
        }
        #expect(location.database == "m")
    }

    /// A password in the URL is refused, and the refusal does not repeat it.
    @Test func aURLWithAPasswordIsRefusedWithoutRepeatingIt() {
        for url in ["postgresql://ks:s3cret-pass@h:5432/m", "postgres://ks:s3cret-pass@h/m", "postgresql://ks:@h/m"] {
            #expect {
                _ = try MasterLocation(parsing: url)
            } throws: { error in
                guard let error = error as? ConfigError else { return false }
                return error.code == .invalid && error.message.contains("password") && !error.message.contains("s3cret")
            }
        }
    }

    @Test(arguments: [
        "postgresql://ks@h:0/m", "postgresql://ks@h:65536/m", "postgresql://ks@h:99999999999999999999999/m",
        "postgresql://ks@h:-1/m", "postgresql://ks@h:12a/m", "postgresql://ks@h:/m", "postgresql://ks@h:５４３２/m",
        "postgresql://h:5432/m", "postgresql://@h/m", "postgresql://ks@h:5432", "postgresql://ks@h:5432/",
        "postgresql://ks@:5432/m", "postgresql://ks@h/m/x", "postgresql://ks@h/m?sslmode=sometimes",
        "postgresql://ks@h/m?password=x", "postgresql://ks@h/m?sslmode", "postgresql://ks@[::1/m",
        "postgresql://ks@h/m#frag", "mysql://ks@h/m", "   ",
    ])
    func aMalformedLocationIsRefusedWithAClearError(_ text: String) {
        #expect {
            _ = try MasterLocation(parsing: text)
        } throws: { error in
            guard let error = error as? ConfigError else { return false }
            return error.code == .invalid && !error.message.isEmpty
        }
    }

    @Test(arguments: [1, 5432, 65535])
    func everyPortFromOneTo65535IsTaken(_ port: Int) throws {
        #expect(try PostgresLocation(parsing: "postgresql://ks@h:\(port)/m").port == port)
    }

    @Test func theFlagComesBeforeTheEnvironmentBeforeTheConfigBeforeTheDefault() throws {
        let config = MasterLocation.file(path: "/from/config.sqlite")
        let environment = [MasterLocation.environmentVariable: "postgresql://env@h/m"]
        let flag = "postgresql://flag@h/m"
        func user(_ location: MasterLocation) -> String? {
            if case .postgres(let l) = location { return l.user }
            return nil
        }
        #expect(
            user(try MasterLocation.resolve(flag: flag, environment: environment, config: config, defaultPath: "d"))
                == "flag")
        #expect(
            user(try MasterLocation.resolve(flag: nil, environment: environment, config: config, defaultPath: "d"))
                == "env")
        #expect(try MasterLocation.resolve(flag: nil, environment: [:], config: config, defaultPath: "d") == config)
        #expect(
            try MasterLocation.resolve(
                flag: nil, environment: [MasterLocation.environmentVariable: ""], config: nil, defaultPath: "d")
                == .file(path: "d"))
        #expect {
            _ = try MasterLocation.resolve(
                flag: nil, environment: [MasterLocation.environmentVariable: "postgresql://u:pw@h/m"], config: config,
                defaultPath: "d")
        } throws: { ($0 as? ConfigError)?.code == .invalid }
    }

    @Test func thePasswordComesFromTheFlagsFileThenTheEnvironmentsFileThenPGPASSWORD() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "kotasync-pw-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let flagFile = dir.appendingPathComponent("flag")
        let envFile = dir.appendingPathComponent("env")
        try Data("from the flag's file\n".utf8).write(to: flagFile)
        try Data("from the env's file\r\n".utf8).write(to: envFile)
        let environment = [
            MasterLocation.passwordFileVariable: envFile.path, MasterLocation.libpqPasswordVariable: "from PGPASSWORD",
        ]
        #expect(try MasterLocation.password(file: flagFile.path, environment: environment) == "from the flag's file")
        #expect(try MasterLocation.password(file: nil, environment: environment) == "from the env's file")
        #expect(
            try MasterLocation.password(
                file: nil, environment: [MasterLocation.libpqPasswordVariable: "from PGPASSWORD"])
                == "from PGPASSWORD")
        #expect(try MasterLocation.password(file: nil, environment: [:]) == nil)
    }

    @Test func aPasswordFileThatIsMissingEmptyTooLargeOrOfSeveralLinesIsRefused() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "kotasync-pw-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let contents: [String: Data] = [
            "empty": Data(), "newline": Data("\n".utf8), "lines": Data("one\ntwo\n".utf8),
            "crlf-lines": Data("one\r\ntwo".utf8),
            "large": Data(repeating: 0x61, count: MasterLocation.maxPasswordFileBytes + 1),
            "binary": Data([0xFF, 0xFE]),
        ]
        for (name, data) in contents { try data.write(to: dir.appendingPathComponent(name)) }
        for name in Array(contents.keys) + ["missing"] {
            #expect {
                _ = try MasterLocation.password(file: dir.appendingPathComponent(name).path, environment: [:])
            } throws: { ($0 as? ConfigError) != nil }
        }
        let exact = dir.appendingPathComponent("exact")
        try Data(repeating: 0x61, count: MasterLocation.maxPasswordFileBytes).write(to: exact)
        #expect(
            try MasterLocation.password(file: exact.path, environment: [:])?.count
                == MasterLocation.maxPasswordFileBytes)
    }

    @Test func theConfigsMasterKeyIsParsedWithTheConfig() throws {
        let dir = URL(fileURLWithPath: "/srv/kotasync/")
        let withPath = try ServerConfig.parse(yaml: storeYAML + "\nmaster: data/master.sqlite\n", baseURL: dir)
        #expect(withPath.master == .file(path: "/srv/kotasync/data/master.sqlite"))
        let withURL = try ServerConfig.parse(yaml: storeYAML + "\nmaster: postgresql://ks@db:5432/kota\n", baseURL: dir)
        #expect(withURL.master == .postgres(PostgresLocation(user: "ks", host: "db", port: 5432, database: "kota")))
        #expect(try ServerConfig.parse(yaml: storeYAML, baseURL: dir).master == nil)
        #expect {
            _ = try ServerConfig.parse(yaml: storeYAML + "\nmaster: postgresql://ks:pw@db/kota\n", baseURL: dir)
        } throws: { ($0 as? ConfigError)?.code == .invalid }
    }
}
