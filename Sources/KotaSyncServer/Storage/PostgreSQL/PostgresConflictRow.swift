import Foundation
import KotaSyncCore
import NIOCore
import PostgresNIO

/// A row of `kotasync.conflicts` as a ``StoredConflict``, both ways, written once: the merge's
/// port reads and inserts records through it, and the review and conflict lists read them
/// through it (``ConflictReport/init(stored:writer:opd:)`` makes the protocol's report).
///
/// The side values (`base_value`, `winner_value`, `loser_value`) are `kotasync.value`
/// composites beside a has-value flag, as SQLite keeps a value and a flag: a side "without a
/// value" and a side whose value is NULL stay apart.
enum PostgresConflictRow {
    /// The columns a record is read from, each qualified by `alias`, in the order
    /// ``decode(_:at:)`` reads them (``columnCount`` result columns).
    static func columns(_ alias: String = "c") -> String {
        func value(_ name: String) -> String {
            PostgresColumnType.value.select("\(alias).\(name)").joined(separator: ", ")
        }
        let a = alias
        return """
            \(a).id, \(a).tbl, \(a).pk, \(a).col, \(a).kind, \(a).policy, \(a).status, \(a).base_version, \(a).has_base, \
            \(value("base_value")), \(a).winner_writer, \(a).winner_stamp, \(a).winner_has_value, \(value("winner_value")), \
            \(a).loser_writer, \(a).loser_stamp, \(a).loser_version, \(a).loser_insert, \(a).loser_delete, \
            \(a).loser_has_value, \(value("loser_value")), \(a).changeset, \(a).decided_at, \(a).reason, \(a).held, \
            \(a).related_tbl, \(a).related_pk, \(a).resolution
            """
    }

    /// How many result columns ``columns(_:)`` selects.
    static let columnCount = 37

    /// The record selected by ``columns(_:)`` starting at result column `first`.
    static func decode(_ cells: PostgresRandomAccessRow, at first: Int = 0) throws -> StoredConflict {
        func cell(_ i: Int) -> PostgresCell { cells[first + i] }
        func int(_ i: Int) throws -> Int64 { try cell(i).decode(Int64.self) }
        func text(_ i: Int) throws -> String? { try cell(i).decode(String?.self) }
        func bytes(_ i: Int) throws -> [UInt8] { Array(buffer: try cell(i).decode(ByteBuffer.self)) }
        func flag(_ i: Int) throws -> Bool { try cell(i).decode(Bool.self) }
        /// A side's value after its has-value flag at `i`.
        func value(_ i: Int) throws -> SQLValue? {
            try flag(i) ? PostgresColumnType.value.decode(cells, at: first + i + 1) : nil
        }
        var related: RowReference?
        if let table = try text(34), let pk = try cell(35).decode(ByteBuffer?.self) {
            related = RowReference(table: table, primaryKey: try PrimaryKeyCoding.decode(Array(buffer: pk)))
        }
        return StoredConflict(
            id: try int(0), table: try cell(1).decode(String.self), key: try PrimaryKeyCoding.decode(bytes(2)),
            column: try text(3), kind: ConflictReport.Kind(rawValue: try cell(4).decode(String.self)) ?? .updateUpdate,
            policy: try cell(5).decode(String.self),
            status: ConflictReport.Status(rawValue: try cell(6).decode(String.self)) ?? .superseded,
            baseVersion: UInt64(bitPattern: try int(7)), base: try value(8), winnerWriter: try int(13),
            winnerStamp: HLC(rawValue: UInt64(bitPattern: try int(14))), winnerValue: try value(15),
            loserWriter: try int(20), loserStamp: HLC(rawValue: UInt64(bitPattern: try int(21))),
            loserVersion: UInt64(bitPattern: try int(22)), loserInsert: try flag(23), loserDelete: try flag(24),
            loserValue: try value(25), changeset: UUID(bytes: try bytes(30)),
            decidedAt: try cell(31).decode(String.self),
            reason: try text(32), held: try text(33), related: related, resolution: try text(36))
    }

