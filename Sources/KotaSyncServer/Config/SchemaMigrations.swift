import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite

/// One step of a schema migration, as the config's `migrations:` declares it (issue 16).
///
/// The config's `tables:` always describe the newest version; each step says how the version
/// before it differs, and carries what is needed to rebuild that older version — the definition of
/// a dropped column, the DDL of a dropped table or index — so the server knows every version
/// between `min_client_schema` and `schema_version` and can translate between them.
public enum MigrationStep: Sendable, Equatable, CustomStringConvertible {
    /// A new table; its DDL is the table's entry in `tables:`.
    case addTable(String)
    /// A table no longer replicated; `ddl` is its `CREATE TABLE` before the step.
    case dropTable(String, ddl: String)
    case renameTable(from: String, to: String)
    /// A new non-key column; its definition (and its default) is in the table's DDL in `tables:`.
    case addColumn(table: String, column: String)
    /// A non-key column removed; `definition` is its column definition before the step
    /// (`phone TEXT`).
    case dropColumn(table: String, column: String, definition: String)
    case renameColumn(table: String, from: String, to: String)
    /// A new index; its `CREATE INDEX` is part of the table's DDL in `tables:`.
    case addIndex(table: String, index: String)
    /// An index removed; `ddl` is its `CREATE INDEX` before the step.
    case dropIndex(table: String, index: String, ddl: String)

    /// The step as the config writes it.
    public var description: String {
        switch self {
        case .addTable(let t): "add_table: {table: \(t)}"
        case .dropTable(let t, _): "drop_table: {table: \(t), ddl: …}"
        case .renameTable(let from, let to): "rename_table: {from: \(from), to: \(to)}"
        case .addColumn(let t, let c): "add_column: {table: \(t), column: \(c)}"
        case .dropColumn(let t, let c, _): "drop_column: {table: \(t), column: \(c), definition: …}"
        case .renameColumn(let t, let from, let to): "rename_column: {table: \(t), from: \(from), to: \(to)}"
        case .addIndex(let t, let i): "add_index: {table: \(t), index: \(i)}"
        case .dropIndex(let t, let i, _): "drop_index: {table: \(t), index: \(i), ddl: …}"
        }
    }
}

/// The steps that lead from version `version - 1` to `version`.
public struct SchemaMigration: Sendable, Equatable {
    public var version: Int
    public var steps: [MigrationStep]
    /// What each step does to a master's tables, in step order; filled when the config loads
    /// (``SchemaVersions``), from the tables of `version`.
    public var changes: [SchemaChange] = []

    public init(version: Int, steps: [MigrationStep]) {
        self.version = version
        self.steps = steps
    }
}

/// What one migration step does to a master's replicated tables, as both backends carry it out.
public enum SchemaChange: Sendable, Equatable {
    /// A new table as its version declares it, with its indexes' `CREATE INDEX`.
    case createTable(TableSchema, indexes: [String])
    /// A new last column of `table`: its SQLite column definition, and the value the rows the
    /// master holds take (its default).
    case addColumn(table: String, column: ColumnSchema, definition: String, value: SQLValue)
    case createIndex(table: String, name: String, sql: String)
    case dropIndex(table: String, name: String, sql: String)
    /// A step that changes what replicas see (a rename, a drop): a master cannot take it until the
    /// server translates it for replicas of older versions.
    case untranslated(MigrationStep)
}

/// The replicated tables at one schema version, and the indexes on them.
public struct VersionedSchema: Sendable, Equatable {
    /// An index as SQLite stores it: its table and its `CREATE INDEX`.
    public struct Index: Sendable, Equatable {
        public var table: String
        public var sql: String
    }

    public var version: Int
    public var tables: [TableSchema]
    public var indexes: [String: Index]

    /// The table called `name` at this version.
    public func table(named name: String) -> TableSchema? { tables.first { $0.name == name } }
}

