import Foundation
import KotaSyncCore
import KotaSyncServer
import KotaSyncTesting
import Testing

/// The real `kotasync-server` with `--master postgresql://…`: tokens, staff accounts and the audit
/// log on a PostgreSQL master, as an operator runs them.
@Suite(.postgres)
struct AccountsCommandLineTests {
    @Test func tokensUsersAndTheAuditLogWorkOnAPostgreSQLMasterThroughTheCommandLine() async throws {
        let cluster = try await PostgresCluster.shared()
        try await cluster.withDatabase { location in
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
                "kotasync-pg-cli-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: folder) }
            let config = folder.appendingPathComponent("kotasync.yaml")
            try storeYAML.write(to: config, atomically: true, encoding: .utf8)
            var common = ["--config", config.path, "--master", location.description]
            if let password = cluster.password {
                let file = folder.appendingPathComponent("password")
                try password.write(to: file, atomically: true, encoding: .utf8)
                common += ["--master-password-file", file.path]
            }

            let created = try run("kotasync-server", ["token", "create", "--opd", "pkm-a"] + common)
            #expect(created.status == 0, "\(created.stderr)")
            let token = created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(token.hasPrefix("kst_"))
            let added = try run(
                "kotasync-server", ["user", "add", "Ani", "--role", "reviewer"] + common,
                input: "kata-sandi-panjang\nkata-sandi-panjang\n")
            #expect(added.status == 0, "\(added.stderr)")

            // What the commands wrote is in the master, as another server would see it.
            let store = try await PostgresMasterStore.open(location, password: cluster.password, config: storeConfig())
            let device = try await store.authenticate(token: token)
            #expect(device?.opd == "pkm-a" && device?.role == .device)
            #expect(try await store.users().map(\.name) == ["Ani"])
            await store.close()

            let listed = try run("kotasync-server", ["token", "list"] + common)
            #expect(listed.status == 0 && listed.stdout.contains("pkm-a"))
            #expect(!listed.stdout.contains(token), "a token list never shows a secret")
            let verified = try run("kotasync-server", ["audit", "verify"] + common)
            #expect(verified.status == 0, "\(verified.stderr)")
            #expect(verified.stdout.contains("audit log intact"))
            let entries = try run("kotasync-server", ["audit", "list"] + common)
            #expect(entries.stdout.contains("token.create") && entries.stdout.contains("user.add"))

            let both = try run("kotasync-server", ["token", "list", "--db", "x.sqlite"] + common)
            #expect(both.status == 2 && both.stderr.contains("either --master or --db"))
        }
    }

    /// A master that cannot be reached is said so at once, in the words of what went wrong, with a
    /// stable code and the configuration-error status — not after the pool's minute of retries.
    @Test func aMasterThatCannotBeReachedIsAConfigurationErrorThatSaysWhy() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
            "kotasync-pg-unreachable-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let config = folder.appendingPathComponent("kotasync.yaml")
        try storeYAML.write(to: config, atomically: true, encoding: .utf8)
        // A port nothing listens on: bound, then let go.
        let socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, length) }
        }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &length) }
        }
        let port = Int(UInt16(bigEndian: address.sin_port))
        close(socket)
        for command in [["token", "list"], ["conflicts", "list"]] {
            let result = try run(
                "kotasync-server",
                command + ["--config", config.path, "--master", "postgresql://kotasync@127.0.0.1:\(port)/kotasync"])
            #expect(result.status == 2, "\(command): \(result.stderr)")
            #expect(result.stderr.contains("[config_master_unreachable]"), "\(command): \(result.stderr)")
            #expect(result.stderr.contains("Connection refused"), "\(command): \(result.stderr)")
        }
    }
}
