/// A replicated table as the server publishes it and every replica creates it.
public struct TableSchema: Codable, Sendable, Equatable {
    /// The table's name.
    public var name: String
    /// The `CREATE TABLE` statement, run verbatim on the master and on every new replica.
    public var ddl: String
    /// Primary-key columns, in key order.
    public var primaryKey: [ColumnSchema]
    /// The other columns, in declaration order. A changeset's column indexes count in this list.
    public var columns: [ColumnSchema]

    public init(name: String, ddl: String, primaryKey: [ColumnSchema], columns: [ColumnSchema]) {
        self.name = name
        self.ddl = ddl
        self.primaryKey = primaryKey
        self.columns = columns
    }

    /// How a changeset names this table.
    public var changesetTable: Changeset.Table {
        Changeset.Table(name: name, primaryKey: primaryKey.map(\.name), columns: columns.map(\.name))
    }
}

/// One column of a replicated table.
public struct ColumnSchema: Codable, Sendable, Equatable {
    public var name: String
    /// The declared type as written in the DDL (may be empty).
    public var declaredType: String
    public var notNull: Bool

    public init(name: String, declaredType: String, notNull: Bool) {
        self.name = name
        self.declaredType = declaredType
        self.notNull = notNull
    }

    /// The column's type affinity, by SQLite's rules (section 3.1 of "Datatypes In SQLite").
    public var affinity: Affinity { Affinity(declaredType: declaredType) }

    /// Whether a value of this storage class may be stored in this column.
    ///
    /// KotaSync types columns the way SQLite's STRICT tables do, without conversions: an INTEGER
    /// column takes integers, a TEXT column text, a REAL column reals, a NUMERIC column integers and
    /// reals, and a column with BLOB (no) affinity anything. NULL is left to the column's NOT NULL.
    public func accepts(_ storageClass: StorageClass) -> Bool {
        affinity.accepts(storageClass)
    }
}

/// SQLite's five column affinities.
public enum Affinity: String, Codable, Sendable {
    case integer, text, blob, real, numeric

    /// Whether a column of this affinity takes a value of `storageClass`, as
    /// ``ColumnSchema/accepts(_:)`` describes. (Finding the affinity reads the declared type; a
    /// check of many rows finds it once per column and asks this.)
    public func accepts(_ storageClass: StorageClass) -> Bool {
        if storageClass == .null { return true }
        switch self {
        case .integer: return storageClass == .integer
        case .text: return storageClass == .text
        case .real: return storageClass == .real
        case .numeric: return storageClass == .integer || storageClass == .real
        case .blob: return true
        }
    }

    /// The affinity SQLite gives a column declared with `declaredType`.
    public init(declaredType: String) {
        let t = declaredType.uppercased()
        if t.contains("INT") {
            self = .integer
        } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
            self = .text
        } else if t.contains("BLOB") || t.isEmpty {
            self = .blob
        } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
            self = .real
        } else {
            self = .numeric
        }
    }
}

/// The canonical byte form of a primary key, used wherever a key must be one value (an index
/// key, a dictionary key): the wire encoding of each key value, concatenated.
public enum PrimaryKeyCoding {
    public static func encode(_ values: [SQLValue]) -> [UInt8] {
        var w = ByteWriter(capacity: 40)
        for v in values { w.writeValue(v) }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(SyncError) -> [SQLValue] {
        var r = ByteReader(bytes)
        var values: [SQLValue] = []
        while !r.isAtEnd { values.append(try r.readValue("primary key")) }
        return values
    }
}
