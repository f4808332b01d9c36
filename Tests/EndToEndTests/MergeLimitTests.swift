import Foundation
import GRDB
import KotaSyncCore
import Testing

/// The limits a row is held to, through the real server and the real client: a value and a row
/// the master keeps (so every row fits into a pull page every client accepts), pull pages bounded
/// by bytes, and base versions the master issued. Each refusal is per row, with a stable code.
@Suite(.serialized)
struct MergeLimitTests {
    static let siti = "0b6f2a8e-4c1d-4e0a-9d3b-2f6c1a7e5b01"
    /// `patients` with every text column a replica may fill.
    static let wide = [
        Changeset.Table(
            name: "patients", primaryKey: ["id"],
            columns: ["nik", "name", "clinic_id", "birth_date", "village_code", "phone", "updated_at"])
    ]

    /// The sample server, with the sample config's limit lines named in `limits` (by their
    /// key) given other values.
    static func start(_ name: String = #function, limits: [String: Int] = [:]) throws -> ServerProcess {
        let dir = try makeTemporaryDirectory(name)
        let config = try sampleConfig(in: dir, scoped: true)
        var lines = try String(contentsOf: config, encoding: .utf8).components(separatedBy: "\n")
        for (key, value) in limits {
            let index = try #require(lines.firstIndex { $0.hasPrefix("  \(key):") }, "the sample sets \(key)")
            lines[index] = "  \(key): \(value)"
        }
        try lines.joined(separator: "\n").write(to: config, atomically: true, encoding: .utf8)
        return try ServerProcess(config: config, directory: dir)
    }

    /// `count` bytes of text that compress about a hundredfold, well inside the server's
    /// compression-ratio limit (one letter repeated would compress past it).
    static func text(_ count: Int) -> String {
        let pattern = "Puskesmas Kebun Lada, Jl. Samanhudi 17; "
        return String(String(repeating: pattern, count: count / pattern.utf8.count + 1).prefix(count))
    }

    static func row(
        _ id: String, operation: Changeset.Operation, version: UInt64, _ values: [Int: String]
    ) -> Changeset.Row {
        Changeset.Row(
            table: 0, operation: operation, version: version, stamp: RawDevice.now(), primaryKey: [.text(id)],
            columns: values.sorted { $0.key < $1.key }.map { .init(column: $0.key, value: .text($0.value)) })
    }

    /// `kotasync init` of a new replica of `opd`; returns its path.
    static func initialise(_ server: ServerProcess, opd: String, name: String) throws -> String {
        let path = server.directory.appendingPathComponent("\(name).sqlite").path
        let result = try run(
            "kotasync",
            ["init", "--db", path, "--server", server.url.absoluteString, "--token", try server.token(opd: opd)])
        #expect(result.status == 0, "init \(name): \(result.stderr)")
        return path
    }

    /// Issue 14, item 8, scaled down: a value of 8 MiB (a few KB of zlib) is refused; a row
    /// grown column by column, each value under the value limit, stops at the row limit; the
    /// rest of each push merges; and a new device of the clinic and of the health office still
    /// initialise and hold the row.
    @Test func aRowCannotGrowPastTheRowLimitAndEveryDeviceStillInitialises() async throws {
        let server = try Self.start()
        defer { server.stop() }
        let k = try RawDevice(server, opd: "pkm-kebun-lada")

        let huge = try await k.push(
            [
                Self.row(
                    "p-huge", operation: .upsert, version: 0,
                    [0: "1275020000000001", 1: Self.text(8 << 20), 2: "pkm-kebun-lada"]),
                Self.row(
                    "p-small", operation: .upsert, version: 0, [0: "1275020000000002", 1: "Ani", 2: "pkm-kebun-lada"]),
            ], tables: Self.wide)
        #expect(huge.applied == 1)
        #expect(huge.rejected?.map(\.code) == ["value_too_large"])
        #expect(huge.rejected?.first?.primaryKey == [.text("p-huge")])
        #expect(try masterRows(server, "SELECT count(*) FROM patients WHERE id = 'p-huge'") == [[.integer(0)]])

        let created = try await k.push(
            [
                Self.row(
                    "p-grow", operation: .upsert, version: 0, [0: "1275020000000003", 1: "Budi", 2: "pkm-kebun-lada"])
            ],
            tables: Self.wide)
        var version = created.masterSequence
        let chunk = Self.text(900_000)
        // 900 KB into name, birth_date, village_code, phone: 3.6 MB, under the 4 MiB row limit.
        for column in [1, 3, 4, 5] {
            let reply = try await k.push(
                [Self.row("p-grow", operation: .update, version: version, [column: chunk])], tables: Self.wide)
            #expect(reply.applied == 1 && reply.rejected == nil, "column \(column)")
            version = reply.masterSequence
        }
        // The fifth would make it 4.5 MB.
        let over = try await k.push(
            [Self.row("p-grow", operation: .update, version: version, [6: chunk])], tables: Self.wide)
        #expect(over.applied == 0)
        #expect(over.rejected?.map(\.code) == ["row_too_large"])
        #expect(over.rejected?.map(\.action) == ["restore"])
        #expect(
            try masterRows(server, "SELECT updated_at IS NULL, length(phone) FROM patients WHERE id = 'p-grow'")
                == [[.integer(1), .integer(900_000)]])

