import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite

extension SQLiteMasterStore {
    public func overview(days: Int, timeZone: TimeZone, now: Date) async throws -> Overview {
        try await flushAudit()  // so the devices' reports of the last second are shown
        let tables = config.tables.map(\.name)
        return try await read { db in
            let masterVersion = UInt64(try Int64.fetchOne(db, sql: "SELECT max(version) FROM _ks_rows") ?? 0)
            var devices: [DeviceHealth] = []
            let telemetry = try Dictionary(
                Row.fetchAll(db, sql: "SELECT * FROM _ks_devices").map { ($0["replica"] as Int64, $0) },
                uniquingKeysWith: { $1 })
            for r in try Row.fetchAll(
                db,
                sql: """
                    SELECT r.number, r.uuid, r.opd, r.first_seen_at, r.last_push_at,
                        (SELECT count(*) FROM _ks_changesets c WHERE c.replica = r.number) AS changesets,
                        (SELECT coalesce(sum(rows), 0) FROM _ks_changesets c WHERE c.replica = r.number) AS rows,
                        (SELECT count(*) FROM _ks_conflicts k WHERE k.loser_writer = r.number
                            AND k.status IN ('open', 'held')) AS waiting
                    FROM _ks_replicas r ORDER BY r.opd, r.first_seen_at
                    """)
            {
                let t = telemetry[r["number"]]
                let cursor = (t?["cursor"] as Int64?).map(UInt64.init)
                devices.append(
                    DeviceHealth(
                        replicaId: UUID(bytes: [UInt8](r["uuid"] as Data)), opd: r["opd"],
                        firstSeenAt: r["first_seen_at"],
                        lastPushAt: r["last_push_at"], lastPullAt: t?["last_pull_at"], changesets: r["changesets"],
                        rows: r["rows"], pending: t?["pending"], refused: t?["refused"] ?? 0, waiting: r["waiting"],
                        lag: cursor.map { masterVersion > $0 ? masterVersion - $0 : 0 }, clientVersion: t?["client"],
                        lastError: t?["last_error"]))
            }
            var rows: [String: Int] = [:]
            for table in tables {
                rows[table] = try Int.fetchOne(db, sql: "SELECT count(*) FROM \(SQL.quote(table))") ?? 0
            }
            var records: [String: Int] = [:]
            for r in try Row.fetchAll(db, sql: "SELECT status, count(*) AS n FROM _ks_conflicts GROUP BY status") {
                records[r["status"]] = r["n"]
            }
            // Days in the city's time zone: the offset of `now` is used for the whole window.
            let offset = Int64(timeZone.secondsFromGMT(for: now)) * 1000
            let since =
                (Int64(now.timeIntervalSince1970 * 1000) + offset) / 86_400_000 * 86_400_000 - offset
                - Int64(days - 1) * 86_400_000
            var changes: [String: [String: Int]] = [:]
            for r in try Row.fetchAll(db, sql: Self.changesPerDay, arguments: [offset, since << 16]) {
                changes[r["day"], default: [:]][r["opd"]] = r["n"]
            }
            var conflicts: [String: Int] = [:]
            let sinceText = Timestamp.string(Date(timeIntervalSince1970: Double(since) / 1000))
            for r in try Row.fetchAll(db, sql: Self.conflictsPerDay, arguments: [offset, sinceText]) {
                conflicts[r["day"]] = r["n"]
            }
            return Overview(
                devices: devices, masterVersion: masterVersion, rows: rows, records: records, changesPerDay: changes,
                conflictsPerDay: conflicts)
        }
    }

    /// Changes per day and OPD since a stamp (arguments: the time zone's offset in milliseconds,
    /// the first stamp of the window). It walks only the window's entries of `_ks_history`'s
    /// `(stamp, writer)` index, which covers it: the whole history is scanned otherwise, and the
    /// overview would slow down with every month of the city's changes.
    static let changesPerDay = """
        SELECT date(((h.stamp >> 16) + ?) / 1000, 'unixepoch') AS day, coalesce(r.opd, 'master') AS opd, count(*) AS n
        FROM _ks_history h LEFT JOIN _ks_replicas r ON r.number = h.writer
        WHERE h.stamp >= ? GROUP BY day, opd
        """

    /// Conflict records made per day since a time (arguments: the time zone's offset in
    /// milliseconds, the window's first `decided_at`), from the window's part of the
    /// `_ks_conflicts(decided_at)` index alone.
    static let conflictsPerDay = """
        SELECT date(julianday(decided_at) + ? / 86400000.0) AS day, count(*) AS n
        FROM _ks_conflicts WHERE decided_at >= ? GROUP BY day
        """

    /// Remembers what a device said about itself on a request. It is written with the next
    /// audit batch (within a second, and before the overview is read), not in a transaction of
    /// its own: each push or pull paying a second commit halved the small pushes a server takes.
    public func record(_ report: DeviceReport, pulled: Bool) async throws {
        noteDeviceReport(report, pulled: pulled, at: Date())
    }

