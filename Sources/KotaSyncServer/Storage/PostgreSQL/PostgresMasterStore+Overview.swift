import Foundation
import KotaSyncCore
import NIOCore
import PostgresNIO

/// The overview role on PostgreSQL: what `SQLiteMasterStore+Dashboard` and `+History` read, with
/// the same answers, each from one snapshot and in a fixed number of queries (the data browser's
/// page reads its rows' last changes in one query, not one per row).
///
/// Where PostgreSQL cannot answer exactly as SQLite does, the difference is small and named:
/// - the data browser's search matches case-insensitively in every alphabet (`ILIKE`; SQLite's
///   `LIKE` folds ASCII only), reads numbers as PostgreSQL prints them (a real `1e20` is
///   `1e+20`, SQLite's `1.0e+20`), and does not search BLOB values;
/// - sorting by a column of no declared type (`kotasync.value`) puts integers before reals
///   (SQLite interleaves them by value); text sorts by code point (`COLLATE "C"`), as SQLite's
///   default collation does, and NULLs first when ascending, as in SQLite.
extension PostgresMasterStore {
    public func overview(days: Int, timeZone: TimeZone, now: Date) async throws -> Overview {
        try await flushAudit()  // so the devices' reports of the last second are shown
        let tables = config.tables
        return try await master.readSnapshot { connection in
            let masterVersion = try await self.latestRowVersion(connection)
            var telemetry: [Int64: DeviceTelemetry] = [:]
            for try await (replica, client, pending, lastError, cursor, lastPullAt, refused)
                in try await connection
                .query(
                    "SELECT replica, client, pending, last_error, cursor, last_pull_at, refused FROM kotasync.devices",
                    logger: logger
                ).decode((Int64, String?, Int64?, String?, Int64?, String?, Int64).self)
            {
                telemetry[replica] = DeviceTelemetry(
                    client: client, pending: pending, lastError: lastError, cursor: cursor, lastPullAt: lastPullAt,
                    refused: refused)
            }
            var devices: [DeviceHealth] = []
            let replicas = try await connection.query(
                """
                SELECT r.number, r.uuid, r.opd, r.first_seen_at, r.last_push_at,
                    (SELECT count(*) FROM kotasync.changesets c WHERE c.replica = r.number),
                    (SELECT coalesce(sum(rows), 0) FROM kotasync.changesets c WHERE c.replica = r.number)::bigint,
                    (SELECT count(*) FROM kotasync.conflicts k WHERE k.loser_writer = r.number
                        AND k.status IN ('open', 'held'))
                FROM kotasync.replicas r ORDER BY r.opd COLLATE "C", r.first_seen_at COLLATE "C"
                """, logger: logger)
            for try await (number, uuid, opd, firstSeenAt, lastPushAt, changesets, rows, waiting) in replicas.decode(
                (Int64, ByteBuffer, String, String, String?, Int64, Int64, Int64).self)
            {
                let t = telemetry[number]
                let cursor = t?.cursor.map { UInt64(max($0, 0)) }
                devices.append(
                    DeviceHealth(
                        replicaId: UUID(bytes: Array(buffer: uuid)), opd: opd, firstSeenAt: firstSeenAt,
                        lastPushAt: lastPushAt, lastPullAt: t?.lastPullAt, changesets: Int(changesets), rows: Int(rows),
                        pending: t?.pending.map { Int($0) }, refused: Int(t?.refused ?? 0), waiting: Int(waiting),
                        lag: cursor.map { masterVersion > $0 ? masterVersion - $0 : 0 }, clientVersion: t?.client,
                        lastError: t?.lastError))
            }
            var rows: [String: Int] = [:]
            if !tables.isEmpty {
                let counts = tables.enumerated().map { n, table in
                    "SELECT \(n)::bigint, count(*) FROM \(PostgresTableDefinition.publicTable(table.name))"
                }
                for try await (n, count) in try await connection.query(
                    PostgresQuery(unsafeSQL: counts.joined(separator: " UNION ALL ")), logger: logger
                ).decode((Int64, Int64).self) {
                    rows[tables[Int(n)].name] = Int(count)
                }
            }
            var records: [String: Int] = [:]
            for try await (status, count) in try await connection.query(
                "SELECT status, count(*) FROM kotasync.conflicts GROUP BY status", logger: logger
            ).decode((String, Int64).self) {
                records[status] = Int(count)
            }
            // Days in the city's time zone: the offset of `now` is used for the whole window.
            let offset = Int64(timeZone.secondsFromGMT(for: now)) * 1000
            let since =
                (Int64(now.timeIntervalSince1970 * 1000) + offset) / 86_400_000 * 86_400_000 - offset
                - Int64(days - 1) * 86_400_000
            var changes: [String: [String: Int]] = [:]
            for try await (day, opd, count) in try await connection.query(
                """
                SELECT ((h.stamp >> 16) + \(offset)) / 86400000 AS day, coalesce(r.opd, 'master') AS opd, count(*)
                FROM kotasync.history h LEFT JOIN kotasync.replicas r ON r.number = h.writer
                WHERE h.stamp >= \(since << 16) GROUP BY day, 2
                """, logger: logger
            ).decode((Int64, String, Int64).self) {
                changes[Self.dayText(day), default: [:]][opd] = Int(count)
            }
            var conflicts: [String: Int] = [:]
            let sinceText = Timestamp.string(Date(timeIntervalSince1970: Double(since) / 1000))
            for try await (day, count) in try await connection.query(
                """
                SELECT floor((extract(epoch FROM decided_at::timestamptz) * 1000 + \(offset)) / 86400000)::bigint AS day,
                    count(*)
                FROM kotasync.conflicts WHERE decided_at >= \(sinceText) GROUP BY day
                """, logger: logger
            ).decode((Int64, Int64).self) {
                conflicts[Self.dayText(day)] = Int(count)
            }
            return Overview(
                devices: devices, masterVersion: masterVersion, rows: rows, records: records, changesPerDay: changes,
                conflictsPerDay: conflicts)
        }
    }

