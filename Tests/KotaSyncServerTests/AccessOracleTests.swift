import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite
import Testing

@testable import KotaSyncServer

/// Thousands of random pushes and pulls from devices of several OPDs — including writes of other
/// OPDs' rows, moves of rows between OPDs, writes to reference tables and to hidden columns — run
/// against the real store and checked against an independent statement of the rules: no row
/// outside a device's scope is ever written by it or returned to it.
@Suite("Access oracle")
struct AccessOracleTests {
    static let yaml = """
        name: Access
        opds:
          - id: dinkes
            name: Dinas Kesehatan
          - id: pkm-a
            name: Puskesmas A
            parent: dinkes
          - id: pkm-b
            name: Puskesmas B
            parent: dinkes
          - id: bappeda
            name: Bappeda
        tables:
          - name: patients
            sync:
              scope: clinic_id
              hidden: [secret]
            ddl: "CREATE TABLE patients (id TEXT PRIMARY KEY, clinic_id TEXT, name TEXT, secret TEXT)"
          - name: villages
            sync:
              direction: down
            ddl: "CREATE TABLE villages (code TEXT PRIMARY KEY, name TEXT)"
          - name: reports
            sync:
              scope: opd
              direction: up
            ddl: "CREATE TABLE reports (id TEXT PRIMARY KEY, opd TEXT, body TEXT)"
          - name: notes
            ddl: "CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT)"
        """

    /// The rules, stated again independently of `SyncRules`: which scope values each OPD sees.
    static let sees: [String: Set<String>] = [
        "dinkes": ["dinkes", "pkm-a", "pkm-b"], "pkm-a": ["pkm-a"], "pkm-b": ["pkm-b"], "bappeda": ["bappeda"],
    ]
    static let scopeColumn = ["patients": "clinic_id", "reports": "opd"]
    static let opds = ["dinkes", "pkm-a", "pkm-b", "bappeda"]

    struct Device {
        var opd: String
        var replica = UUID()
        var sequence: UInt64 = 0
        var cursor: UInt64 = 0
    }