    /// The columns ``bind(_:into:)`` fills, in its order.
    static let insertColumns = """
        id, tbl, pk, col, kind, policy, status, base_version, base_value, has_base, winner_writer, winner_stamp,
        winner_value, winner_has_value, loser_writer, loser_stamp, loser_version, loser_insert, loser_value,
        loser_has_value, changeset, decided_at, loser_delete, reason, held, related_tbl, related_pk, resolution
        """

    /// Appends the record's values (``insertColumns``, `record.id` included) to `statement` and
    /// returns the parenthesised placeholders of one row of a `VALUES` list.
    static func bind(_ r: StoredConflict, into statement: inout PostgresStatement) throws -> String {
        var p: [String] = []
        p.append(statement.bind(r.id))
        p.append(statement.bind(r.table))
        p.append(statement.bind(PostgresStatement.bytes(PrimaryKeyCoding.encode(r.key))))
        p.append(statement.bind(r.column))
        p.append(statement.bind(r.kind.rawValue))
        p.append(statement.bind(r.policy))
        p.append(statement.bind(r.status.rawValue))
        p.append(statement.bind(Int64(bitPattern: r.baseVersion)))
        p.append(try statement.value(r.base ?? .null, as: .value))
        p.append(statement.bind(r.base != nil))
        p.append(statement.bind(r.winnerWriter))
        p.append(statement.bind(Int64(bitPattern: r.winnerStamp.rawValue)))
        p.append(try statement.value(r.winnerValue ?? .null, as: .value))
        p.append(statement.bind(r.winnerValue != nil))
        p.append(statement.bind(r.loserWriter))
        p.append(statement.bind(Int64(bitPattern: r.loserStamp.rawValue)))
        p.append(statement.bind(Int64(bitPattern: r.loserVersion)))
        p.append(statement.bind(r.loserInsert))
        p.append(try statement.value(r.loserValue ?? .null, as: .value))
        p.append(statement.bind(r.loserValue != nil))
        p.append(statement.bind(PostgresStatement.bytes(r.changeset.bytes)))
        p.append(statement.bind(r.decidedAt))
        p.append(statement.bind(r.loserDelete))
        p.append(statement.bind(r.reason))
        p.append(statement.bind(r.held))
        p.append(statement.bind(r.related?.table))
        p.append(statement.bind(r.related.map { PostgresStatement.bytes(PrimaryKeyCoding.encode($0.primaryKey)) }))
        p.append(statement.bind(r.resolution))
        return "(" + p.joined(separator: ", ") + ")"
    }
}

/// SQL text and its bindings, built together: each bind appends a value and returns its
/// placeholder (`$n`), so statements whose shape depends on the data (a `VALUES` list of many
/// rows, a typed key) are written without counting parameters by hand.
struct PostgresStatement {
    private(set) var bindings = PostgresBindings()
    private(set) var count = 0

    /// Binds `value` as its own PostgreSQL type and returns its placeholder.
    mutating func bind<Value: PostgresDynamicTypeEncodable>(_ value: Value) -> String {
        bindings.append(value)
        count += 1
        return "$\(count)"
    }

    /// Binds `value` (NULL when nil) and returns its placeholder.
    mutating func bind<Value: PostgresDynamicTypeEncodable>(_ value: Value?) -> String {
        bindings.append(value)
        count += 1
        return "$\(count)"
    }

    /// Binds `value` as a column of `type` keeps it (``PostgresColumnType/bind(_:to:)``) and
    /// returns the SQL expression that reads it.
    mutating func value(_ value: SQLValue, as type: PostgresColumnType) throws(SyncError) -> String {
        let placeholder = type.placeholder(count + 1)
        try type.bind(value, to: &bindings)
        count += type.parameterCount
        return placeholder
    }

    /// The query: `sql` with these bindings.
    func query(_ sql: String) -> PostgresQuery { PostgresQuery(unsafeSQL: sql, binds: bindings) }

    /// Bytes as a `bytea` value.
    static func bytes(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }

    /// The most parameters a statement built here takes (PostgreSQL's limit is 65,535).
    static let maxParameters = 30_000
}