    /// Day `n` after 1970-01-01 as `YYYY-MM-DD` (the overview's days, already shifted into the
    /// city's time zone).
    static func dayText(_ n: Int64) -> String {
        Date(timeIntervalSince1970: Double(n) * 86_400).formatted(.iso8601.year().month().day())
    }

    public func browse(
        table name: String, search: String?, sort: String?, descending: Bool, page: Int, pageSize: Int = 50
    ) async throws -> TablePage {
        guard let table = config.table(named: name) else {
            throw SyncError(.unknownTable, "Table \(name) is not replicated by this server.")
        }
        let all = table.primaryKey + table.columns
        let types = all.map { PostgresColumnType($0.affinity) }
        let columns = all.map(\.name)
        let keyCount = table.primaryKey.count
        func ordered(_ n: Int) -> String {
            let column = PostgresTableDefinition.quote(columns[n])
            let collated = types[n] == .text ? "\(column) COLLATE \"C\"" : column
            return "\(collated) \(descending ? "DESC NULLS LAST" : "ASC NULLS FIRST")"
        }
        // Then the key, so that pages do not overlap where the sort column repeats.
        let order =
            ((sort.flatMap { columns.firstIndex(of: $0) }.map { [$0] } ?? []) + Array(0..<keyCount)).map(ordered)
        var bindings = PostgresBindings()
        var filter = "true"
        if let search, !search.isEmpty {
            let escaped = search.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%")
                .replacingOccurrences(of: "_", with: "\\_")
            bindings.append("%\(escaped)%")
            filter =
                "("
                + zip(columns, types).map { column, type in
                    "\(Self.searchText(PostgresTableDefinition.quote(column), type)) ILIKE $1 ESCAPE '\\'"
                }.joined(separator: " OR ") + ")"
        }
        let size = max(1, min(pageSize, 500))
        let offset = max(0, page) * size
        let selected = zip(columns, types).flatMap { column, type in type.select(PostgresTableDefinition.quote(column))
        }
        let qualified = PostgresTableDefinition.publicTable(name)
        return try await master.readSnapshot { connection in
            var total = 0
            for try await count in try await connection.query(
                PostgresQuery(unsafeSQL: "SELECT count(*) FROM \(qualified) WHERE \(filter)", binds: bindings),
                logger: logger
            ).decode(Int64.self) {
                total = Int(count)
            }
            var pageBindings = bindings
            pageBindings.append(Int64(size))
            pageBindings.append(Int64(offset))
            var found: [(key: [SQLValue], values: [SQLValue])] = []
            for try await row in try await connection.query(
                PostgresQuery(
                    unsafeSQL: """
                        SELECT \(selected.joined(separator: ", ")) FROM \(qualified) WHERE \(filter)
                        ORDER BY \(order.joined(separator: ", "))
                        LIMIT $\(pageBindings.count - 1) OFFSET $\(pageBindings.count)
                        """, binds: pageBindings), logger: logger)
            {
                let values = try Self.decodeValues(row, types)
                found.append((Array(values.prefix(keyCount)), Array(values.dropFirst(keyCount))))
            }
            let last = try await self.lastChanges(
                table: name, keys: found.map { PrimaryKeyCoding.encode($0.key) }, connection)
            return TablePage(
                table: name, columns: columns,
                rows: found.map { row in
                    let change = last[PrimaryKeyCoding.encode(row.key)]
                    return TablePage.Row(
                        key: row.key, values: row.values, lastChangedBy: change?.opd, version: change?.version)
                }, total: total)
        }
    }

