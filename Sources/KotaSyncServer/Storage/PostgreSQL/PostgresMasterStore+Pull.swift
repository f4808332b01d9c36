import Foundation
import KotaSyncCore
import NIOCore
import PostgresNIO

/// The pull on PostgreSQL: the SQLite master's pages (``PullPageBuilder`` decides both), read
/// set-based from one snapshot.
///
/// A page costs a fixed number of round trips, whatever its size: the page's heads in one query
/// (`kotasync.rows` in version order through `rows_version`, filtered by the access service's
/// pull reach of each table), the live rows' values in one query per table that has any (a join
/// of the table with the page's keys), and the master's latest version when the page reaches the
/// end. All of it in one `REPEATABLE READ READ ONLY` transaction, so the heads, the values and
/// the latest version are one snapshot. A pull never takes the merge lock (decision D3): the
/// merge holds it from version allocation to commit, so versions become visible in number order
/// and a snapshot never holds a version above one it lacks.
extension PostgresMasterStore {
    public func pull(after cursor: UInt64, limit: Int, opd: String?) async throws -> PullPage {
        let limit = max(1, min(limit, config.limits.maxPullPage))
        let tableIndex = Dictionary(uniqueKeysWithValues: config.tables.enumerated().map { ($1.name, $0) })
        let config = config
        return try await master.readSnapshot { connection in
            var builder = PullPageBuilder(
                config: config, tableIndex: tableIndex, opd: opd, cursor: cursor, limit: limit)
            let heads = try await self.pageHeads(after: cursor, limit: limit, opd: opd, builder: builder, connection)
            // The entry past the limit only tells that there is more: its values are not needed.
            let taken = heads.prefix(limit)
            var values: [Int: [SQLValue]] = [:]
            for t in config.tables.indices {
                let wanted = taken.enumerated().filter { $0.element.table == t && $0.element.needsValues }
                guard !wanted.isEmpty else { continue }
                try await self.liveValues(
                    of: t, keys: wanted.map { ($0.offset, $0.element.key) }, into: &values, connection)
            }
            for (n, head) in heads.enumerated() {
                guard builder.add(head, values: values[n]) else { break }
            }
            // The latest version only when the page reached the end of what the device may see.
            var latest: UInt64 = 0
            if !builder.hasMore { latest = try await self.latestRowVersion(connection) }
            return builder.page { latest }
        }
    }

    /// The whole master's changes, as the Command Center sees them (no scope).
    public func pull(after cursor: UInt64, limit: Int) async throws -> PullPage {
        try await pull(after: cursor, limit: limit, opd: nil)
    }

    /// The heads of the rows changed after `cursor` that a device of `opd` may be sent (all of
    /// them when nil), decoded, in version order: at most `limit + 1`.
    private func pageHeads(
        after cursor: UInt64, limit: Int, opd: String?, builder: PullPageBuilder, _ connection: PostgresConnection
    ) async throws -> [PullPageBuilder.Head] {
        var bindings = PostgresBindings()
        bindings.append(Int64(cursor))
        let visible = visibleRows(to: opd, &bindings)
        bindings.append(Int64(limit + 1))
        let rows = try await connection.query(
            PostgresQuery(
                unsafeSQL: """
                    SELECT tbl, pk, version, clocks, (scope).i, (scope).r, (scope).t, (scope).b FROM kotasync.rows
                    WHERE version > $1 AND \(visible) ORDER BY version LIMIT $\(bindings.count)
                    """, binds: bindings), logger: logger)
        var heads: [PullPageBuilder.Head] = []
        for try await row in rows {
            let cells = row.makeRandomAccess()
            // Only a device's page asks for the scope.
            let scope = opd == nil ? nil : try PostgresColumnType.value.decode(cells, at: 4)
            heads.append(
                try builder.head(
                    table: try cells[0].decode(String.self), pk: Array(buffer: try cells[1].decode(ByteBuffer.self)),
                    version: UInt64(try cells[2].decode(Int64.self)),
                    clocks: Array(buffer: try cells[3].decode(ByteBuffer.self)),
                    scope: { scope }))
        }
        return heads
    }