/// Every schema version the config describes, derived from the newest (`tables:`) by undoing each
/// migration's steps in a scratch SQLite database, so every step is checked by SQLite itself: a
/// step that does not fit the version it leads to (a column it adds that the table lacks, a
/// rename of a column that is not there) is refused when the config loads.
public enum SchemaVersions {
    /// The schemas of versions 1 through the newest, oldest first. `ddl` are the newest tables'
    /// DDL (`tables:` in order); `migrations` lead from 2 to the newest.
    /// Fills each migration's ``SchemaMigration/changes``.
    static func derive(ddl: [(name: String, ddl: String)], migrations: inout [SchemaMigration]) throws(ConfigError)
        -> [VersionedSchema]
    {
        let newest = (migrations.last?.version ?? 1)
        var out: [VersionedSchema] = []
        var all = migrations
        do {
            let scratch = try DatabaseQueue()
            try scratch.write { db in
                for entry in ddl { try db.execute(sql: entry.ddl) }
                out.append(try snapshot(db, version: newest))
                for m in all.indices.reversed() {
                    let migration = all[m]
                    var changes: [SchemaChange] = []
                    // The tables as each step left them (a later step of the same migration may
                    // build on an earlier one), read again after each step is undone.
                    var current = out.last!
                    for step in migration.steps.reversed() {
                        do {
                            changes.append(try change(step, db, in: current))
                            try undo(step, db, in: current)
                            current = try snapshot(db, version: migration.version)
                        } catch let error as ConfigError {
                            throw error
                        } catch {
                            throw ConfigError(
                                .invalidMigration,
                                "Migration to version \(migration.version), step \(step): SQLite refuses to undo it (\(error))."
                            )
                        }
                    }
                    all[m].changes = changes.reversed()
                    out.append(try snapshot(db, version: migration.version - 1))
                }
            }
        } catch let error as ConfigError {
            throw error
        } catch {
            throw ConfigError(.invalidDDL, "The tables' DDL does not run together: \(error)")
        }
        migrations = all
        return out.reversed()
    }

    /// What `step` does to a master, read from `db`, which holds the schema `after` (the step's
    /// version) before the step is undone.
    private static func change(_ step: MigrationStep, _ db: Database, in after: VersionedSchema) throws -> SchemaChange
    {
        switch step {
        case .addTable(let name):
            guard let table = after.table(named: name) else { return .untranslated(step) }
            return .createTable(
                table,
                indexes: after.indexes.filter { $0.value.table == name }.sorted { $0.key < $1.key }.map(\.value.sql))
        case .addColumn(let name, let column):
            guard let table = after.table(named: name), let schema = table.columns.first(where: { $0.name == column })
            else { return .untranslated(step) }
            guard
                let info = try Row.fetchAll(db, sql: "PRAGMA table_xinfo(\(SQL.quote(name)))").first(where: {
                    ($0["name"] as String) == column
                })
            else { return .untranslated(step) }
            var definition = SQL.quote(column)
            let type: String = info["type"] ?? ""
            if !type.isEmpty { definition += " \(type)" }
            if (info["notnull"] as Int) != 0 { definition += " NOT NULL" }
            var value = SQLValue.null
            if let expression: String = info["dflt_value"] {
                definition += " DEFAULT \(expression)"
                value = SQLValue(try DatabaseValue.fetchOne(db, sql: "SELECT \(expression)") ?? .null)
            }
            for fk in try Row.fetchAll(db, sql: "PRAGMA foreign_key_list(\(SQL.quote(name)))")
            where (fk["from"] as String) == column {
                let parent: String = fk["table"]
                let to: String? = fk["to"]
                definition += " REFERENCES \(SQL.quote(parent))\(to.map { "(\(SQL.quote($0)))" } ?? "")"
            }
            return .addColumn(table: name, column: schema, definition: definition, value: value)
        case .addIndex(let name, let index):
            guard let sql = after.indexes[index]?.sql else { return .untranslated(step) }
            return .createIndex(table: name, name: index, sql: sql)
        case .dropIndex(let name, let index, let ddl):
            return .dropIndex(table: name, name: index, sql: ddl)
        case .dropTable, .renameTable, .dropColumn, .renameColumn:
            return .untranslated(step)
        }
    }

