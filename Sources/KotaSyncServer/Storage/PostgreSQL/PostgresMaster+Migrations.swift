import Foundation
import KotaSyncCore
import PostgresNIO

extension PostgresMaster {
    /// Brings the master to the config's schema version (``MasterMigration`` decides, as on
    /// SQLite): checks its tables against the config's at the master's version, carries out each
    /// step, records it in `kotasync.migrations`, and stores the new version, in the transaction
    /// (under the schema lock) that opens the master.
    ///
    /// A PostgreSQL master holds a table's UNIQUE indexes only (``PostgresTableDefinition``): a
    /// new one is made by the table's definition after the steps; other indexes are SQLite's
    /// concern, and dropping a UNIQUE index is refused here until the step is carried over.
    func migrate(_ connection: PostgresConnection, config: ServerConfig) async throws {
        let created = try await serverValue("created_at", connection) != nil
        let recorded = try await serverValue("schema_version", connection).flatMap { Int($0) }
        let migration = try MasterMigration(recorded: recorded, created: created, config: config)
        if !migration.steps.isEmpty {
            for table in migration.tablesBefore(config) {
                let existing = try await Self.columns(of: table.name, connection, logger: logger)
                guard !existing.isEmpty else { continue }
                if let refusal = MasterMigration.mismatch(
                    table, key: table.primaryKey.map(\.name), columns: Array(existing.keys), version: migration.from)
                {
                    throw refusal
                }
            }
            let now = Timestamp.string(Date())
            for step in migration.steps {
                try await apply(step, connection)
                try await connection.query(
                    """
                    INSERT INTO kotasync.migrations(version, step, description, applied_at)
                    VALUES (\(Int64(step.version)), \(Int64(step.number)), \(step.description), \(now))
                    """, logger: logger)
            }
        }
        try await connection.query(
            """
            INSERT INTO kotasync.server(key, value) VALUES ('schema_version', \(String(config.schemaVersion)))
            ON CONFLICT (key) DO UPDATE SET value = excluded.value
            """, logger: logger)
    }

    private func apply(_ step: MasterMigration.Step, _ connection: PostgresConnection) async throws {
        switch step.change {
        case .createTable(let table, _):
            let definition = try PostgresTableDefinition(table)
            if try await Self.columns(of: table.name, connection, logger: logger).isEmpty {
                try await connection.query(PostgresQuery(unsafeSQL: definition.createTable), logger: logger)
                for index in definition.createUniqueIndexes {
                    try await connection.query(PostgresQuery(unsafeSQL: index), logger: logger)
                }
            }
        case .addColumn(let name, let column, _, let value):
            guard try await Self.columns(of: name, connection, logger: logger)[column.name] == nil else { return }
            let type = PostgresColumnType(column.affinity)
            let table = "public.\(PostgresTableDefinition.quote(name))"
            let quoted = PostgresTableDefinition.quote(column.name)
            try await connection.query(
                PostgresQuery(unsafeSQL: "ALTER TABLE \(table) ADD COLUMN \(quoted) \(type.sql)"), logger: logger)
            if value != .null {
                // The rows the master holds take the column's default, as SQLite gives them.
                var bindings = PostgresBindings()
                try type.bind(value, to: &bindings)
                try await connection.query(
                    PostgresQuery(
                        unsafeSQL: "UPDATE \(table) SET \(quoted) = \(type.placeholder(1))", binds: bindings),
                    logger: logger)
            }
            if column.notNull {
                try await connection.query(
                    PostgresQuery(unsafeSQL: "ALTER TABLE \(table) ALTER COLUMN \(quoted) SET NOT NULL"), logger: logger
                )
            }
        case .createIndex:
            break  // a UNIQUE one is made with the table's definition after the steps
        case .dropIndex(_, let name, let sql):
            if sql.range(of: "UNIQUE", options: .caseInsensitive) != nil {
                throw ConfigError(
                    .invalidMigration,
                    "Migration to version \(step.version), step \(step.description): dropping the UNIQUE index \(name) is not carried out on a PostgreSQL master yet."
                )
            }
        case .untranslated:
            break  // refused by MasterMigration
        }
    }
}