    /// The text a column's value is searched in: numbers as PostgreSQL prints them, text as it
    /// is, a value of no declared type by its storage class (BLOBs are not searched).
    private static func searchText(_ column: String, _ type: PostgresColumnType) -> String {
        switch type {
        case .text: column
        case .bigint, .doublePrecision, .numeric: "\(column)::text"
        case .value: "coalesce((\(column)).i::text, (\(column)).r::text, (\(column)).t)"
        }
    }

    /// The last change of each of `keys` (encoded) of `table`: its version and the writer's OPD
    /// (`master` for the Command Center's own, `?` for a writer the master does not know).
    private func lastChanges(table: String, keys: [[UInt8]], _ connection: PostgresConnection) async throws
        -> [[UInt8]: (version: UInt64, opd: String)]
    {
        guard !keys.isEmpty else { return [:] }
        var bindings = PostgresBindings()
        bindings.append(table)
        for key in keys { bindings.append(ByteBuffer(bytes: key)) }
        let marks = (2...keys.count + 1).map { "$\($0)" }.joined(separator: ", ")
        var out: [[UInt8]: (version: UInt64, opd: String)] = [:]
        for try await (pk, version, opd) in try await connection.query(
            PostgresQuery(
                unsafeSQL: """
                    SELECT DISTINCT ON (h.pk) h.pk, h.version,
                        CASE WHEN h.writer = 0 THEN 'master' ELSE coalesce(r.opd, '?') END
                    FROM kotasync.history h LEFT JOIN kotasync.replicas r ON r.number = h.writer
                    WHERE h.tbl = $1 AND h.pk IN (\(marks)) ORDER BY h.pk, h.version DESC
                    """, binds: bindings), logger: logger
        ).decode((ByteBuffer, Int64, String).self) {
            out[Array(buffer: pk)] = (UInt64(version), opd)
        }
        return out
    }

    public func browseRow(table name: String, key: [SQLValue]) async throws -> [SQLValue]? {
        guard let table = config.table(named: name) else {
            throw SyncError(.unknownTable, "Table \(name) is not replicated by this server.")
        }
        guard key.count == table.primaryKey.count else { return nil }
        return try await master.readSnapshot { connection in
            try await self.liveRowValues(of: table, key: key, connection).map { key + $0 }
        }
    }