    /// Undoes `step` in `db`, which holds the schema `after` (the step's version).
    private static func undo(_ step: MigrationStep, _ db: Database, in after: VersionedSchema) throws {
        func refuse(_ why: String) -> ConfigError {
            ConfigError(.invalidMigration, "Migration to version \(after.version), step \(step): \(why)")
        }
        func table(_ name: String) throws(ConfigError) -> TableSchema {
            guard let table = after.table(named: name) else {
                throw refuse("version \(after.version) has no table \(name).")
            }
            return table
        }
        func nonKey(_ table: TableSchema, _ column: String) throws(ConfigError) {
            if table.primaryKey.contains(where: { $0.name == column }) {
                throw refuse("\(column) is a key column of \(table.name); a migration cannot change a table's key.")
            }
            guard table.columns.contains(where: { $0.name == column }) else {
                throw refuse("version \(after.version) of \(table.name) has no column \(column).")
            }
        }
        switch step {
        case .addTable(let name):
            _ = try table(name)
            try db.execute(sql: "DROP TABLE \(SQL.quote(name))")
        case .dropTable(let name, let ddl):
            guard after.table(named: name) == nil else { throw refuse("version \(after.version) still has \(name).") }
            try db.execute(sql: ddl)
            guard try db.tableExists(name) else { throw refuse("its ddl does not create a table named \(name).") }
        case .renameTable(let from, let to):
            _ = try table(to)
            guard after.table(named: from) == nil else { throw refuse("version \(after.version) still has \(from).") }
            try db.execute(sql: "ALTER TABLE \(SQL.quote(to)) RENAME TO \(SQL.quote(from))")
        case .addColumn(let name, let column):
            try nonKey(try table(name), column)
            try db.execute(sql: "ALTER TABLE \(SQL.quote(name)) DROP COLUMN \(SQL.quote(column))")
        case .dropColumn(let name, let column, let definition):
            let t = try table(name)
            guard !(t.primaryKey + t.columns).contains(where: { $0.name == column }) else {
                throw refuse("version \(after.version) of \(name) still has \(column).")
            }
            try db.execute(sql: "ALTER TABLE \(SQL.quote(name)) ADD COLUMN \(definition)")
            let described = try SchemaIntrospection.describe(db, table: name)
            guard described?.columns.last?.name == column else {
                throw refuse("its definition (\(definition)) does not define a column named \(column).")
            }
        case .renameColumn(let name, let from, let to):
            let t = try table(name)
            try nonKey(t, to)
            guard !t.columns.contains(where: { $0.name == from }) else {
                throw refuse("version \(after.version) of \(name) still has \(from).")
            }
            try db.execute(sql: "ALTER TABLE \(SQL.quote(name)) RENAME COLUMN \(SQL.quote(to)) TO \(SQL.quote(from))")
        case .addIndex(let name, let index):
            _ = try table(name)
            guard after.indexes[index]?.table == name else {
                throw refuse("version \(after.version) has no index \(index) on \(name).")
            }
            try db.execute(sql: "DROP INDEX \(SQL.quote(index))")
        case .dropIndex(let name, let index, let ddl):
            _ = try table(name)
            guard after.indexes[index] == nil else {
                throw refuse("version \(after.version) still has index \(index).")
            }
            try db.execute(sql: ddl)
            guard
                try String.fetchOne(
                    db, sql: "SELECT tbl_name FROM sqlite_master WHERE type = 'index' AND name = ?", arguments: [index])
                    == name
            else { throw refuse("its ddl does not create an index named \(index) on \(name).") }
        }
    }

    /// The tables and indexes in `db`, as version `version`.
    private static func snapshot(_ db: Database, version: Int) throws -> VersionedSchema {
        var tables: [TableSchema] = []
        for (name, sql) in try Row.fetchAll(
            db,
            sql: "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
        ).map({ ($0[0] as String, $0[1] as String) }) {
            guard let (key, columns) = try SchemaIntrospection.describe(db, table: name) else { continue }
            tables.append(TableSchema(name: name, ddl: sql, primaryKey: key, columns: columns))
        }
        var indexes: [String: VersionedSchema.Index] = [:]
        for row in try Row.fetchAll(
            db, sql: "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
        {
            indexes[row[0]] = VersionedSchema.Index(table: row[1], sql: row[2])
        }
        return VersionedSchema(version: version, tables: tables, indexes: indexes)
    }
}
