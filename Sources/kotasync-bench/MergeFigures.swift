import CSQLite
import Foundation
import KotaSyncClient
import KotaSyncCore
import KotaSyncServer
import PostgresNIO

/// Figures 1–6 and 8: capture, changeset size, encoding, merge against the session extension
/// and the plain-upsert floor, and applying pulls — all in this process, on real SQLite files.
struct MergeFigures {
    let workload: Workload
    let directory: URL
    let config: ServerConfig
    /// Where figure 4 is also measured on a PostgreSQL master (4pg), if anywhere.
    var postgres: Postgres? = nil

    /// A PostgreSQL server on which the bench may create a database of its own.
    struct Postgres {
        var server: PostgresLocation
        var password: String?
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// The plain database with the seeded rows, the master before any merge, and a bootstrapped
    /// replica template.
    func prepare() async throws {
        let seed = try RawDatabase(path: path("seed.sqlite"))
        try seed.execute("PRAGMA journal_mode = WAL")
        try seed.execute(ClinicData.patientsDDL)
        try seed.execute(ClinicData.visitsDDL)
        try workload.seed(seed)
        try Bench.copy(path("seed.sqlite"), to: path("master-initial.sqlite"))
        // Opening the store adopts the seeded rows.
        let store = try SQLiteMasterStore(
            path: path("master-initial.sqlite"), config: config)
        try Replica.create(
            at: path("replica-template.sqlite"),
            schema: SchemaDocument(server: "bench", opd: "dinkes", tables: config.tables),
            serverURL: URL(string: "http://127.0.0.1:9")!, token: "bench")
        let template = try Replica(path: path("replica-template.sqlite"))
        var cursor: UInt64 = 0
        while true {
            let page = try await store.pull(after: cursor, limit: 5000)
            _ = try template.apply(page: try ChangesetCodec.decode(page.body))
            cursor = page.nextCursor
            if !page.hasMore { break }
        }
    }

    /// A copy of the template replica with its own id.
    func makeReplica(_ name: String) throws -> String {
        let file = path(name)
        try Bench.copy(path("replica-template.sqlite"), to: file)
        try RawDatabase(path: file).run(
            "UPDATE _ks_state SET value = ? WHERE key = 'replica_id'", [.text(UUID().uuidString)])
        return file
    }

