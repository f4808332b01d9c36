import Foundation
import GRDB
import KotaSyncClient
import KotaSyncCore
import KotaSyncServer
import Testing

/// The review API on a real server (an `Application` on port 0) over loopback HTTP: who may open
/// which route, and the queue's filters and pages over records made by real pushes.
struct ReviewAPITests {
    typealias Response = (status: Int, headers: [String: String], body: Data)

    static func list(_ url: URL, _ query: String = "", token: String) async throws -> Response {
        try await http("GET", URL(string: url.absoluteString + "/v1/review/conflicts" + query)!, token: token)
    }

    static func decodeList(_ response: Response) throws -> ConflictList {
        #expect(response.status == 200, "\(String(decoding: response.body, as: UTF8.self))")
        return try ProtocolJSON.decoder().decode(ConflictList.self, from: response.body)
    }

    @Test func aDeviceTokenOpensNoReviewRoute() async throws {
        try await InProcessServerTests.withServer { url, store, dir in
            let scenario = try await ConflictScenario.make(url: url, store: store, dir: dir)
            let device = scenario.tokens[0]
            for response in [
                try await Self.list(url, token: device),
                try await http("GET", url.appendingPathComponent("v1/review/conflicts/1"), token: device),
                try await resolve(url, id: 1, ResolveRequest(take: .local), token: device),
            ] {
                #expect(response.status == 403)
                #expect(errorCode(response.body) == "forbidden")
            }
        }
    }

    @Test func aStaffTokenNeitherPushesNorPulls() async throws {
        try await InProcessServerTests.withServer { url, store, dir in
            let scenario = try await ConflictScenario.make(url: url, store: store, dir: dir)
            let staff = try await store.createStaffToken(name: "Ani Lubis", role: .admin, expiresAt: nil).token
            let push = Changeset(
                kind: .push, id: UUID(), replicaID: UUID(), firstSequence: 1, lastSequence: 1,
                tables: [Changeset.Table(name: "villages", primaryKey: ["code"], columns: ["name", "district"])],
                rows: [
                    Changeset.Row(
                        table: 0, operation: .upsert, version: 0,
                        stamp: HLC(milliseconds: 1_764_000_000_000, counter: 0), primaryKey: [.text("9999")],
                        columns: [.init(column: 0, value: .text("Desa Uji")), .init(column: 1, value: .text("Uji"))])
                ])
            let before = try snapshot(dir.appendingPathComponent("master.sqlite").path, tables: ["villages"])
            for response in [
                try await http(
                    "POST", url.appendingPathComponent("v1/push"), token: staff, body: ChangesetCodec.encode(push)),
                try await http("GET", url.appendingPathComponent("v1/pull"), token: staff),
                try await http(
                    "GET",
                    URL(string: url.absoluteString + "/v1/conflicts?replica=\(scenario.replicas[0].id.uuidString)")!,
                    token: staff),
            ] {
                #expect(response.status == 403)
                #expect(errorCode(response.body) == "forbidden")
                let message = try ProtocolJSON.decoder().decode(ErrorBody.self, from: response.body).error.message
                #expect(message.contains("staff"), "the message says why: \(message)")
            }
            #expect(try snapshot(dir.appendingPathComponent("master.sqlite").path, tables: ["villages"]) == before)
        }
    }

    @Test func aViewerReadsTheQueueButCannotResolve() async throws {
        try await InProcessServerTests.withServer { url, store, dir in
            _ = try await ConflictScenario.make(url: url, store: store, dir: dir)
            let viewer = try await store.createStaffToken(name: "Ani Lubis", role: .viewer, expiresAt: nil).token
            let list = try Self.decodeList(try await Self.list(url, token: viewer))
            let first = try #require(list.conflicts.first)
            let one = try await http(
                "GET", url.appendingPathComponent("v1/review/conflicts/\(first.id)"), token: viewer)
            #expect(one.status == 200)
            #expect(try ProtocolJSON.decoder().decode(ConflictReport.self, from: one.body) == first)

            let refused = try await resolve(url, id: first.id, ResolveRequest(take: .remote), token: viewer)
            #expect(refused.status == 403)
            #expect(errorCode(refused.body) == "forbidden")
            #expect(try await store.reviewConflict(id: first.id) == first, "nothing was decided")
        }
    }

