import Foundation
import KotaSyncCore
import Testing

/// Every kind of bad push gets a clear error with a stable code, leaves the master exactly as it
/// was, and the server goes on serving.
@Suite(.serialized)
struct BadInputTests {
    static let tables = ["villages", "patients", "visits", "diagnoses", "_ks_rows", "_ks_history", "_ks_changesets"]

    /// A push of rows to `villages`/`patients`, the first one valid.
    static func push(_ rows: [Changeset.Row], tables: [Changeset.Table]? = nil) -> Changeset {
        Changeset(
            kind: .push, id: UUID(), replicaID: UUID(), firstSequence: 1, lastSequence: UInt64(max(rows.count, 1)),
            tables: tables ?? [
                Changeset.Table(name: "villages", primaryKey: ["code"], columns: ["name", "district"]),
                Changeset.Table(name: "patients", primaryKey: ["id"], columns: ["name", "clinic_id", "birth_date"]),
            ],
            rows: rows)
    }

    static let validRow = Changeset.Row(
        table: 0, operation: .upsert, version: 0, stamp: HLC(milliseconds: 1_764_000_000_000, counter: 1),
        primaryKey: [.text("8888")],
        columns: [.init(column: 0, value: .text("Desa Baik")), .init(column: 1, value: .text("Baik"))])

    static func patient(_ columns: [Changeset.ColumnValue]) -> Changeset.Row {
        Changeset.Row(
            table: 1, operation: .upsert, version: 0, stamp: HLC(milliseconds: 1_764_000_000_000, counter: 2),
            primaryKey: [.text("p-bad")], columns: columns)
    }

    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        var body: @Sendable ([UInt8]) -> [UInt8]
        var changeset: Changeset
        var status: Int
        var code: String
        var testDescription: String { name }
    }

    static let cases: [Case] = {
        let good = push([validRow])
        return [
            Case(
                name: "truncated", body: { Array($0.prefix($0.count - 5)) }, changeset: good, status: 400,
                code: "changeset_truncated"),
            Case(
                name: "header only", body: { Array($0.prefix(30)) }, changeset: good, status: 400,
                code: "changeset_truncated"),
            Case(
                name: "corrupted",
                body: {
                    var b = $0
                    b[b.count - 3] ^= 0x5A
                    return b
                }, changeset: good, status: 400,
                code: "changeset_corrupt"),
            Case(
                name: "wrong version",
                body: {
                    var b = $0
                    b[4] = 9
                    return b
                }, changeset: good, status: 400,
                code: "unsupported_version"),
            Case(
                name: "not a changeset", body: { _ in Array("{\"rows\": []}".utf8) }, changeset: good, status: 400,
                code: "unsupported_version"),
            Case(
                name: "declares a huge payload",
                body: {
                    var b = $0
                    b[56] = 0x7F
                    b[57] = 0xFF
                    b[58] = 0xFF
                    b[59] = 0xFF
                    return b
                }, changeset: good,
                status: 413, code: "changeset_too_large"),
            Case(
                name: "body over the limit", body: { $0 + [UInt8](repeating: 7, count: 70_000) }, changeset: good,
                status: 413, code: "body_too_large"),
            Case(
                name: "unknown table", body: { $0 },
                changeset: push(
                    [validRow],
                    tables: [Changeset.Table(name: "secrets", primaryKey: ["code"], columns: ["name", "district"])]),
                status: 422, code: "unknown_table"),
            Case(
                name: "unknown column", body: { $0 },
                changeset: push(
                    [validRow],
                    tables: [Changeset.Table(name: "villages", primaryKey: ["code"], columns: ["name", "mayor"])]),
                status: 422, code: "unknown_column"),
            Case(
                name: "wrong key", body: { $0 },
                changeset: push(
                    [validRow],
                    tables: [Changeset.Table(name: "villages", primaryKey: ["name"], columns: ["code", "district"])]),
                status: 422, code: "invalid_primary_key"),
            Case(
                name: "integer in a text column", body: { $0 },
                changeset: push([
                    validRow,
                    patient([.init(column: 0, value: .integer(42)), .init(column: 1, value: .text("pkm-binjai-kota"))]),
                ]),
                status: 422, code: "type_mismatch"),
            Case(
                name: "NOT NULL broken after a valid row", body: { $0 },
                changeset: push([
                    validRow,
                    patient([.init(column: 0, value: .null), .init(column: 1, value: .text("pkm-binjai-kota"))]),
                ]),
                status: 422, code: "constraint_violation"),
            Case(
                name: "pull page pushed", body: { $0 },
                changeset: Changeset(
                    kind: .pull, id: UUID(), replicaID: .zero, firstSequence: 0, lastSequence: 0, tables: [], rows: []),
                status: 400, code: "changeset_malformed"),
        ]
    }()

    @Test(arguments: cases)
    func badPushIsRefusedWithItsCodeAndChangesNothing(_ testCase: Case) async throws {
        let dir = try makeTemporaryDirectory(testCase.name)
        let config = try sampleConfig(in: dir)
        let yaml = try String(contentsOf: config, encoding: .utf8)
            .replacingOccurrences(of: "max_body_bytes: 16777216", with: "max_body_bytes: 65536")
        try yaml.write(to: config, atomically: true, encoding: .utf8)
        let server = try ServerProcess(config: config, directory: dir)
        defer { server.stop() }
        let token = try server.token(opd: "pkm-binjai-kota")
        let before = try snapshot(server.database.path, tables: Self.tables)

        let body = testCase.body(ChangesetCodec.encode(testCase.changeset))
        let response = try await http("POST", server.url.appendingPathComponent("v1/push"), token: token, body: body)
        #expect(response.status == testCase.status)
        let error = try ProtocolJSON.decoder().decode(ErrorBody.self, from: response.body)
        #expect(error.error.code == testCase.code)
        #expect(!error.error.message.isEmpty)

        #expect(try snapshot(server.database.path, tables: Self.tables) == before)
        let health = try await http("GET", server.url.appendingPathComponent("v1/health"))
        #expect(health.status == 200)
        // And a good push still goes through.
        let ok = try await http(
            "POST", server.url.appendingPathComponent("v1/push"), token: token,
            body: ChangesetCodec.encode(Self.push([Self.validRow])))
        #expect(ok.status == 200)
    }

    @Test(arguments: [nil, "kst_00000000_not-a-real-token", ""])
    func requestsWithoutAValidTokenAreUnauthorised(_ token: String?) async throws {
        let dir = try makeTemporaryDirectory()
        let server = try ServerProcess(config: try sampleConfig(in: dir), directory: dir)
        defer { server.stop() }
        let before = try snapshot(server.database.path, tables: Self.tables)
        for (method, path, body) in [
            ("GET", "v1/schema", nil), ("GET", "v1/pull", nil),
            ("POST", "v1/push", ChangesetCodec.encode(Self.push([Self.validRow]))),
        ] as [(String, String, [UInt8]?)] {
            let response = try await http(method, server.url.appendingPathComponent(path), token: token, body: body)
            #expect(response.status == 401, "\(method) \(path)")
            let error = try ProtocolJSON.decoder().decode(ErrorBody.self, from: response.body)
            #expect(error.error.code == "unauthorized")
        }
        #expect(try snapshot(server.database.path, tables: Self.tables) == before)
    }
}
