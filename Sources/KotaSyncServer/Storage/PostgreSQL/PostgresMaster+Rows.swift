import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite
import Logging
import PostgresNIO

/// What a PostgreSQL master does with its rows when it starts, as the SQLite master does: on a
/// new master, the config's seed file and the adoption of every row already in the tables; on
/// every start, the config's sync rules brought into the rows' bookkeeping (``RuleChange``).
extension PostgresMaster {
    /// Rows per multi-row statement.
    private static let batch = 500

    /// Runs inside ``prepareSchema(for:)``'s transaction, under the schema lock, after the tables exist.
    func prepareRows(_ connection: PostgresConnection, config: ServerConfig, tables: [PostgresTableDefinition])
        async throws
    {
        let fresh = try await serverValue("created_at", connection) == nil
        if fresh {
            if let seed = config.seedFile { try await loadSeed(seed, tables: tables, connection) }
            try await adoptExistingRows(tables, connection)
        }
        try await applyRules(config, tables: tables, fresh: fresh, connection)
    }

    func serverValue(_ key: String, _ connection: PostgresConnection) async throws -> String? {
        let rows = try await connection.query("SELECT value FROM kotasync.server WHERE key = \(key)", logger: logger)
        for try await value in rows.decode(String?.self) { return value }
        return nil
    }

    /// The seed file is SQLite SQL (the same file serves both backends): it runs in a scratch
    /// SQLite database with the config's tables, and its rows move to PostgreSQL value for value
    /// through the exact mapping (``PostgresColumnType``).
    private func loadSeed(_ seed: URL, tables: [PostgresTableDefinition], _ connection: PostgresConnection)
        async throws
    {
        let sql: String
        do {
            sql = try String(contentsOf: seed, encoding: .utf8)
        } catch {
            throw ConfigError(.unreadable, "Cannot read the seed file \(seed.path): \(error.localizedDescription)")
        }
        let scratch = try DatabaseQueue()
        let seeded: [[[SQLValue]]]
        do {
            seeded = try await scratch.write { db in
                for table in tables { try db.execute(sql: table.schema.ddl) }
                try db.execute(sql: sql)
                return try tables.map { table in
                    let names = (table.schema.primaryKey + table.schema.columns).map { SQL.quote($0.name) }
                    return try Row.fetchAll(
                        db, sql: "SELECT \(names.joined(separator: ", ")) FROM \(SQL.quote(table.schema.name))"
                    ).map { row in row.databaseValues.map(SQLValue.init) }
                }
            }
        } catch let error as DatabaseError {
            throw ConfigError(
                .invalid,
                "The seed file \(seed.path) does not run on the config's tables: \(error.message ?? "\(error)")")
        }
        for (table, rows) in zip(tables, seeded) {
            let keyCount = table.keyTypes.count
            for row in rows {
                let bindings: PostgresBindings
                do {
                    bindings = try table.bindRow(
                        key: Array(row.prefix(keyCount)), values: Array(row.dropFirst(keyCount)))
                } catch {
                    throw ConfigError(
                        .invalid,
                        "A row of the seed file for table \(table.schema.name) cannot be kept by the PostgreSQL master: \(error.message)"
                    )
                }
                try await connection.query(PostgresQuery(unsafeSQL: table.insertRow, binds: bindings), logger: logger)
            }
        }
    }

    /// Gives every row already in the replicated tables (the seed's, or a database that existed
    /// before KotaSync) a bookkeeping entry as written by the master itself, so replicas pull it.
    private func adoptExistingRows(_ tables: [PostgresTableDefinition], _ connection: PostgresConnection) async throws {
        var version = try await latestVersion(connection)
        let stamp = HLC(milliseconds: Timestamp.milliseconds(Date()), counter: 0)
        for table in tables {
            let keys = try await keys(of: table, connection)
            var start = 0
            while start < keys.count {
                let slice = keys[start..<min(start + Self.batch, keys.count)]
                var bindings = PostgresBindings(capacity: slice.count * 4)
                var tuples: [String] = []
                for key in slice {
                    version += 1
                    let head = Head(writer: .master, version: version, stamp: stamp)
                    let clocks = RowClocks(
                        version: version, columns: Array(repeating: head, count: table.schema.columns.count),
                        existence: [head])
                    let n = tuples.count * 4
                    tuples.append("($\(n + 1), $\(n + 2), $\(n + 3), false, $\(n + 4))")
                    bindings.append(table.schema.name)
                    bindings.append(ByteBuffer(bytes: PrimaryKeyCoding.encode(key)))
                    bindings.append(Int64(version))
                    bindings.append(ByteBuffer(bytes: RowClocksCoding.encode(clocks)))
                }
                try await connection.query(
                    PostgresQuery(
                        unsafeSQL: """
                            INSERT INTO kotasync.rows(tbl, pk, version, deleted, clocks) VALUES \(tuples.joined(separator: ", "))
                            ON CONFLICT (tbl, pk) DO NOTHING
                            """, binds: bindings), logger: logger)
                start += slice.count
            }
        }
    }