        for (opd, name) in [("pkm-kebun-lada", "kebun-lada-2"), ("dinkes", "dinkes")] {
            let path = try Self.initialise(server, opd: opd, name: name)
            #expect(
                try ScopedSyncTests.rows(path, "SELECT length(name), length(phone) FROM patients WHERE id = 'p-grow'")
                    == [[.integer(900_000), .integer(900_000)]], "\(name)")
        }
        try expectMasterIntact(server)
    }

    /// A pull page ends before the row that would take it past `limits.max_pull_page_bytes`;
    /// the pages together hold every row, and a new device initialises through them.
    @Test func pullPagesStayWithinTheirByteLimit() async throws {
        let server = try Self.start(limits: ["max_pull_page_bytes": 1_048_576])
        defer { server.stop() }
        let k = try RawDevice(server, opd: "pkm-kebun-lada")
        let name = Self.text(300_000)
        let rows = (1...5).map { i in
            Self.row(
                "p-\(i)", operation: .upsert, version: 0, [0: "127502000000001\(i)", 1: name, 2: "pkm-kebun-lada"])
        }
        let reply = try await k.push(rows, tables: Self.wide)
        #expect(reply.applied == 5)

        var cursor: UInt64 = 0
        var seen: [[SQLValue]] = []
        var pages = 0
        while true {
            var components = URLComponents(
                url: server.url.appendingPathComponent("v1/pull"), resolvingAgainstBaseURL: false)!
            components.queryItems = [URLQueryItem(name: "after", value: String(cursor))]
            let pulled = try await http("GET", components.url!, token: k.token)
            try #require(pulled.status == 200)
            let header = try ChangesetCodec.decodeHeader([UInt8](pulled.body), limits: .pullPage)
            #expect(header.uncompressedLength <= 1_048_576, "page \(pages)")
            let page = try ChangesetCodec.decode([UInt8](pulled.body), limits: .pullPage)
            seen += page.rows.map(\.primaryKey)
            cursor = page.lastSequence
            pages += 1
            if pulled.headers[PullHeaders.hasMore.lowercased()] != "true" { break }
        }
        #expect(pages >= 2)
        for i in 1...5 { #expect(seen.contains([.text("p-\(i)")])) }
        let path = try Self.initialise(server, opd: "pkm-kebun-lada", name: "paged")
        #expect(
            try ScopedSyncTests.rows(path, "SELECT count(*) FROM patients WHERE length(name) = 300000") == [
                [.integer(5)]
            ])
        try expectMasterIntact(server)
    }

    /// Issue 14, item 9: a base version above every version the master issued (the next one, and
    /// 2^63 − 1) is refused for its row with `unknown_base_version`, instead of counting as a
    /// change that saw every other; a change on a real base then merges as usual.
    @Test func aBaseVersionTheMasterNeverIssuedIsRefused() async throws {
        let server = try Self.start()
        defer { server.stop() }
        let b = try RawDevice(server, opd: "pkm-binjai-kota")
        let issued = try #require(
            try masterRows(server, "SELECT max(version) FROM _ks_rows").first?.first.flatMap { value -> UInt64? in
                if case .integer(let v) = value { return UInt64(v) }
                return nil
            })
        let sitiVersion = try #require(try await b.pullAll().first { $0.primaryKey == [.text(Self.siti)] }?.version)
        for base in [issued + 1, UInt64(Int64.max)] {
            let reply = try await b.push(
                [Self.row(Self.siti, operation: .update, version: base, [1: "Siti Palsu"])], tables: Self.wide)
            #expect(reply.applied == 0, "base \(base)")
            #expect(reply.rejected?.map(\.code) == ["unknown_base_version"], "base \(base)")
            #expect(reply.rejected?.map(\.action) == ["restore"])
        }
        // A column base the master never issued, on a real row base.
        let columnBase = try await b.push(
            [
                Changeset.Row(
                    table: 0, operation: .update, version: sitiVersion, stamp: RawDevice.now(),
                    primaryKey: [.text(Self.siti)],
                    columns: [.init(column: 1, value: .text("Siti Palsu"), baseVersion: UInt64(Int64.max))])
            ], tables: Self.wide)
        #expect(columnBase.rejected?.map(\.code) == ["unknown_base_version"])
        #expect(
            try masterRows(server, "SELECT name FROM patients WHERE id = '\(Self.siti)'") == [[.text("Siti Aminah")]])

        let current = try #require(try await b.pullAll().first { $0.primaryKey == [.text(Self.siti)] }?.version)
        let real = try await b.push(
            [Self.row(Self.siti, operation: .update, version: current, [1: "Siti A."])], tables: Self.wide)
        #expect(real.applied == 1 && real.rejected == nil)
        #expect(try masterRows(server, "SELECT name FROM patients WHERE id = '\(Self.siti)'") == [[.text("Siti A.")]])
        #expect(
            try masterRows(server, "SELECT count(*) FROM _ks_conflicts WHERE tbl = 'patients'") == [[.integer(0)]])
        try expectMasterIntact(server)
    }
}
