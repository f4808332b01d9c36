import Foundation

/// A batch of row changes: what a replica pushes, or one page of what the server sends back.
///
/// Rows refer to their table and columns by index into ``tables``, as on the wire, so a
/// changeset names every table and column once however many rows it carries.
public struct Changeset: Sendable, Equatable {
    /// What a changeset carries.
    public enum Kind: UInt8, Sendable, Codable {
        /// Local changes of one replica, pushed to the server.
        case push = 1
        /// Merged rows from the master, pulled by a replica.
        case pull = 2
    }

    public var kind: Kind
    /// Identifies the changeset; a server that has seen the id before replies as it did then.
    public var id: UUID
    /// The replica that made the changes (all zero in a pull page).
    public var replicaID: UUID
    /// Push: the first and last change-log sequence numbers covered. Pull: the cursor the page
    /// starts after, and the cursor to ask from next.
    public var firstSequence: UInt64
    public var lastSequence: UInt64
    /// The tables the rows refer to.
    public var tables: [Table]
    /// The row changes, in the order they are to be applied.
    public var rows: [Row]

    public init(
        kind: Kind, id: UUID, replicaID: UUID, firstSequence: UInt64, lastSequence: UInt64,
        tables: [Table], rows: [Row]
    ) {
        self.kind = kind
        self.id = id
        self.replicaID = replicaID
        self.firstSequence = firstSequence
        self.lastSequence = lastSequence
        self.tables = tables
        self.rows = rows
    }

    /// A table as a changeset names it: its primary-key columns and the other columns rows may set.
    public struct Table: Sendable, Equatable {
        public var name: String
        public var primaryKey: [String]
        public var columns: [String]

        public init(name: String, primaryKey: [String], columns: [String]) {
            self.name = name
            self.primaryKey = primaryKey
            self.columns = columns
        }
    }

    /// What happened to a row.
    public enum Operation: UInt8, Sendable, Codable {
        /// Push: the row was created or replaced locally, every column is given. Pull: the row as
        /// the master holds it now, every column given.
        case upsert = 1
        /// Push only: some columns of a row the replica had were changed; only those are given.
        case update = 2
        /// The row was deleted.
        case delete = 3
    }

    /// One row's change.
    public struct Row: Sendable, Equatable {
        /// Index into ``Changeset/tables``.
        public var table: Int
        public var operation: Operation
        /// Push: the master version of the row that the replica last saw (0: never saw it).
        /// Pull: the master version of the row after this change.
        public var version: UInt64
        /// The hybrid-logical-clock stamp of the change.
        public var stamp: HLC
        /// The primary-key values, in the table's primary-key order.
        public var primaryKey: [SQLValue]
        /// The column values set by the change.
        public var columns: [ColumnValue]

        public init(
            table: Int, operation: Operation, version: UInt64, stamp: HLC, primaryKey: [SQLValue],
            columns: [ColumnValue]
        ) {
            self.table = table
            self.operation = operation
            self.version = version
            self.stamp = stamp
            self.primaryKey = primaryKey
            self.columns = columns
        }
    }

    /// A column's new value.
    public struct ColumnValue: Sendable, Equatable {
        /// Index into the table's ``Changeset/Table/columns``.
        public var column: Int
        public var value: SQLValue
        /// The master version this column's change was based on when it differs from the row's
        /// ``Changeset/Row/version`` (a pull arrived while the column had a local edit pending).
        public var baseVersion: UInt64?

        public init(column: Int, value: SQLValue, baseVersion: UInt64? = nil) {
            self.column = column
            self.value = value
            self.baseVersion = baseVersion
        }
    }
}
