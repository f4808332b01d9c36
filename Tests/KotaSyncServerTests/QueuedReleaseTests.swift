import Foundation
import GRDB
import KotaSyncCore
import Testing

@testable import KotaSyncServer

/// Changes queued behind a row the master does not hold yet (a visit waiting for its patient, a
/// quarantined patient), released later: two sequences the side-path access oracle found
/// (`AccessSidePathOracleTests`, seeds 6 and 1) that end in a refusal or a crash instead of a
/// merge or a clear answer.
@Suite("Releases of queued changes")
struct QueuedReleaseTests {
    static let yaml = """
        name: Release
        opds:
          - id: pkm-a
            name: Puskesmas A
          - id: pkm-b
            name: Puskesmas B
        tables:
          - name: patients
            ddl: "CREATE TABLE patients (id TEXT PRIMARY KEY, nik TEXT UNIQUE, name TEXT NOT NULL, phone TEXT)"
          - name: visits
            sync:
              scope: clinic_id
            ddl: "CREATE TABLE visits (id TEXT PRIMARY KEY, patient_id TEXT NOT NULL REFERENCES patients(id), clinic_id TEXT, complaint TEXT)"
          - name: vitals
            ddl: "CREATE TABLE vitals (id TEXT PRIMARY KEY, patient_id TEXT NOT NULL REFERENCES patients(id), weight REAL CHECK (weight > 0))"
        """

    static func open() throws -> SQLiteMasterStore {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "kotasync-queued-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let config = try ServerConfig.parse(yaml: yaml, baseURL: dir)
        return try SQLiteMasterStore(path: dir.appendingPathComponent("m.sqlite").path, config: config)
    }

    /// One row pushed by `replica` (of Puskesmas A).
    static func push(
        _ store: SQLiteMasterStore, replica: UUID, sequence: UInt64, _ operation: Changeset.Operation,
        table name: String, id: String, values: [String: SQLValue]
    ) async throws -> PushReply {
        let table = store.config.table(named: name)!.changesetTable
        let row = Changeset.Row(
            table: 0, operation: operation, version: 0, stamp: HLC(milliseconds: 1_000 + sequence, counter: 0),
            primaryKey: [.text(id)],
            columns: values.sorted { $0.key < $1.key }.map { name, value in
                Changeset.ColumnValue(column: table.columns.firstIndex(of: name)!, value: value)
            })
        let changeset = Changeset(
            kind: .push, id: UUID(), replicaID: replica, firstSequence: sequence, lastSequence: sequence,
            tables: [table], rows: [row])
        let outcome = try await store.push(changeset, from: Device(tokenID: "t", opd: "pkm-a"))
        return try ProtocolJSON.decoder().decode(PushReply.self, from: outcome.reply)
    }

