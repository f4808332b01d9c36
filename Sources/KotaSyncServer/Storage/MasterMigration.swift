import KotaSyncCore

/// What a master must do on start to reach the config's schema version (issue 16), decided once
/// for both backends; each backend carries out the ``SchemaChange``s in the transaction that
/// opens the master, records each step, and stores the new version, so a step never runs twice.
struct MasterMigration: Sendable {
    /// One step to apply.
    struct Step: Sendable {
        var version: Int
        /// The step's place in its migration, from 1.
        var number: Int
        /// The step as the config writes it (the master's record of it).
        var description: String
        var change: SchemaChange
    }

    /// The master's version before the migration: what it recorded, or 1 for a master made
    /// before versions were recorded; for a new master, the config's (its tables are made at it).
    let from: Int
    let steps: [Step]

    /// The migration of a master that recorded `recorded` (nil: none), made earlier (`created`)
    /// or now, to `config`'s version. Refuses a master newer than the config and a step the
    /// server cannot carry out yet.
    init(recorded: Int?, created: Bool, config: ServerConfig) throws(ConfigError) {
        let from = recorded ?? (created ? 1 : config.schemaVersion)
        guard from <= config.schemaVersion else {
            throw ConfigError(
                .invalidMigration,
                "The master is at schema version \(from), newer than this config's schema_version \(config.schemaVersion): it was migrated by a newer config. Start the server with that config (or a newer one); a master is never migrated back."
            )
        }
        var steps: [Step] = []
        for migration in config.migrations where migration.version > from {
            for (n, (step, change)) in zip(migration.steps, migration.changes).enumerated() {
                if case .untranslated = change {
                    throw ConfigError(
                        .invalidMigration,
                        "Migration to version \(migration.version), step \(step): this server does not translate renames and drops for replicas of older versions yet, so it cannot take the step. Declare only add_table, add_column, add_index and drop_index steps."
                    )
                }
                if case .addColumn(let table, let column, _, _) = change,
                    config.schema(at: migration.version)?.table(named: table)?.columns.last?.name != column.name
                {
                    // A master keeps each row's column clocks in the config's column order, and
                    // SQLite adds a column at the end: an added column must come last, after the
                    // columns of earlier versions.
                    throw ConfigError(
                        .invalidMigration,
                        "Migration to version \(migration.version), step \(step): \(column.name) must be the last column of \(table) at version \(migration.version) (a master adds it at the end). Move it to the end of the table's CREATE TABLE."
                    )
                }
                steps.append(Step(version: migration.version, number: n + 1, description: "\(step)", change: change))
            }
        }
        self.from = from
        self.steps = steps
    }

    /// Why a master table with `key` and `columns` is not `table` as version `version` declares
    /// it (its key differs, or a column is missing; more columns are allowed), with the step that
    /// would explain it; nil if it is.
    static func mismatch(_ table: TableSchema, key: [String], columns: [String], version: Int) -> ConfigError? {
        if key != table.primaryKey.map(\.name) {
            return ConfigError(
                .invalidDDL,
                "The master database's table \(table.name) is keyed by (\(key.joined(separator: ", "))), but the config's version \(version) keys it by (\(table.primaryKey.map(\.name).joined(separator: ", "))). A migration cannot change a table's key: fix the config."
            )
        }
        let missing = table.columns.map(\.name).filter { !columns.contains($0) }
        guard !missing.isEmpty else { return nil }
        let steps = missing.map { "add_column: {table: \(table.name), column: \($0)}" }.joined(separator: "; ")
        return ConfigError(
            .invalidDDL,
            "The master database's table \(table.name) has no column \(missing.joined(separator: ", ")), which the config's version \(version) declares. If the column is new, raise schema_version and declare it in a migration (\(steps)); if it was renamed, declare a rename_column step."
        )
    }

    /// The tables the master must hold before the steps: the config's at ``from``.
    func tablesBefore(_ config: ServerConfig) -> [TableSchema] {
        config.schema(at: from)?.tables ?? config.tables
    }
}
