import Foundation
import GRDB
import KotaSyncCore
import Testing

/// A device that pushes hand-made changesets over HTTP, as a client written from `Protocol/`
/// alone would: one replica id, sequences counted up.
final class RawDevice: @unchecked Sendable {
    // Used by one test at a time, never concurrently.
    let server: URL
    let token: String
    let replica = UUID()
    private var sequence: UInt64 = 0

    init(_ server: ServerProcess, opd: String) throws {
        self.server = server.url
        token = try server.token(opd: opd)
    }

    static let tables = [
        Changeset.Table(name: "patients", primaryKey: ["id"], columns: ["nik", "name", "clinic_id"]),
        Changeset.Table(name: "visits", primaryKey: ["id"], columns: ["patient_id", "clinic_id", "visit_date"]),
    ]

    /// A stamp of now: the server clamps stamps ahead of its clock.
    static func now(_ counter: UInt16 = 0) -> HLC {
        HLC(milliseconds: UInt64(Date().timeIntervalSince1970 * 1000), counter: counter)
    }

    static func patient(
        _ id: String, nik: String, name: String, clinic: String, operation: Changeset.Operation = .upsert,
        version: UInt64 = 0
    ) -> Changeset.Row {
        Changeset.Row(
            table: 0, operation: operation, version: version, stamp: now(), primaryKey: [.text(id)],
            columns: [
                .init(column: 0, value: .text(nik)), .init(column: 1, value: .text(name)),
                .init(column: 2, value: .text(clinic)),
            ])
    }

    static func visit(
        _ id: String, patient: String, clinic: String, operation: Changeset.Operation = .upsert, version: UInt64 = 0,
        stamp: HLC = now()
    ) -> Changeset.Row {
        Changeset.Row(
            table: 1, operation: operation, version: version, stamp: stamp, primaryKey: [.text(id)],
            columns: [
                .init(column: 0, value: .text(patient)), .init(column: 1, value: .text(clinic)),
                .init(column: 2, value: .text("2026-12-01")),
            ])
    }

    /// Pushes `rows` as the next changeset; returns the HTTP status and the raw reply.
    func pushRaw(_ rows: [Changeset.Row], tables: [Changeset.Table] = RawDevice.tables) async throws -> (
        status: Int, body: Data
    ) {
        let first = sequence + 1
        sequence += UInt64(max(rows.count, 1))
        let changeset = Changeset(
            kind: .push, id: UUID(), replicaID: replica, firstSequence: first, lastSequence: sequence, tables: tables,
            rows: rows)
        let reply = try await http(
            "POST", server.appendingPathComponent("v1/push"), token: token, body: ChangesetCodec.encode(changeset))
        return (reply.status, reply.body)
    }

    /// Pushes `rows`, expects 200, and returns the reply.
    func push(_ rows: [Changeset.Row], tables: [Changeset.Table] = RawDevice.tables) async throws -> PushReply {
        let (status, body) = try await pushRaw(rows, tables: tables)
        try #require(status == 200, "push: \(status) \(String(decoding: body, as: UTF8.self))")
        return try ProtocolJSON.decoder().decode(PushReply.self, from: body)
    }

    /// Every row this device is sent by a pull from the start, as (table, key) pairs with the
    /// page's values.
    func pullAll() async throws -> [Changeset.Row] {
        var cursor: UInt64 = 0
        var rows: [Changeset.Row] = []
        while true {
            var components = URLComponents(
                url: server.appendingPathComponent("v1/pull"), resolvingAgainstBaseURL: false)!
            components.queryItems = [URLQueryItem(name: "after", value: String(cursor))]
            let reply = try await http("GET", components.url!, token: token)
            try #require(reply.status == 200, "pull: \(reply.status)")
            let page = try ChangesetCodec.decode([UInt8](reply.body), limits: .pullPage)
            rows += page.rows
            cursor = page.lastSequence
            if reply.headers[PullHeaders.hasMore.lowercased()] != "true" { return rows }
        }
    }

    /// The raw JSON of this replica's conflict list.
    func conflictsJSON() async throws -> Data {
        var components = URLComponents(
            url: server.appendingPathComponent("v1/conflicts"), resolvingAgainstBaseURL: false)!
        components.queryItems = [URLQueryItem(name: "replica", value: replica.uuidString)]
        let reply = try await http("GET", components.url!, token: token)
        try #require(reply.status == 200, "conflicts: \(reply.status)")
        return reply.body
    }
}

/// The master's answer to `sql`, read beside the running server.
func masterRows(_ server: ServerProcess, _ sql: String) throws -> [[SQLValue]] {
    var configuration = Configuration()
    configuration.readonly = true
    let queue = try DatabaseQueue(path: server.database.path, configuration: configuration)
    defer { try? queue.close() }
    return try queue.read { db in try Row.fetchAll(db, sql: sql).map { $0.databaseValues.map(SQLValue.init) } }
}