    func run(into report: inout Report) async throws {
        let shape = workload.shape
        var plainSeconds = 0.0
        var captureSeconds = 0.0
        var sessionChangesets: [[UInt8]] = []
        var replicas: [String] = []
        for r in 0..<shape.replicas {
            let ops = workload.operations(replica: r)
            try Bench.copy(path("seed.sqlite"), to: path("plain-\(r).sqlite"))
            let plain = try RawDatabase(path: path("plain-\(r).sqlite"))
            plainSeconds += try Bench.time { try Bench.apply(ops, to: plain, batch: shape.batch) }
            let replicaPath = try makeReplica("replica-\(r).sqlite")
            replicas.append(replicaPath)
            let captured = try RawDatabase(path: replicaPath)
            captureSeconds += try Bench.time { try Bench.apply(ops, to: captured, batch: shape.batch) }
            try Bench.copy(path("seed.sqlite"), to: path("session-\(r).sqlite"))
            sessionChangesets.append(
                try SessionBaseline.record(RawDatabase(path: path("session-\(r).sqlite")), ops: ops, batch: shape.batch)
            )
        }
        let totalOps = Double(shape.replicas * shape.ops)
        let overhead = captureSeconds / plainSeconds
        report.add(
            Figure(
                id: "1", name: "Change-capture overhead (time with capture ÷ without)", value: overhead, unit: "×",
                target: "≤ 1.3×", met: overhead <= 1.3,
                note: String(
                    format: "%.0f local ops/s with capture, %.0f without", totalOps / captureSeconds,
                    totalOps / plainSeconds)))

        // 2–3: our changesets.
        var outbound: [OutboundChangeset] = []
        var rawBytes = 0
        let encodeSeconds = try Bench.time {
            for file in replicas {
                guard let next = try Replica(path: file).nextOutbound() else {
                    throw BenchError("nothing to push in \(file)")
                }
                outbound.append(next)
            }
        }
        for o in outbound { rawBytes += try ChangesetCodec.decodeHeader(o.body).uncompressedLength }
        let compressedBytes = outbound.reduce(0) { $0 + $1.body.count }
        let rows = outbound.reduce(0) { $0 + $1.rows }
        let sessionRaw = sessionChangesets.reduce(0) { $0 + $1.count }
        let sessionCompressed = sessionChangesets.map { Zlib.compress($0) }
        let sessionBytes = sessionCompressed.reduce(0) { $0 + $1.count }
        report.add(
            Figure(
                id: "2", name: "Changeset bytes, compressed (all replicas)", value: Double(compressedBytes), unit: "B",
                baseline: Double(sessionBytes), baselineName: "session extension + zlib 6",
                ratio: Double(sessionBytes) / Double(compressedBytes), target: "≤ baseline",
                met: compressedBytes <= sessionBytes,
                note: String(
                    format: "raw %d B (%.1f B/row) vs session raw %d B; compressed %.1f B/row over %d rows", rawBytes,
                    Double(rawBytes) / Double(rows), sessionRaw, Double(compressedBytes) / Double(rows), rows)))
        report.add(
            Figure(
                id: "3", name: "Client encode + compress (log → changeset)", value: Double(rows) / encodeSeconds,
                unit: "rows/s",
                note: String(format: "%.1f MB/s of payload", Double(rawBytes) / encodeSeconds / 1e6)))

        // 4: our merge, in process, through the store the server uses.
        try Bench.copy(path("master-initial.sqlite"), to: path("master.sqlite"))
        let store = try SQLiteMasterStore(path: path("master.sqlite"), config: config)
        var replies: [PushReply] = []
        let mergeSeconds = try await Bench.timeAsync {
            for (r, o) in outbound.enumerated() {
                let outcome = try await store.push(
                    try ChangesetCodec.decode(o.body),
                    from: Device(tokenID: "bench", opd: String(format: "clinic-%02d", r + 1)))
                replies.append(try ProtocolJSON.decoder().decode(PushReply.self, from: outcome.reply))
            }
        }
        let conflicts = replies.reduce(0) { $0 + $1.conflicts.count }

        // 5: Baseline A — the session extension applying the same changes to a copy of the master.
        try Bench.copy(path("seed.sqlite"), to: path("baseline-a.sqlite"))
        let baselineA = try RawDatabase(path: path("baseline-a.sqlite"))
        try baselineA.execute("PRAGMA synchronous = FULL")
        var sessionConflicts = 0
        let sessionSeconds = try Bench.time {
            for (compressed, raw) in zip(sessionCompressed, sessionChangesets) {
                let inflated = try Zlib.decompress(compressed[...], expectedLength: raw.count)
                sessionConflicts += try SessionBaseline.apply(baselineA, changeset: inflated)
            }
        }
        let ourRate = totalOps / mergeSeconds
        let sessionRate = totalOps / sessionSeconds
        report.add(
            Figure(
                id: "4", name: "Server merge, in process (client ops/s)", value: ourRate, unit: "ops/s",
                baseline: sessionRate, baselineName: "session apply_v2, LWW", ratio: ourRate / sessionRate,
                target: "≥ 1.5× baseline", met: ourRate >= 1.5 * sessionRate,
                note: String(
                    format:
                        "%.0f rows/s; %d conflicts recorded (session handler saw %d); %d changesets, one durable transaction each",
                    Double(rows) / mergeSeconds, conflicts, sessionConflicts, outbound.count)))
        if let postgres {
            // 4pg: the same pushes into the same master, copied to PostgreSQL (`master copy`).
            let (pgSeconds, statements) = try await postgresMerge(outbound, on: postgres)
            let pgRate = totalOps / pgSeconds
            report.add(
                Figure(
                    id: "4pg", name: "Server merge on a PostgreSQL master, in process (client ops/s)", value: pgRate,
                    unit: "ops/s", baseline: ourRate, baselineName: "SQLite master (figure 4)",
                    ratio: pgRate / ourRate, target: "≥ 0.5× SQLite", met: pgRate >= 0.5 * ourRate,
                    note: String(
                        format:
                            "%.0f rows/s; PostgreSQL at %@, one transaction per changeset under the merge lock, %.0f statements (round trips) per changeset",
                        Double(rows) / pgSeconds, "\(postgres.server.host):\(postgres.server.port)",
                        Double(statements) / Double(max(1, outbound.count)))))
        }
        report.add(
            Figure(
                id: "5", name: "Baseline A apply (session extension)", value: sessionRate, unit: "ops/s",
                note: String(format: "%.3f s for %d changesets", sessionSeconds, sessionCompressed.count)))

        // 6: Baseline B — the final rows upserted in one transaction, the floor no merge can beat.
        let master = try RawDatabase(path: path("master.sqlite"))
        var touched: [(Int, SQLValue)] = []
        var seen = Set<String>()
        for o in outbound {
            let changeset = try ChangesetCodec.decode(o.body)
            for row in changeset.rows {
                let t = ClinicData.tables.firstIndex(of: changeset.tables[row.table].name)!
                if seen.insert("\(t)/\(row.primaryKey[0])").inserted { touched.append((t, row.primaryKey[0])) }
            }
        }
        var finals: [(Int, SQLValue, [SQLValue]?)] = []
        for (t, key) in touched {
            let found = try master.query(
                "SELECT \(ClinicData.columns[t].joined(separator: ", ")) FROM \(ClinicData.tables[t]) WHERE id = ?",
                [key]
            ).first
            finals.append((t, key, found))
        }
        try Bench.copy(path("seed.sqlite"), to: path("baseline-b.sqlite"))
        let baselineB = try RawDatabase(path: path("baseline-b.sqlite"))
        try baselineB.execute("PRAGMA synchronous = FULL")
        // The statements' text is built before the clock starts: the floor times SQLite alone.
        let upserts = ClinicData.tables.indices.map {
            ClinicData.insertSQL($0).replacingOccurrences(of: "INSERT", with: "INSERT OR REPLACE")
        }
        let deletes = ClinicData.tables.map { "DELETE FROM \($0) WHERE id = ?" }
        let upsertSeconds = try Bench.time {
            try baselineB.execute("BEGIN")
            for (t, key, row) in finals {
                if let row {
                    try baselineB.run(upserts[t], row)
                } else {
                    try baselineB.run(deletes[t], [key])
                }
            }
            try baselineB.execute("COMMIT")
        }
        let floorRate = Double(finals.count) / upsertSeconds
        let ourRowRate = Double(rows) / mergeSeconds
        report.add(
            Figure(
                id: "6", name: "Merge vs plain upsert of the final rows (rows/s)", value: ourRowRate, unit: "rows/s",
                baseline: floorRate, baselineName: "one-transaction upsert", ratio: ourRowRate / floorRate,
                note: String(
                    format:
                        "the floor: %d final rows in %.3f s, no conflict detection, no metadata, one transaction for everything",
                    finals.count, upsertSeconds)))

        // 6b: the least any merge that keeps versions and history must write, against Baseline A.
        let bookkeepingRate =
            totalOps
            / (try Self.bookkeepingFloor(
                outbound.map { try ChangesetCodec.decode($0.body) }, seed: path("seed.sqlite"),
                at: path("bookkeeping.sqlite")))
        report.add(
            Figure(
                id: "6b", name: "Bookkeeping floor (client ops/s)", value: bookkeepingRate, unit: "ops/s",
                baseline: sessionRate, baselineName: "session apply_v2, LWW", ratio: bookkeepingRate / sessionRate,
                note:
                    "each change's row write, version entry (with the index pulls walk) and an empty history entry, a durable commit per changeset; no reads, no decisions, no conflict records: no merge that keeps versions and history is faster"
            ))

        // 8: replicas apply what the master sends back, and must then equal it.
        for (r, o) in outbound.enumerated() { try Replica(path: replicas[r]).acknowledge(o, reply: replies[r]) }
        var appliedRows = 0
        var applySeconds = 0.0
        var applyCPUSeconds = 0.0
        let masterContents = try Bench.contents(master)
        var converged = true
        for file in replicas {
            let replica = try Replica(path: file)
            var cursor = try replica.cursor()
            while true {
                let page = try await store.pull(after: cursor, limit: 5000)
                let decoded = try ChangesetCodec.decode(page.body)
                let (wall, cpu) = try Bench.timeWithCPU { _ = try replica.apply(page: decoded) }
                applySeconds += wall
                applyCPUSeconds += cpu
                appliedRows += decoded.rows.count
                cursor = page.nextCursor
                if !page.hasMore { break }
            }
            let contents = try Bench.contents(RawDatabase(path: file))
            if contents != masterContents { converged = false }
        }
        let applyRate = Double(appliedRows) / applySeconds
        report.add(
            Figure(
                id: "8", name: "Client apply of pulled changes", value: applyRate, unit: "rows/s",
                target: "≥ 60,000 rows/s",
                met: applyRate >= 60_000,
                note: String(
                    format: "%d rows over %d replicas; %.0f rows per CPU-second of the applying thread", appliedRows,
                    replicas.count, Double(appliedRows) / applyCPUSeconds)))
        report.checks["every replica equals the master after pulling"] = converged
        var sameCounts = true
        for t in ClinicData.tables where try master.count(t) != baselineA.count(t) { sameCounts = false }
        report.checks["baseline A reaches the same row counts"] = sameCounts
    }
}

extension MergeFigures {
    /// Times the least that a merge keeping what KotaSync keeps must write for `changesets`, applied
    /// to a copy of `seed` at `path`: for every row its table write (as the changeset says: whole
    /// row, changed columns, or delete), its version entry in a `(tbl, pk)` table with a unique
    /// version index (pulls walk it), and a history entry with no values; one durable transaction
    /// per changeset, with the master writer's page cache. Nothing is read and nothing is decided,
    /// and the statements and their values are built before the clock starts.
    static func bookkeepingFloor(_ changesets: [Changeset], seed: String, at path: String) throws -> Double {
        try Bench.copy(seed, to: path)
        let db = try RawDatabase(path: path)
        try db.execute("PRAGMA synchronous = FULL")
        try db.execute("PRAGMA cache_size = -32768")
        try db.execute(
            """
            CREATE TABLE meta (tbl TEXT NOT NULL, pk TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (tbl, pk))
                WITHOUT ROWID;
            CREATE UNIQUE INDEX meta_version ON meta(version);
            CREATE TABLE history (tbl TEXT NOT NULL, pk TEXT NOT NULL, version INTEGER NOT NULL, old BLOB NOT NULL,
                PRIMARY KEY (tbl, pk, version)) WITHOUT ROWID;
            """)
        // The seeded rows have their version entries, as in the master.
        var version: Int64 = 0
        try db.execute("BEGIN")
        for table in ClinicData.tables {
            for row in try db.query("SELECT id FROM \(table)") {
                version += 1
                try db.run("INSERT INTO meta VALUES (?, ?, ?)", [.text(table), row[0], .integer(version)])
            }
        }
        try db.execute("COMMIT")
        let writeMeta =
            "INSERT INTO meta VALUES (?, ?, ?) ON CONFLICT (tbl, pk) DO UPDATE SET version = excluded.version"
        let writeHistory = "INSERT INTO history VALUES (?, ?, ?, x'')"
        let steps: [[(sql: String, values: [SQLValue])]] = changesets.map { changeset in
            changeset.rows.flatMap { row -> [(sql: String, values: [SQLValue])] in
                let table = changeset.tables[row.table]
                let key = row.primaryKey[0]
                version += 1
                let names = row.columns.map { table.columns[$0.column] }
                let write: (sql: String, values: [SQLValue])
                switch row.operation {
                case .upsert:
                    write = (
                        "INSERT OR REPLACE INTO \(table.name) (id, \(names.joined(separator: ", "))) VALUES (?\(String(repeating: ", ?", count: names.count)))",
                        [key] + row.columns.map(\.value)
                    )
                case .update:
                    write = (
                        "UPDATE \(table.name) SET \(names.map { "\($0) = ?" }.joined(separator: ", ")) WHERE id = ?",
                        row.columns.map(\.value) + [key]
                    )
                case .delete:
                    write = ("DELETE FROM \(table.name) WHERE id = ?", [key])
                }
                return [
                    write, (writeMeta, [.text(table.name), key, .integer(version)]),
                    (writeHistory, [.text(table.name), key, .integer(version)]),
                ]
            }
        }
        return try Bench.time {
            for changeset in steps {
                try db.execute("BEGIN")
                for step in changeset { try db.run(step.sql, step.values) }
                try db.execute("COMMIT")
            }
        }
    }

    /// Seconds to push `outbound` into a copy of the initial master on a new database of
    /// `postgres`'s server (created here and dropped afterwards), as figure 4 pushes them, and
    /// the statements the merges sent.
    func postgresMerge(_ outbound: [OutboundChangeset], on postgres: Postgres) async throws -> (Double, Int) {
        try await postgres.withDatabase { master in
            _ = try await PostgresMasterCopy.copy(from: path("master-initial.sqlite"), to: master, config: config)
            let store = PostgresMasterStore(master: master, config: config)
            let before = master.blockingStatements.total
            let seconds = try await Bench.timeAsync {
                for (r, o) in outbound.enumerated() {
                    _ = try await store.push(
                        try ChangesetCodec.decode(o.body),
                        from: Device(tokenID: "bench", opd: String(format: "clinic-%02d", r + 1)))
                }
            }
            return (seconds, master.blockingStatements.total - before)
        }
    }
}