    /// The condition on `kotasync.rows` for the rows a device of `opd` may be sent, as the
    /// access service's pull reach of each table says (``AccessPolicy/pullReach(opd:table:)``),
    /// and rows that left its scope (its OPD in `gone_for`: it is sent their removal). Its
    /// parameters are appended to `bindings`. Nil: everything.
    private func visibleRows(to opd: String?, _ bindings: inout PostgresBindings) -> String {
        guard let opd else { return "true" }
        var clauses: [String] = []
        for table in config.tables {
            switch config.access.pullReach(opd: opd, table: table.name) {
            case .none:
                continue
            case .whole:
                bindings.append(table.name)
                clauses.append("tbl = $\(bindings.count)")
            case .scopes(let scopes):
                bindings.append(table.name)
                let name = bindings.count
                bindings.append(scopes)
                let owners = bindings.count
                bindings.append(",\(opd),")
                clauses.append(
                    "(tbl = $\(name) AND ((scope).t = ANY($\(owners)::text[]) OR strpos(gone_for, $\(bindings.count)) > 0))"
                )
            }
        }
        return clauses.isEmpty ? "false" : "(" + clauses.joined(separator: " OR ") + ")"
    }

    /// The values of the live rows of table `t` with `keys` (each with its entry's position in
    /// the page), into `values` by position: one query per batch of keys (as many as fit in a
    /// statement's parameters), a join of the table with the keys.
    private func liveValues(
        of t: Int, keys: [(Int, [SQLValue])], into values: inout [Int: [SQLValue]], _ connection: PostgresConnection
    ) async throws {
        let table = config.tables[t]
        let keyTypes = table.primaryKey.map { PostgresColumnType($0.affinity) }
        let columnTypes = table.columns.map { PostgresColumnType($0.affinity) }
        let perKey = 1 + keyTypes.reduce(0) { $0 + $1.parameterCount }
        let batchSize = max(1, Self.maxPullBinds / perKey)
        let selected =
            ["k.n"]
            + zip(table.columns, columnTypes).flatMap { column, type in
                type.select("t.\(PostgresTableDefinition.quote(column.name))")
            }
        let aliases = (1...keyTypes.count).map { "k\($0)" }
        let join = zip(table.primaryKey, aliases).map { column, alias in
            "t.\(PostgresTableDefinition.quote(column.name)) = k.\(alias)"
        }.joined(separator: " AND ")
        for start in stride(from: 0, to: keys.count, by: batchSize) {
            let batch = keys[start..<min(start + batchSize, keys.count)]
            var bindings = PostgresBindings(capacity: perKey * batch.count)
            var tuples: [String] = []
            for (n, key) in batch {
                bindings.append(Int64(n))
                var placeholders = ["$\(bindings.count)::bigint"]
                for (value, type) in zip(key, keyTypes) {
                    placeholders.append(type.placeholder(bindings.count + 1))
                    try type.bind(value, to: &bindings)
                }
                tuples.append("(" + placeholders.joined(separator: ", ") + ")")
            }
            let rows = try await connection.query(
                PostgresQuery(
                    unsafeSQL: """
                        SELECT \(selected.joined(separator: ", ")) FROM \(PostgresTableDefinition.publicTable(table.name)) AS t
                        JOIN (VALUES \(tuples.joined(separator: ", "))) AS k(n, \(aliases.joined(separator: ", ")))
                        ON \(join)
                        """, binds: bindings), logger: logger)
            for try await row in rows {
                let cells = row.makeRandomAccess()
                var rowValues: [SQLValue] = []
                rowValues.reserveCapacity(columnTypes.count)
                var next = 1
                for type in columnTypes {
                    rowValues.append(try type.decode(cells, at: next))
                    next += type.selectCount
                }
                values[Int(try cells[0].decode(Int64.self))] = rowValues
            }
        }
    }

    /// The most bind parameters one statement is given (PostgreSQL takes at most 65535).
    static let maxPullBinds = 30_000

    /// The master's latest version (0 for an empty master).
    func latestRowVersion(_ connection: PostgresConnection) async throws -> UInt64 {
        for try await latest in try await connection.query(
            "SELECT max(version) FROM kotasync.rows", logger: logger
        ).decode(Int64?.self) {
            return UInt64(latest ?? 0)
        }
        return 0
    }
}

extension PostgresMaster {
    /// Runs `body` in one read-only `REPEATABLE READ` transaction: every query of it reads the
    /// same snapshot, and commits made meanwhile (by this or another server) are not half seen.
    package func readSnapshot<T: Sendable>(
        isolation: isolated (any Actor)? = #isolation, _ body: (PostgresConnection) async throws -> T
    ) async throws -> T {
        try await transaction(begin: "START TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY", body)
    }
}

extension PostgresTableDefinition {
    /// Replicated table `name` as a qualified PostgreSQL name (`public."name"`).
    static func publicTable(_ name: String) -> String { "public.\(quote(name))" }
}