    /// A visit waits for its patient; another device of the clinic, which never saw it, changes its
    /// complaint (queued behind the visit), and a reviewer rejects that change. When the patient
    /// arrives, the patient's push is accepted: whatever the release of the waiting visit meets, it
    /// does not refuse the arriving changeset, whose rows are valid — a refusal would come back on
    /// every retry of the device's outbox.
    @Test func aPatientArrivesAfterAQueuedChangeOfItsWaitingVisitWasRejectedAndIsAccepted() async throws {
        let store = try Self.open()
        let first = UUID()
        let second = UUID()
        _ = try await Self.push(
            store, replica: first, sequence: 1, .upsert, table: "visits", id: "v1",
            values: ["patient_id": .text("p1"), "clinic_id": .text("pkm-a"), "complaint": .text("demam")])
        _ = try await Self.push(
            store, replica: second, sequence: 1, .update, table: "visits", id: "v1",
            values: ["clinic_id": .text("pkm-a"), "complaint": .text("batuk")])
        // A reviewer rejects the queued change (the visit itself still waits for its patient).
        let queued = try #require(
            try await store.reviewConflicts(ReviewFilter(table: "visits")).conflicts.first { $0.kind == .queued })
        _ = try await store.resolveConflict(id: queued.id, ResolveRequest(take: .local), by: "Ani Lubis")
        await #expect(throws: Never.self, "the patient's own push is refused for a released change") {
            _ = try await Self.push(
                store, replica: first, sequence: 2, .upsert, table: "patients", id: "p1",
                values: ["nik": .text("1"), "name": .text("Sari")])
        }
        let patients = try await store.pool.read { db in try String.fetchAll(db, sql: "SELECT id FROM patients") }
        #expect(patients == ["p1"])
        // The visit itself was released behind its patient, as its writer sent it: rejecting one
        // queued change of it rejected that change, not the visit.
        let visit = try await store.pool.read { db in
            try Row.fetchOne(db, sql: "SELECT patient_id, complaint FROM visits WHERE id = 'v1'")
        }
        #expect(visit?["patient_id"] == "p1")
        #expect(visit?["complaint"] == "demam")
    }

    /// A visit waits for its patient with an update of it queued behind; when the patient
    /// arrives the visit is refused by its writer's rules (a clinic it may not write, as a master
    /// from before the arrival check may hold). The queued update is released in turn, and as
    /// there is no row to update it waits for a person instead of becoming a row of its two
    /// columns; the patient's push is accepted.
    @Test func aQueuedUpdateBehindARowRefusedAtReleaseWaitsForAPerson() async throws {
        let store = try Self.open()
        let first = UUID()
        let second = UUID()
        _ = try await Self.push(
            store, replica: first, sequence: 1, .upsert, table: "visits", id: "v1",
            values: ["patient_id": .text("p1"), "clinic_id": .text("pkm-a"), "complaint": .text("demam")])
        _ = try await Self.push(
            store, replica: second, sequence: 1, .update, table: "visits", id: "v1",
            values: ["clinic_id": .text("pkm-a"), "complaint": .text("batuk")])
        try await store.pool.write { db in
            try db.execute(
                sql: "UPDATE _ks_conflicts SET held = replace(held, 'pkm-a', 'pkm-b') WHERE kind = 'foreign_key'")
        }
        let reply = try await Self.push(
            store, replica: first, sequence: 2, .upsert, table: "patients", id: "p1",
            values: ["nik": .text("1"), "name": .text("Sari")])
        #expect(reply.applied == 1)
        let records = try await store.reviewConflicts(ReviewFilter(table: "visits")).conflicts
        let head = try #require(records.first { $0.kind == .foreignKey })
        #expect(head.status == "resolved")
        #expect(head.resolution?.note?.contains("out_of_scope") == true)
        let queued = try #require(records.first { $0.kind == .queued })
        #expect(queued.status == "open")
        #expect(queued.reason?.contains("does not hold") == true)
        let visits = try await store.pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM visits") }
        #expect(visits == 0)
    }

    /// A row held for its parent that breaks a CHECK constraint (never written while it waited)
    /// is released when the parent arrives: the parent's push is accepted, and the row stays in
    /// its record, `open` for a person, with the constraint as the reason.
    @Test func aReleasedRowThatBreaksACheckWaitsForAPersonAndThePushIsAccepted() async throws {
        let store = try Self.open()
        let replica = UUID()
        _ = try await Self.push(
            store, replica: replica, sequence: 1, .upsert, table: "vitals", id: "w1",
            values: ["patient_id": .text("p1"), "weight": .real(-1)])
        let reply = try await Self.push(
            store, replica: replica, sequence: 2, .upsert, table: "patients", id: "p1",
            values: ["nik": .text("1"), "name": .text("Sari")])
        #expect(reply.applied == 1)
        let record = try #require(
            try await store.reviewConflicts(ReviewFilter(table: "vitals")).conflicts.first { $0.kind == .foreignKey })
        #expect(record.status == "open")
        #expect(record.reason?.contains("CHECK") == true)
        #expect(record.held?.values["weight"] == .real(-1), "the change is kept as it arrived")
        let (patients, vitals) = try await store.pool.read { db in
            (
                try String.fetchAll(db, sql: "SELECT id FROM patients"),
                try Int.fetchOne(db, sql: "SELECT count(*) FROM vitals")
            )
        }
        #expect(patients == ["p1"])
        #expect(vitals == 0)
        // A reviewer applies it corrected.
        let resolved = try await store.resolveConflict(
            id: record.id, ResolveRequest(take: .remote, set: ["weight": .real(61.5)]), by: "Ani Lubis")
        #expect(resolved.status == "resolved")
        let weight = try await store.pool.read { db in try Double.fetchOne(db, sql: "SELECT weight FROM vitals") }
        #expect(weight == 61.5)
    }

    /// A reviewer applying a held row whose correction breaks a CHECK constraint gets the
    /// constraint as a `constraint_violation`, and nothing of the decision stays.
    @Test func applyingAHeldRowThatBreaksACheckAnswersWithACodeAndChangesNothing() async throws {
        let store = try Self.open()
        let replica = UUID()
        _ = try await Self.push(
            store, replica: replica, sequence: 1, .upsert, table: "patients", id: "p1",
            values: ["nik": .text("1"), "name": .text("Sari")])
        _ = try await Self.push(
            store, replica: replica, sequence: 2, .upsert, table: "vitals", id: "w1",
            values: ["patient_id": .text("p9"), "weight": .real(60)])
        let record = try #require(
            try await store.reviewConflicts(ReviewFilter(table: "vitals")).conflicts.first { $0.kind == .foreignKey })
        do {
            _ = try await store.resolveConflict(
                id: record.id, ResolveRequest(take: .remote, set: ["patient_id": .text("p1"), "weight": .real(-2)]),
                by: "Ani Lubis")
            Issue.record("a row breaking a CHECK was applied")
        } catch let error as SyncError {
            #expect(error.code == .constraintViolation)
        }
        #expect(try await store.reviewConflict(id: record.id).status == "held")
        let vitals = try await store.pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM vitals") }
        #expect(vitals == 0)
    }

    /// A quarantined patient (the same NIK twice) with a later update queued behind it; a reviewer
    /// applies the queued update. The answer is the record, or a refusal with a stable code —
    /// never the database's own constraint error (a 500 over HTTP).
    @Test func applyingAQueuedUpdateOfAQuarantinedRowAnswersWithACode() async throws {
        let store = try Self.open()
        let replica = UUID()
        _ = try await Self.push(
            store, replica: replica, sequence: 1, .upsert, table: "patients", id: "p1",
            values: ["nik": .text("7"), "name": .text("Sari")])
        _ = try await Self.push(
            store, replica: replica, sequence: 2, .upsert, table: "patients", id: "p2",
            values: ["nik": .text("7"), "name": .text("Sari B")])
        _ = try await Self.push(
            store, replica: replica, sequence: 3, .update, table: "patients", id: "p2",
            values: ["phone": .text("0812")])
        let queued = try #require(
            try await store.reviewConflicts(ReviewFilter(table: "patients")).conflicts.first { $0.kind == .queued })
        do {
            _ = try await store.resolveConflict(id: queued.id, ResolveRequest(take: .remote), by: "Ani Lubis")
        } catch {
            #expect(error is SyncError, "a reviewer's decision failed with \(error)")
        }
        // The update waits behind the quarantined row: applying it first would make a row of
        // its one column. It is refused, changes nothing, and is merged once the row is kept.
        #expect(try await store.reviewConflict(id: queued.id).status == "held")
        let quarantined = try #require(
            try await store.reviewConflicts(ReviewFilter(table: "patients")).conflicts.first { $0.kind == .unique })
        _ = try await store.resolveConflict(
            id: quarantined.id, ResolveRequest(take: .remote, set: ["nik": .text("8")]), by: "Ani Lubis")
        #expect(try await store.reviewConflict(id: queued.id).status == "resolved")
        let p2 = try await store.pool.read { db in
            try Row.fetchOne(db, sql: "SELECT nik, name, phone FROM patients WHERE id = 'p2'")
        }
        #expect(p2?["nik"] == "8")
        #expect(p2?["name"] == "Sari B")
        #expect(p2?["phone"] == "0812")
    }
}