    private func latestVersion(_ connection: PostgresConnection) async throws -> UInt64 {
        let rows = try await connection.query("SELECT max(version) FROM kotasync.rows", logger: logger)
        for try await version in rows.decode(Int64?.self) { return UInt64(version ?? 0) }
        return 0
    }

    /// Every primary key of `table`, in key order.
    private func keys(of table: PostgresTableDefinition, _ connection: PostgresConnection) async throws -> [[SQLValue]]
    {
        let columns = zip(table.schema.primaryKey, table.keyTypes).flatMap { column, type in
            type.select(PostgresTableDefinition.quote(column.name))
        }
        let order = table.schema.primaryKey.map { PostgresTableDefinition.quote($0.name) }.joined(separator: ", ")
        let rows = try await connection.query(
            PostgresQuery(
                unsafeSQL: "SELECT \(columns.joined(separator: ", ")) FROM \(table.qualifiedName) ORDER BY \(order)"),
            logger: logger)
        var keys: [[SQLValue]] = []
        for try await row in rows {
            let cells = row.makeRandomAccess()
            var key: [SQLValue] = []
            var next = 0
            for type in table.keyTypes {
                key.append(try type.decode(cells, at: next))
                next += type.selectCount
            }
            keys.append(key)
        }
        return keys
    }

    /// Brings every row's scope in line with the config's sync rules (``RuleChange`` decides, as
    /// on SQLite), and keeps the rules for the next start.
    private func applyRules(
        _ config: ServerConfig, tables: [PostgresTableDefinition], fresh: Bool, _ connection: PostgresConnection
    ) async throws {
        let change = RuleChange(
            config: config, stored: RuleChange.decodeRules(try await serverValue("sync_rules", connection)),
            fresh: fresh)
        var version = try await latestVersion(connection)
        for schema in change.changedTables {
            guard let table = tables.first(where: { $0.schema.name == schema.name }) else { continue }
            // The live rows' values, by encoded key: what the scope is read from.
            var values: [[UInt8]: [SQLValue]] = [:]
            if config.rules.rules(for: schema.name).scope != nil {
                let rows = try await connection.query(PostgresQuery(unsafeSQL: table.selectRows), logger: logger)
                for try await row in rows {
                    let (key, rowValues) = try table.decodeRow(row)
                    values[PrimaryKeyCoding.encode(key)] = rowValues
                }
            }
            let heads = try await connection.query(
                """
                SELECT pk, deleted, (scope).i, (scope).r, (scope).t, (scope).b, gone_for
                FROM kotasync.rows WHERE tbl = \(schema.name) ORDER BY version
                """, logger: logger)
            var updates: [(pk: [UInt8], scope: SQLValue, goneFor: String?, version: UInt64?)] = []
            for try await row in heads {
                let cells = row.makeRandomAccess()
                let pk = Array(buffer: try cells[0].decode(ByteBuffer.self))
                let deleted = try cells[1].decode(Bool.self)
                let scope = try PostgresColumnType.value.decode(cells, at: 2)
                let goneFor = try cells[6].decode(String?.self)
                let update = change.update(
                    table: schema, key: try PrimaryKeyCoding.decode(pk), values: deleted ? nil : values[pk],
                    scope: scope,
                    goneFor: goneFor)
                if update.bump { version += 1 }
                guard update.bump || update.scope != scope || update.goneFor != goneFor else { continue }
                updates.append((pk, update.scope, update.goneFor, update.bump ? version : nil))
            }
            for update in updates {
                var bindings = PostgresBindings(capacity: 8)
                try PostgresColumnType.value.bind(update.scope, to: &bindings)
                bindings.append(update.goneFor)
                bindings.append(update.version.map { Int64($0) })
                bindings.append(schema.name)
                bindings.append(ByteBuffer(bytes: update.pk))
                try await connection.query(
                    PostgresQuery(
                        unsafeSQL: """
                            UPDATE kotasync.rows SET scope = \(PostgresColumnType.value.placeholder(1)), gone_for = $5,
                                version = coalesce($6, version) WHERE tbl = $7 AND pk = $8
                            """, binds: bindings), logger: logger)
            }
        }
        let rules = try change.encodedRules()
        try await connection.query(
            """
            INSERT INTO kotasync.server(key, value) VALUES ('sync_rules', \(rules))
            ON CONFLICT (key) DO UPDATE SET value = excluded.value
            """, logger: logger)
    }
}
