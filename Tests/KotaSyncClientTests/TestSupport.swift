import Foundation
import GRDB
import KotaSyncClient
import KotaSyncCore
import KotaSyncSQLite

/// A new, empty directory for one test.
func makeTemporaryDirectory(_ name: String = #function) throws -> URL {
    let safe = name.filter { $0.isLetter || $0.isNumber }
    let url = FileManager.default.temporaryDirectory.appendingPathComponent(
        "kotasync-client-\(safe)-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// A table as the server would publish it, read back from SQLite the way the server does.
func table(_ name: String, _ ddl: String) throws -> TableSchema {
    let (key, columns) = try DatabaseQueue().write { db in
        try db.execute(sql: ddl)
        return try SchemaIntrospection.describe(db, table: name)!
    }
    return TableSchema(name: name, ddl: ddl, primaryKey: key, columns: columns)
}

/// The schema the client tests replicate.
func testSchema() throws -> SchemaDocument {
    SchemaDocument(
        server: "test", opd: "pkm-test",
        tables: [
            try table("notes", "CREATE TABLE notes (id TEXT PRIMARY KEY, title TEXT, body TEXT, score INTEGER)"),
            try table("pairs", "CREATE TABLE pairs (a TEXT NOT NULL, b INTEGER NOT NULL, v, PRIMARY KEY (a, b))"),
            try table("kinds", "CREATE TABLE kinds (id TEXT PRIMARY KEY, i INTEGER, r REAL, t TEXT, b BLOB, anything)"),
        ])
}

/// A new replica of ``testSchema()`` in a fresh directory.
func makeReplica(_ name: String = #function) throws -> Replica {
    let path = try makeTemporaryDirectory(name).appendingPathComponent("replica.sqlite").path
    try Replica.create(at: path, schema: try testSchema(), serverURL: URL(string: "http://127.0.0.1:9")!, token: "t")
    return try Replica(path: path)
}

/// Runs SQL through the sqlite3 shell, a program that knows nothing of KotaSync.
func sqlite3Shell(_ path: String, _ sql: String) throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
    process.arguments = [path, sql]
    try process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { throw ShellFailure(status: process.terminationStatus) }
}

/// Runs a Python program with the database path as its argument.
func python(_ path: String, _ program: String) throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", "-c", program, path]
    try process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { throw ShellFailure(status: process.terminationStatus) }
}

struct ShellFailure: Error {
    var status: Int32
}

/// The changeset the replica would push next, decoded.
func nextPush(_ replica: Replica) throws -> Changeset? {
    try replica.nextOutbound().map { try ChangesetCodec.decode($0.body) }
}

extension Changeset {
    /// The rows of `table`, keyed by their first key value's description.
    func rows(of table: String) -> [Row] {
        guard let t = tables.firstIndex(where: { $0.name == table }) else { return [] }
        return rows.filter { $0.table == t }
    }

    /// Column name → value of a row.
    func values(_ row: Row) -> [String: SQLValue] {
        Dictionary(uniqueKeysWithValues: row.columns.map { (tables[row.table].columns[$0.column], $0.value) })
    }
}

/// A pull page for ``testSchema()`` starting at `cursor`.
func page(after cursor: UInt64, _ rows: [Changeset.Row]) throws -> Changeset {
    Changeset(
        kind: .pull, id: UUID(), replicaID: .zero, firstSequence: cursor,
        lastSequence: rows.map(\.version).max() ?? cursor,
        tables: try testSchema().tables.map(\.changesetTable), rows: rows)
}

/// A pulled `notes` row.
func note(_ id: String, version: UInt64, title: String?, body: String?, score: Int64?) -> Changeset.Row {
    func v(_ s: String?) -> SQLValue { s.map { .text($0) } ?? .null }
    return Changeset.Row(
        table: 0, operation: .upsert, version: version,
        stamp: HLC(milliseconds: 1_700_000_000_000 + version, counter: 0),
        primaryKey: [.text(id)],
        columns: [
            .init(column: 0, value: v(title)), .init(column: 1, value: v(body)),
            .init(column: 2, value: score.map { .integer($0) } ?? .null),
        ])
}

/// Reads rows with GRDB, as exact values.
func rows(_ path: String, _ sql: String) throws -> [[SQLValue]] {
    try DatabaseQueue(path: path).read { db in
        try Row.fetchAll(db, sql: sql).map { $0.databaseValues.map(SQLValue.init) }
    }
}

/// A push reply acknowledging `outbound` with no conflicts.
func reply(for outbound: OutboundChangeset, replica: Replica) -> PushReply {
    PushReply(
        changesetId: outbound.id, replicaId: replica.id, rows: outbound.rows, applied: outbound.rows, clampedStamps: 0,
        masterSequence: 1, conflicts: [])
}