    public func history(table name: String, key: [SQLValue]) async throws -> [RowVersion] {
        guard let table = config.table(named: name) else {
            throw SyncError(.unknownTable, "Table \(name) is not replicated by this server.")
        }
        guard key.count == table.primaryKey.count else {
            throw SyncError(
                .invalidPrimaryKey,
                "Table \(name) is keyed by (\(table.primaryKey.map(\.name).joined(separator: ", "))); give \(table.primaryKey.count) key value(s)."
            )
        }
        let pk = ByteBuffer(bytes: PrimaryKeyCoding.encode(key))
        return try await master.readSnapshot { connection in
            var deleted = true
            for try await value in try await connection.query(
                "SELECT deleted FROM kotasync.rows WHERE tbl = \(name) AND pk = \(pk)", logger: logger
            ).decode(Bool.self) {
                deleted = value
            }
            let current = deleted ? nil : try await self.liveRowValues(of: table, key: key, connection)
            var entries: [RowHistory.Entry] = []
            var writers: [Int64: (id: UUID, opd: String)] = [0: (Writer.master.id, "master")]
            for try await (version, writer, stamp, op, old, clamped, uuid, opd) in try await connection.query(
                """
                SELECT h.version, h.writer, h.stamp, h.op, h.old, h.clamped, r.uuid, r.opd
                FROM kotasync.history h LEFT JOIN kotasync.replicas r ON r.number = h.writer
                WHERE h.tbl = \(name) AND h.pk = \(pk) ORDER BY h.version DESC
                """, logger: logger
            ).decode((Int64, Int64, Int64, Int16, ByteBuffer, Bool, ByteBuffer?, String?).self) {
                entries.append(
                    RowHistory.Entry(
                        version: UInt64(version), writer: writer, stamp: stamp, operation: Int(op),
                        old: Array(buffer: old), clamped: clamped))
                if writer != 0 {
                    writers[writer] = (uuid.map { UUID(bytes: Array(buffer: $0)) } ?? .zero, opd ?? "?")
                }
            }
            return try RowHistory.versions(table: table, current: current, entries: entries) { number in
                writers[number] ?? (.zero, "?")
            }
        }
    }

    /// The non-key values of the row of `table` with `key`, nil when the master does not hold it.
    func liveRowValues(of table: TableSchema, key: [SQLValue], _ connection: PostgresConnection) async throws
        -> [SQLValue]?
    {
        let keyTypes = table.primaryKey.map { PostgresColumnType($0.affinity) }
        let columnTypes = table.columns.map { PostgresColumnType($0.affinity) }
        var bindings = PostgresBindings()
        var conditions: [String] = []
        for (column, (value, type)) in zip(table.primaryKey, zip(key, keyTypes)) {
            conditions.append("\(PostgresTableDefinition.quote(column.name)) = \(type.placeholder(bindings.count + 1))")
            // A key value the column cannot hold names no row.
            do { try type.bind(value, to: &bindings) } catch { return nil }
        }
        // A table of key columns only selects a constant.
        let selected = zip(table.columns, columnTypes).flatMap { column, type in
            type.select(PostgresTableDefinition.quote(column.name))
        }
        let rows = try await connection.query(
            PostgresQuery(
                unsafeSQL: """
                    SELECT \(selected.isEmpty ? "1" : selected.joined(separator: ", "))
                    FROM \(PostgresTableDefinition.publicTable(table.name)) WHERE \(conditions.joined(separator: " AND "))
                    """, binds: bindings), logger: logger)
        for try await row in rows {
            return selected.isEmpty ? [] : try Self.decodeValues(row, columnTypes)
        }
        return nil
    }

    /// A row read with the select expressions of `types` (``PostgresColumnType/select(_:)``).
    static func decodeValues(_ row: PostgresRow, _ types: [PostgresColumnType]) throws -> [SQLValue] {
        let cells = row.makeRandomAccess()
        var values: [SQLValue] = []
        values.reserveCapacity(types.count)
        var next = 0
        for type in types {
            values.append(try type.decode(cells, at: next))
            next += type.selectCount
        }
        return values
    }
}

/// What a device's reports left in `kotasync.devices`, for the overview.
private struct DeviceTelemetry: Sendable {
    var client: String?
    var pending: Int64?
    var lastError: String?
    var cursor: Int64?
    var lastPullAt: String?
    var refused: Int64
}