    @Test func theReviewRoutesNeedAToken() async throws {
        try await InProcessServerTests.withServer { url, _, _ in
            for token in [nil, "kst_00000000_not-a-real-token"] {
                for response in [
                    try await http("GET", url.appendingPathComponent("v1/review/conflicts"), token: token),
                    try await http("GET", url.appendingPathComponent("v1/review/conflicts/1"), token: token),
                    try await http(
                        "POST", url.appendingPathComponent("v1/review/conflicts/1/resolve"), token: token,
                        body: Array(#"{"take":"local"}"#.utf8), contentType: "application/json"),
                ] {
                    #expect(response.status == 401)
                    #expect(errorCode(response.body) == "unauthorized")
                }
            }
        }
    }

    @Test func unknownIdsAreNotFoundAndMalformedRequestsAreBadRequests() async throws {
        try await InProcessServerTests.withServer { url, store, dir in
            _ = try await ConflictScenario.make(url: url, store: store, dir: dir)
            let reviewer = try await store.createStaffToken(name: "Budi", role: .reviewer, expiresAt: nil).token
            let existing = try #require(try await store.reviewConflicts(ReviewFilter()).conflicts.first)

            let missing = try await http(
                "GET", url.appendingPathComponent("v1/review/conflicts/999999"), token: reviewer)
            #expect(missing.status == 404)
            #expect(errorCode(missing.body) == "not_found")
            let missingResolve = try await resolve(url, id: 999_999, ResolveRequest(take: .local), token: reviewer)
            #expect(missingResolve.status == 404)
            #expect(errorCode(missingResolve.body) == "not_found")

            for path in ["v1/review/conflicts/abc", "v1/review/conflicts/0", "v1/review/conflicts/-3"] {
                let response = try await http("GET", url.appendingPathComponent(path), token: reviewer)
                #expect(response.status == 400, "\(path)")
                #expect(errorCode(response.body) == "bad_request", "\(path)")
            }
            for query in ["?status=bogus", "?status=", "?limit=0", "?after=-1", "?after=x", "?table="] {
                let response = try await Self.list(url, query, token: reviewer)
                #expect(response.status == 400, "\(query)")
                #expect(errorCode(response.body) == "bad_request", "\(query)")
            }
            for body in [
                "", "{", #"{"take":"both"}"#, #"{"note":"no take"}"#, #"{"take":"merged","set":{"phone":"x"}}"#,
            ] {
                let response = try await http(
                    "POST", url.appendingPathComponent("v1/review/conflicts/\(existing.id)/resolve"), token: reviewer,
                    body: Array(body.utf8), contentType: "application/json")
                #expect(response.status == 400, "\(body)")
                #expect(errorCode(response.body) == "bad_request", "\(body)")
            }
            #expect(try await store.reviewConflict(id: existing.id) == existing, "nothing was decided")
        }
    }

    @Test func theQueueFiltersByStatusTableAndOPD() async throws {
        try await InProcessServerTests.withServer { url, store, dir in
            _ = try await ConflictScenario.make(url: url, store: store, dir: dir)
            let viewer = try await store.createStaffToken(name: "Ani Lubis", role: .viewer, expiresAt: nil).token
            let all = try Self.decodeList(try await Self.list(url, token: viewer)).conflicts
            #expect(all.count == 3)
            #expect(all.map(\.id) == all.map(\.id).sorted())
            #expect(
                Set(all.map { "\($0.table).\($0.column ?? "")" })
                    == ["patients.phone", "patients.name", "villages.name"])

            func columns(_ query: String) async throws -> Set<String> {
                Set(
                    try Self.decodeList(try await Self.list(url, query, token: viewer)).conflicts.map {
                        "\($0.table).\($0.column ?? "")"
                    })
            }
            #expect(try await columns("?table=villages") == ["villages.name"])
            #expect(try await columns("?table=patients") == ["patients.phone", "patients.name"])
            #expect(try await columns("?table=visits") == [])
            #expect(try await columns("?opd=pkm-kebun-lada") == ["patients.phone", "patients.name"])
            #expect(try await columns("?opd=bappeda") == ["villages.name"])
            #expect(try await columns("?opd=pkm-binjai-kota").count == 3)
            #expect(try await columns("?opd=dinkes") == [])
            #expect(try await columns("?opd=bappeda&table=patients") == [])

            // Whatever status the merge gave them, the filter returns exactly the records with it.
            for status in ConflictReport.Status.allCases {
                let listed = try Self.decodeList(try await Self.list(url, "?status=\(status.rawValue)", token: viewer))
                #expect(listed.conflicts == all.filter { $0.status == status.rawValue }, "\(status)")
            }
            #expect(try await columns("?status=resolved") == [], "nobody resolved anything")
        }
    }

    @Test func theQueuePagesInIdOrder() async throws {
        try await InProcessServerTests.withServer { url, store, dir in
            _ = try await ConflictScenario.make(url: url, store: store, dir: dir)
            let viewer = try await store.createStaffToken(name: "Ani Lubis", role: .viewer, expiresAt: nil).token
            let all = try Self.decodeList(try await Self.list(url, token: viewer))
            #expect(all.next == nil)
            var seen: [ConflictReport] = []
            var after: Int64 = 0
            var pages = 0
            while true {
                let page = try Self.decodeList(try await Self.list(url, "?limit=1&after=\(after)", token: viewer))
                pages += 1
                #expect(page.conflicts.count == 1)
                seen += page.conflicts
                guard let next = page.next else { break }
                #expect(next == page.conflicts.last?.id)
                after = next
                try #require(pages < 10, "paging must end")
            }
            #expect(seen == all.conflicts)
            #expect(pages == 3)
            let rest = try Self.decodeList(try await Self.list(url, "?after=\(all.conflicts[0].id)", token: viewer))
            #expect(rest.conflicts == Array(all.conflicts.dropFirst()))
        }
    }
}