    /// Every row of every table, with the scope value the master keeps for it (tombstones too).
    static func state(_ store: SQLiteMasterStore, config: ServerConfig) async throws -> [String: (
        live: [String: SQLValue]?, scope: SQLValue
    )] {
        try await store.pool.read { db in
            var out: [String: (live: [String: SQLValue]?, scope: SQLValue)] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT tbl, pk, scope FROM _ks_rows") {
                let table: String = row["tbl"]
                let key = try PrimaryKeyCoding.decode([UInt8](row["pk"] as Data))
                guard case .text(let id) = key.first else { continue }
                let keyName = config.table(named: table)!.primaryKey[0].name
                let live = try Row.fetchOne(
                    db, sql: "SELECT * FROM \(table) WHERE \(keyName) = ?", arguments: [id]
                ).map { r in
                    Dictionary(uniqueKeysWithValues: r.columnNames.map { ($0, SQLValue(r[$0] as DatabaseValue)) })
                }
                out["\(table):\(id)"] = (live, SQLValue(row["scope"] as DatabaseValue))
            }
            return out
        }
    }

    static func scope(of row: [String: SQLValue]?, table: String) -> String? {
        guard let column = scopeColumn[table], case .text(let value)? = row?[column] else { return nil }
        return value
    }

    @Test func noRowOutsideADevicesScopeIsEverWrittenByItOrReturnedToIt() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "kotasync-oracle-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = try ServerConfig.parse(yaml: Self.yaml, baseURL: dir)
        let store = try SQLiteMasterStore(path: dir.appendingPathComponent("m.sqlite").path, config: config)
        var g = SplitMix64(seed: 5)
        var devices = Self.opds.flatMap { opd in [Device(opd: opd), Device(opd: opd)] }
        // Which OPDs have been shown each row (so a removal sent to them is not a leak).
        var everVisible: [String: Set<String>] = [:]
        var checkedPushes = 0
        var checkedPulls = 0
        var refusedRows = 0
        var acceptedRows = 0
        var sentRows = 0
        var clock: UInt64 = 1_000
        let tables = ["patients", "villages", "reports", "notes"]

        func noteVisibility(_ state: [String: (live: [String: SQLValue]?, scope: SQLValue)]) {
            for (key, row) in state {
                let table = String(key.split(separator: ":")[0])
                guard let live = row.live, table != "reports" else { continue }
                if let owner = Self.scope(of: live, table: table) {
                    for opd in Self.opds where Self.sees[opd]!.contains(owner) {
                        everVisible[key, default: []].insert(opd)
                    }
                } else if Self.scopeColumn[table] == nil {
                    everVisible[key, default: []].formUnion(Self.opds)
                }
            }
        }

        // Seed rows of every table as the master (through a push of the health office would be
        // refused for villages): straight into the master as the Command Center would.
        for i in 0..<8 {
            let owner = Self.opds[i % 4]
            var d = Device(opd: owner)
            d.sequence = 1
            let changeset = Changeset(
                kind: .push, id: UUID(), replicaID: d.replica, firstSequence: 1, lastSequence: 1,
                tables: [config.table(named: "patients")!.changesetTable],
                rows: [
                    Changeset.Row(
                        table: 0, operation: .upsert, version: 0, stamp: HLC(milliseconds: 500, counter: UInt16(i)),
                        primaryKey: [.text("p\(i)")],
                        columns: [.init(column: 0, value: .text(owner)), .init(column: 1, value: .text("n\(i)"))])
                ])
            _ = try await store.push(changeset, from: KotaSyncServer.Device(tokenID: "seed", opd: owner))
        }
        try await store.pool.write { db in
            try db.execute(sql: "INSERT INTO villages VALUES ('v1', 'Kartini'), ('v2', 'Satria')")
            try db.execute(sql: "UPDATE patients SET secret = 'hidden-' || id")
        }
        noteVisibility(try await Self.state(store, config: config))

        for step in 0..<2_000 {
            let d = Int.random(in: 0..<devices.count, using: &g)
            let device = devices[d]
            if Bool.random(using: &g) {
                // A push of 1-5 rows, many of them not allowed.
                let before = try await Self.state(store, config: config)
                // A base that saw every change: the master's latest version (a base above it was
                // never issued, and is refused).
                let issued = try await store.pool.read { db in
                    try UInt64.fetchOne(db, sql: "SELECT max(version) FROM _ks_rows") ?? 0
                }
                var rows: [Changeset.Row] = []
                var used = Set<String>()
                let tableName = tables.randomElement(using: &g)!
                let table = config.table(named: tableName)!
                for _ in 0..<Int.random(in: 1...5, using: &g) {
                    let id = "\(tableName.prefix(1))\(Int.random(in: 0..<12, using: &g))"
                    guard used.insert(id).inserted else { continue }
                    let key = "\(tableName):\(id)"
                    let op: Changeset.Operation = [.upsert, .update, .update, .delete].randomElement(using: &g)!
                    var columns: [Changeset.ColumnValue] = []
                    if op != .delete {
                        for (c, column) in table.columns.enumerated() where Bool.random(using: &g) {
                            let value: SQLValue =
                                column.name == Self.scopeColumn[tableName]
                                ? .text((Self.opds + ["nowhere"]).randomElement(using: &g)!)
                                : .text("x\(step)")
                            columns.append(.init(column: c, value: value))
                        }
                    }
                    clock += 1
                    rows.append(
                        Changeset.Row(
                            table: 0, operation: op, version: before[key] == nil ? 0 : issued,
                            stamp: HLC(milliseconds: clock, counter: 0), primaryKey: [.text(id)], columns: columns))
                }
                devices[d].sequence += 1
                let changeset = Changeset(
                    kind: .push, id: UUID(), replicaID: device.replica, firstSequence: devices[d].sequence,
                    lastSequence: devices[d].sequence, tables: [table.changesetTable], rows: rows)
                let outcome = try await store.push(
                    changeset, from: KotaSyncServer.Device(tokenID: "t", opd: device.opd))
                let reply = try ProtocolJSON.decoder().decode(PushReply.self, from: outcome.reply)
                let after = try await Self.state(store, config: config)
                checkedPushes += 1
                let refused = Set(
                    (reply.rejected ?? []).map { row -> String in
                        guard case .text(let id) = row.primaryKey.first else { return "?" }
                        return "\(row.table):\(id)"
                    })
                for row in rows {
                    guard case .text(let id) = row.primaryKey.first else { continue }
                    let key = "\(tableName):\(id)"
                    // The rule, stated plainly: a device writes only rows whose scope value,
                    // before and after, is its OPD or one under it; never reference data.
                    let allowed: Bool
                    if tableName == "villages" {
                        allowed = false
                    } else if let column = Self.scopeColumn[tableName] {
                        let old: String?? = before[key].map { entry in
                            if case .text(let s) = entry.scope { return s } else { return nil }
                        }
                        let given = row.columns.first { table.columns[$0.column].name == column }?.value
                        var new: String?
                        if row.operation != .delete {
                            if case .text(let s)? = given {
                                new = s
                            } else if given == nil, case .some(.some(let s)) = old {
                                new = s
                            }
                        }
                        let oldOK = old.map { o in o.map { Self.sees[device.opd]!.contains($0) } ?? false } ?? true
                        let newOK = row.operation == .delete || new.map { Self.sees[device.opd]!.contains($0) } ?? false
                        allowed = oldOK && newOK
                    } else {
                        allowed = true
                    }
                    // A delete of a row the device may not see is ignored, as a delete of a key
                    // the master never had, not refused: refusing it would tell the device that
                    // another OPD holds the key (access.md §2).
                    let ignored = !allowed && row.operation == .delete && tableName != "villages"
                    #expect(
                        refused.contains(key) == (!allowed && !ignored),
                        "step \(step): \(device.opd) \(row.operation) \(key)")
                    if allowed { acceptedRows += 1 } else { refusedRows += 1 }
                    if !allowed {
                        #expect(
                            before[key]?.live == after[key]?.live,
                            "step \(step): a refused row changed the master: \(key)")
                    }
                    // Hidden columns are never taken from a replica.
                    if tableName == "patients", let live = after[key]?.live, let old = before[key]?.live {
                        #expect(live["secret"] == old["secret"], "step \(step): a replica wrote a hidden column")
                    }
                }
                // Nothing else moved.
                for (key, entry) in after
                where !rows.contains(where: { r in
                    if case .text(let id) = r.primaryKey.first {
                        return "\(tableName):\(id)" == key
                    } else {
                        return false
                    }
                }) {
                    #expect(before[key]?.live == entry.live, "step \(step): \(key) changed without being pushed")
                }
                noteVisibility(after)
            } else {
                // A pull from the device's cursor, or from the start.
                let from = Bool.random(using: &g) ? 0 : device.cursor
                let page = try await store.pull(after: from, limit: Int.random(in: 1...20, using: &g), opd: device.opd)
                devices[d].cursor = page.nextCursor
                let decoded = try ChangesetCodec.decode(page.body)
                checkedPulls += 1
                for row in decoded.rows {
                    sentRows += 1
                    let table = decoded.tables[row.table]
                    guard case .text(let id) = row.primaryKey.first else { continue }
                    let key = "\(table.name):\(id)"
                    #expect(table.name != "reports", "step \(step): an up table was pulled")
                    if row.operation == .delete {
                        #expect(
                            everVisible[key, default: []].contains(device.opd),
                            "step \(step): \(device.opd) was sent the removal of \(key), which it never saw")
                        continue
                    }
                    var values: [String: SQLValue] = [:]
                    for c in row.columns { values[table.columns[c.column]] = c.value }
                    if let column = Self.scopeColumn[table.name] {
                        guard case .text(let owner)? = values[column] else {
                            Issue.record("step \(step): \(key) sent without its scope value")
                            continue
                        }
                        #expect(
                            Self.sees[device.opd]!.contains(owner),
                            "step \(step): \(device.opd) was sent \(key) of \(owner)")
                    }
                    if table.name == "patients" { #expect(values["secret"] == .null, "hidden column sent") }
                }
            }
        }
        print(
            "access oracle: \(checkedPushes) pushes (\(acceptedRows) rows allowed, \(refusedRows) refused), \(checkedPulls) pulls (\(sentRows) rows sent) checked"
        )
        #expect(checkedPushes + checkedPulls == 2_000)
        #expect(refusedRows > 100 && acceptedRows > 100 && sentRows > 100, "the random requests exercise both sides")
    }

    // MARK: - Judged again when finally applied (issue 14, decision D4)

    /// The health office with Puskesmas B under it (`under: true`) or not: the rules of the
    /// releases below change between a change's arrival and its release.
    static func releaseYAML(bUnderDinkes: Bool) -> String {
        """
        name: Release
        opds:
          - id: dinkes
            name: Dinas Kesehatan
          - id: pkm-a
            name: Puskesmas A
            parent: dinkes
          - id: pkm-b
            name: Puskesmas B
        \(bUnderDinkes ? "    parent: dinkes" : "")
        tables:
          - name: patients
            sync:
              scope: clinic_id
            ddl: "CREATE TABLE patients (id TEXT PRIMARY KEY, nik TEXT UNIQUE, clinic_id TEXT, name TEXT)"
          - name: visits
            sync:
              scope: clinic_id
            ddl: "CREATE TABLE visits (id TEXT PRIMARY KEY, patient_id TEXT REFERENCES patients(id), clinic_id TEXT)"
        """
    }

    static func openRelease(_ dir: URL, bUnderDinkes: Bool) throws -> SQLiteMasterStore {
        let config = try ServerConfig.parse(yaml: releaseYAML(bUnderDinkes: bUnderDinkes), baseURL: dir)
        return try SQLiteMasterStore(path: dir.appendingPathComponent("m.sqlite").path, config: config)
    }

    /// One row pushed by a replica of `opd`.
    static func pushRow(
        _ store: SQLiteMasterStore, opd: String, replica: UUID, sequence: UInt64, table name: String, id: String,
        values: [String: SQLValue]
    ) async throws -> PushReply {
        let table = store.config.table(named: name)!.changesetTable
        let row = Changeset.Row(
            table: 0, operation: .upsert, version: 0, stamp: HLC(milliseconds: 1_000 + sequence, counter: 0),
            primaryKey: [.text(id)],
            columns: values.sorted { $0.key < $1.key }.map { name, value in
                Changeset.ColumnValue(column: table.columns.firstIndex(of: name)!, value: value)
            })
        let changeset = Changeset(
            kind: .push, id: UUID(), replicaID: replica, firstSequence: sequence, lastSequence: sequence,
            tables: [table], rows: [row])
        let outcome = try await store.push(changeset, from: KotaSyncServer.Device(tokenID: "t-\(opd)", opd: opd))
        return try ProtocolJSON.decoder().decode(PushReply.self, from: outcome.reply)
    }

    static func liveIDs(_ store: SQLiteMasterStore, _ table: String) async throws -> Set<String> {
        try await store.pool.read { db in Set(try String.fetchAll(db, sql: "SELECT id FROM \(table)")) }
    }

    /// A visit the health office wrote for Puskesmas B waits for its patient (one of A's);
    /// meanwhile B leaves the health office. When the patient arrives — still in the health
    /// office's scope, so the hold is released — the visit is judged by the rules of the OPD that
    /// wrote it as they are now: the health office no longer sees B, so it is not merged, and its
    /// record is closed rather than left waiting.
    @Test func aHeldChangeIsJudgedAgainByItsWritersRulesWhenItIsReleased() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "kotasync-release-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let dinkes = UUID()
        let clinicA = UUID()
        do {
            let store = try Self.openRelease(dir, bUnderDinkes: true)
            let reply = try await Self.pushRow(
                store, opd: "dinkes", replica: dinkes, sequence: 1, table: "visits", id: "v-held",
                values: ["patient_id": .text("p-later"), "clinic_id": .text("pkm-b")])
            #expect(reply.rejected == nil, "the health office may write B's rows while B is under it")
            #expect(reply.conflicts.map(\.kind) == [.foreignKey], "held until its patient arrives")
        }
        let store = try Self.openRelease(dir, bUnderDinkes: false)
        let reply = try await Self.pushRow(
            store, opd: "pkm-a", replica: clinicA, sequence: 1, table: "patients", id: "p-later",
            values: ["nik": .text("111"), "clinic_id": .text("pkm-a"), "name": .text("Sari")])
        #expect(reply.rejected == nil, "A writes its own patient")
        #expect(
            try await Self.liveIDs(store, "visits").isEmpty, "the released visit was merged outside its writer's scope")
        let records = try await store.reviewConflicts(ReviewFilter(table: "visits")).conflicts
        #expect(records.count == 1)
        #expect(
            !["held", "open"].contains(records.first?.status ?? "?"),
            "a change refused at release closes its record (with the refusal), it does not wait again")
    }

    /// A patient the health office registered for Puskesmas B collides with one of A's (the same
    /// NIK) and is quarantined; B leaves the health office; a reviewer keeps both. Keeping it
    /// releases the health office's change, which its rules no longer allow: it is not merged.
    @Test func aQuarantinedChangeKeptByAReviewerIsJudgedAgainByItsWritersRules() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "kotasync-release-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        do {
            let store = try Self.openRelease(dir, bUnderDinkes: true)
            _ = try await Self.pushRow(
                store, opd: "pkm-a", replica: UUID(), sequence: 1, table: "patients", id: "p-a",
                values: ["nik": .text("222"), "clinic_id": .text("pkm-a"), "name": .text("Andi")])
            let reply = try await Self.pushRow(
                store, opd: "dinkes", replica: UUID(), sequence: 1, table: "patients", id: "p-b",
                values: ["nik": .text("222"), "clinic_id": .text("pkm-b"), "name": .text("Andi B")])
            #expect(reply.conflicts.map(\.kind) == [.unique], "quarantined beside A's patient")
        }
        let store = try Self.openRelease(dir, bUnderDinkes: false)
        let record = try #require(
            try await store.reviewConflicts(ReviewFilter(status: "open", table: "patients")).conflicts.first)
        // However the server answers the decision, the health office's change does not land.
        _ = try? await store.resolveConflict(
            id: record.id, ResolveRequest(take: .remote, set: ["nik": .text("333")]), by: "Ani Lubis")
        #expect(
            try await Self.liveIDs(store, "patients") == ["p-a"],
            "a row the writer may no longer write was merged when a reviewer kept it")
    }
}