    /// Writes folded device reports inside the caller's transaction; reports of replicas the
    /// master does not know (yet), and reports about a replica of another OPD than the sender's,
    /// are dropped (the access service decides).
    static func write(_ reports: [DeviceReportKey: PendingDeviceReport], access: AccessPolicy, db: Database) throws {
        for (key, pending) in reports {
            guard
                let replica = try Row.fetchOne(
                    db, sql: "SELECT number, opd FROM _ks_replicas WHERE uuid = ?", arguments: [Data(key.replica.bytes)]
                ),
                access.acceptsReport(from: key.opd, aboutReplicaOf: replica["opd"])
            else { continue }
            let number: Int64 = replica["number"]
            let report = pending.report
            try db.execute(
                sql: """
                    INSERT INTO _ks_devices(replica, client, pending, last_error, cursor, last_pull_at, last_seen_at)
                    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                    ON CONFLICT(replica) DO UPDATE SET client = coalesce(?2, client), pending = coalesce(?3, pending),
                        last_error = ?4, cursor = coalesce(?5, cursor),
                        last_pull_at = coalesce(?6, last_pull_at), last_seen_at = ?7
                    """,
                arguments: [
                    number, report?.clientVersion, report?.pending, report?.lastError,
                    report?.cursor.map { Int64($0) }, pending.pulledAt.map(Timestamp.string),
                    Timestamp.string(pending.seenAt),
                ])
        }
    }

    /// One page of `table` for the data browser: rows whose text matches `search` in any column,
    /// ordered by `sort` (a column name; the key when nil or unknown).
    public func browse(
        table name: String, search: String?, sort: String?, descending: Bool, page: Int, pageSize: Int = 50
    ) async throws -> TablePage {
        guard let table = config.table(named: name) else {
            throw SyncError(.unknownTable, "Table \(name) is not replicated by this server.")
        }
        let columns = table.primaryKey.map(\.name) + table.columns.map(\.name)
        let keyCount = table.primaryKey.count
        // The sort column, then the key (so pages do not overlap where the column repeats), each
        // in the asked direction.
        let direction = descending ? "DESC" : "ASC"
        let order = ((sort.flatMap { s in columns.contains(s) ? [s] : nil } ?? []) + table.primaryKey.map(\.name))
            .map { "\(SQL.quote($0)) \(direction)" }.joined(separator: ", ")
        var predicate = "1"
        var patterns: [String] = []
        if let search, !search.isEmpty {
            predicate =
                "(" + columns.map { "CAST(\(SQL.quote($0)) AS TEXT) LIKE ? ESCAPE '\\'" }.joined(separator: " OR ")
                + ")"
            let escaped = search.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%")
                .replacingOccurrences(of: "_", with: "\\_")
            patterns = columns.map { _ in "%\(escaped)%" }
        }
        let filter = predicate
        let likes = patterns
        let size = max(1, min(pageSize, 500))
        let offset = max(0, page) * size
        let selected = columns.map(SQL.quote).joined(separator: ", ")
        let t = SQL.quote(name)
        return try await read { db in
            let total =
                try Int.fetchOne(
                    db, sql: "SELECT count(*) FROM \(t) WHERE \(filter)", arguments: StatementArguments(likes)) ?? 0
            let rows = try Row.fetchAll(
                db,
                sql:
                    "SELECT \(selected) FROM \(t) WHERE \(filter) ORDER BY \(order) LIMIT ? OFFSET ?",
                arguments: StatementArguments(likes) + [size, offset])
            var out: [TablePage.Row] = []
            for row in rows {
                let values = (0..<columns.count).map { SQLValue(row[$0] as DatabaseValue) }
                let key = Array(values.prefix(keyCount))
                let last = try Row.fetchOne(
                    db,
                    sql: """
                        SELECT h.version, h.writer FROM _ks_history h WHERE h.tbl = ? AND h.pk = ?
                        ORDER BY h.version DESC LIMIT 1
                        """, arguments: [name, Data(PrimaryKeyCoding.encode(key))])
                out.append(
                    TablePage.Row(
                        key: key, values: Array(values.dropFirst(keyCount)),
                        lastChangedBy: last.map { self.opd(ofWriter: $0["writer"], db: db) },
                        version: last.map { UInt64($0["version"] as Int64) }))
            }
            return TablePage(table: name, columns: columns, rows: out, total: total)
        }
    }

    /// A row's key and values (in the order of ``TablePage/columns``), nil if the master does not hold it.
    public func browseRow(table name: String, key: [SQLValue]) async throws -> [SQLValue]? {
        guard config.table(named: name) != nil else {
            throw SyncError(.unknownTable, "Table \(name) is not replicated by this server.")
        }
        return try await read { db in try self.statements[name]!.values(db, key: key).map { key + $0 } }
    }
}