/// After an adversarial test: the master is intact and its audit chain verifies.
func expectMasterIntact(_ server: ServerProcess) throws {
    #expect(try masterRows(server, "PRAGMA integrity_check") == [[.text("ok")]])
    #expect(try masterRows(server, "PRAGMA foreign_key_check").isEmpty)
}

/// The merge's side paths with the sample's rules as shipped: changes that wait (held for a
/// parent, queued behind a record, quarantined) are judged by their writer's OPD when they
/// arrive and again when they are applied, and a parent in another OPD's scope is treated as
/// one the master does not have. K is a device of pkm-kebun-lada, B one of pkm-binjai-kota.
@Suite(.serialized)
struct MergeSidePathTests {
    static let siti = "0b6f2a8e-4c1d-4e0a-9d3b-2f6c1a7e5b01"

    static func start(_ name: String = #function) throws -> ServerProcess {
        let dir = try makeTemporaryDirectory(name)
        return try ServerProcess(config: try sampleConfig(in: dir, scoped: true), directory: dir)
    }

    /// Issue 14, item 2: B's visit waits for its patient; K pushes a change of that visit that
    /// would move it to Kebun Lada. It is refused when it arrives (the waiting row is B's), so
    /// when B's patient arrives the visit is merged as B's, and K is never sent it.
    @Test func aChangeOfAnotherClinicsWaitingRowIsRefusedAndNeverMovesIt() async throws {
        let server = try Self.start()
        defer { server.stop() }
        let b = try RawDevice(server, opd: "pkm-binjai-kota")
        let k = try RawDevice(server, opd: "pkm-kebun-lada")

        let held = try await b.push([RawDevice.visit("v-b", patient: "p-b", clinic: "pkm-binjai-kota")])
        #expect(held.applied == 0)
        #expect(held.conflicts.map(\.kind) == [.foreignKey])

        let hijack = try await k.push([
            RawDevice.visit("v-b", patient: "p-b", clinic: "pkm-kebun-lada", operation: .update)
        ])
        #expect(hijack.applied == 0)
        #expect(hijack.conflicts.isEmpty, "nothing queued for K: \(hijack.conflicts)")
        #expect(hijack.rejected?.map(\.code) == ["out_of_scope"])
        #expect(hijack.rejected?.map(\.action) == ["discard"])

        let parent = try await b.push([
            RawDevice.patient("p-b", nik: "1275019999990001", name: "Ani", clinic: "pkm-binjai-kota")
        ])
        #expect(parent.applied == 2, "the patient, and B's visit released behind it")
        #expect(
            try masterRows(server, "SELECT clinic_id, patient_id FROM visits WHERE id = 'v-b'") == [
                [.text("pkm-binjai-kota"), .text("p-b")]
            ])
        #expect(
            try masterRows(server, "SELECT clinic_id FROM patients WHERE id = 'p-b'") == [[.text("pkm-binjai-kota")]])
        let kSees = try await k.pullAll().map { $0.primaryKey }
        #expect(!kSees.contains([.text("v-b")]) && !kSees.contains([.text("p-b")]))
        let bSees = try await b.pullAll().map { $0.primaryKey }
        #expect(bSees.contains([.text("v-b")]) && bSees.contains([.text("p-b")]))
        // Nothing of K's waits on the master.
        #expect(
            try masterRows(server, "SELECT count(*) FROM _ks_conflicts WHERE status IN ('held', 'open')") == [
                [.integer(0)]
            ])
        try expectMasterIntact(server)
    }

    /// Issue 14, item 2, the second half: a change is judged by its writer's rules again when it
    /// is finally applied. A queued change of K's onto B's waiting visit, as a master from before
    /// the arrival check may hold one (written into the master directly), is refused when B's
    /// patient releases the queue: the visit stays B's, the record closes with the refusal.
    @Test func aQueuedChangeIsJudgedAgainWhenItIsReleased() async throws {
        let server = try Self.start()
        defer { server.stop() }
        let b = try RawDevice(server, opd: "pkm-binjai-kota")
        let k = try RawDevice(server, opd: "pkm-kebun-lada")
        let own = try await k.push([
            RawDevice.patient("p-k", nik: "1275029999990001", name: "Budi", clinic: "pkm-kebun-lada")
        ])
        #expect(own.applied == 1)
        let held = try await b.push([RawDevice.visit("v-b", patient: "p-b", clinic: "pkm-binjai-kota")])
        let record = try #require(held.conflicts.first?.id)

        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        let queue = try DatabaseQueue(path: server.database.path, configuration: configuration)
        try await queue.write { db in
            let writer = try Int64.fetchOne(
                db, sql: "SELECT number FROM _ks_replicas WHERE opd = 'pkm-kebun-lada'")!
            try db.execute(
                sql: """
                    INSERT INTO _ks_conflicts(tbl, pk, col, kind, policy, status, base_version, base_value, has_base,
                        winner_writer, winner_stamp, winner_value, winner_has_value, loser_writer, loser_stamp,
                        loser_version, loser_insert, loser_value, loser_has_value, changeset, decided_at,
                        loser_delete, reason, held, related_tbl, related_pk)
                    SELECT tbl, pk, col, 'queued', policy, 'held', base_version, base_value, has_base,
                        winner_writer, winner_stamp, winner_value, winner_has_value, ?1, loser_stamp + 1,
                        loser_version, 0, loser_value, loser_has_value, changeset, decided_at,
                        loser_delete, 'Waits behind the visit.',
                        json_set(replace(held, 'pkm-binjai-kota', 'pkm-kebun-lada'), '$.writer', ?1), tbl, pk
                    FROM _ks_conflicts WHERE id = ?2
                    """, arguments: [writer, record])
        }
        try queue.close()

        let parent = try await b.push([
            RawDevice.patient("p-b", nik: "1275019999990001", name: "Ani", clinic: "pkm-binjai-kota")
        ])
        #expect(parent.applied == 2, "the patient, and B's visit released behind it")
        #expect(parent.rejected == nil, "K's refusal is not B's to see")
        #expect(
            try masterRows(server, "SELECT clinic_id FROM visits WHERE id = 'v-b'") == [[.text("pkm-binjai-kota")]])
        let closed = try masterRows(
            server, "SELECT status, resolution LIKE '%out_of_scope%' FROM _ks_conflicts WHERE kind = 'queued'")
        #expect(closed == [[.text("resolved"), .integer(1)]])
        #expect(!(try await k.pullAll()).contains { $0.primaryKey == [.text("v-b")] })
        try expectMasterIntact(server)
    }

    /// Issue 14, item 3: K's visit to B's patient and K's visit to a patient nobody has get the
    /// same reply and the same conflict records (after the ids K chose, the record ids and the
    /// times are set aside); neither is merged, and neither is released when B's patient changes
    /// or arrives.
    @Test func aVisitToAnotherClinicsPatientLooksLikeAVisitToNoPatient() async throws {
        let server = try Self.start()
        defer { server.stop() }
        let b = try RawDevice(server, opd: "pkm-binjai-kota")
        let k = try RawDevice(server, opd: "pkm-kebun-lada")

        // One stamp for both: it is K's own, like the ids.
        let stamp = RawDevice.now()
        let toSiti = try await k.pushRaw([
            RawDevice.visit("v-1", patient: Self.siti, clinic: "pkm-kebun-lada", stamp: stamp)
        ])
        let toNobody = try await k.pushRaw([
            RawDevice.visit("v-2", patient: "p-later", clinic: "pkm-kebun-lada", stamp: stamp)
        ])
        #expect(toSiti.status == 200 && toNobody.status == 200)
        let first = try Self.normalized(toSiti.body, ids: ["v-1": "V", Self.siti: "P"])
        let second = try Self.normalized(toNobody.body, ids: ["v-2": "V", "p-later": "P"])
        #expect(
            first == second,
            "\(String(decoding: toSiti.body, as: UTF8.self))\n\(String(decoding: toNobody.body, as: UTF8.self))")
        #expect(try masterRows(server, "SELECT count(*) FROM visits WHERE id IN ('v-1', 'v-2')") == [[.integer(0)]])

        // B changes its patient, and registers the patient K's second visit names: neither
        // visit is released onto a Binjai Kota patient.
        let sitiVersion = try #require(try await b.pullAll().first { $0.primaryKey == [.text(Self.siti)] }?.version)
        let before = try await k.conflictsJSON()
        let pushed = try await b.push([
            RawDevice.patient("p-later", nik: "1275019999990002", name: "Ani", clinic: "pkm-binjai-kota"),
            RawDevice.patient(
                Self.siti, nik: "1275014503880001", name: "Siti A.", clinic: "pkm-binjai-kota", version: sitiVersion),
        ])
        #expect(pushed.applied == 2)
        #expect(try masterRows(server, "SELECT count(*) FROM visits WHERE id IN ('v-1', 'v-2')") == [[.integer(0)]])
        #expect(try await k.conflictsJSON() == before, "K's records did not change")
        let list = try ProtocolJSON.decoder().decode(ConflictList.self, from: before)
        #expect(list.conflicts.map(\.status) == ["held", "held"])
        #expect(!(try await k.pullAll()).contains { $0.primaryKey == [.text(Self.siti)] })
        try expectMasterIntact(server)
    }

    /// A reply's JSON with the ids the device chose replaced by placeholders, and what the
    /// server numbers or times itself (changeset id, record ids, decision times) left out.
    static func normalized(_ body: Data, ids: [String: String]) throws -> String {
        var text = String(decoding: body, as: UTF8.self)
        for (id, placeholder) in ids { text = text.replacingOccurrences(of: id, with: placeholder) }
        var object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        object["changeset_id"] = nil
        if let conflicts = object["conflicts"] as? [[String: Any]] {
            object["conflicts"] = conflicts.map { record in
                var record = record
                record["id"] = nil
                record["decided_at"] = nil
                return record
            }
        }
        return String(
            decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
    }
}
