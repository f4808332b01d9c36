import Foundation
import KotaSyncCore

/// What the Command Center's overview shows of one device (replica).
public struct DeviceHealth: Sendable, Equatable {
    public var replicaId: UUID
    public var opd: String
    public var firstSeenAt: String
    public var lastPushAt: String?
    public var lastPullAt: String?
    /// Changesets and rows the device pushed.
    public var changesets: Int
    public var rows: Int
    /// Rows it reported as not yet pushed, at its last request.
    public var pending: Int?
    /// Rows of its pushes the server refused (out of scope, read-only table).
    public var refused: Int
    /// Records in which its change waits (`open` or `held`).
    public var waiting: Int
    /// How many master versions its last pull was behind the master.
    public var lag: UInt64?
    public var clientVersion: String?
    public var lastError: String?
}

/// The overview's figures.
public struct Overview: Sendable, Equatable {
    public var devices: [DeviceHealth]
    public var masterVersion: UInt64
    /// Live rows per table.
    public var rows: [String: Int]
    /// Records by status.
    public var records: [String: Int]
    /// Changes merged per day (`YYYY-MM-DD` in the given time zone) and OPD, the last days.
    public var changesPerDay: [String: [String: Int]]
    /// Conflict records made per day.
    public var conflictsPerDay: [String: Int]
}

/// One page of a replicated table, for the data browser.
public struct TablePage: Sendable, Equatable {
    public struct Row: Sendable, Equatable {
        public var key: [SQLValue]
        public var values: [SQLValue]
        /// The OPD whose change was merged last into the row (`master` for the Command Center).
        public var lastChangedBy: String?
        public var version: UInt64?
    }

    public var table: String
    /// Key columns, then the other columns.
    public var columns: [String]
    public var rows: [Row]
    /// Rows matching the search.
    public var total: Int
}

/// One version of a row, as the master's history keeps it.
public struct RowVersion: Codable, Sendable, Equatable {
    /// The master version of the change.
    public var version: UInt64
    /// `upsert`, `update` or `delete`, as the change was sent (a reviewer's decision is the master's).
    public var operation: String
    public var replicaId: UUID
    /// The writer's OPD; `master` for the Command Center's own changes.
    public var opd: String
    /// The change's hybrid-clock stamp (decimal).
    public var stamp: String
    /// The device's stamp was too far ahead and was clamped.
    public var clamped: Bool
    /// The values this change replaced, by column name.
    public var replaced: [String: SQLValue]
    /// The row after this change, by column name; nil when the row was deleted after it.
    public var values: [String: SQLValue]?
}

/// The master's overview role: what the Command Center's dashboard reads — the overview of
/// devices and the city's figures, the data browser, and a row's history (also
/// `kotasync-server history`).
public protocol OverviewStore: Sendable {
    /// The configuration the master was opened with: its tables, OPDs and limits.
    var config: ServerConfig { get }
    /// The Command Center's overview: every device, the city's totals, changes and conflicts per
    /// day for the last `days` days (ending with the day of `now`) in `timeZone`. Device reports
    /// recorded before the call are included.
    func overview(days: Int, timeZone: TimeZone, now: Date) async throws -> Overview
    /// One page of `table` for the data browser: rows whose text matches `search` in any column,
    /// ordered by `sort` (a column name; the key when nil or unknown), `pageSize` rows (at most
    /// 500) from page `page` (0 first). `unknown_table` for a table the server does not replicate.
    func browse(
        table name: String, search: String?, sort: String?, descending: Bool, page: Int, pageSize: Int
    ) async throws -> TablePage
    /// A row's key and values (in the order of ``TablePage/columns``), nil if the master does not
    /// hold it. `unknown_table` for a table the server does not replicate.
    func browseRow(table name: String, key: [SQLValue]) async throws -> [SQLValue]?
    /// Every version of a row the master merged, newest first: who changed it, when, and the row
    /// after each change. Values no change replaced are the row's current ones.
    /// `unknown_table` for a table the server does not replicate, `invalid_primary_key` for a key
    /// of the wrong shape.
    func history(table name: String, key: [SQLValue]) async throws -> [RowVersion]
}

extension OverviewStore {
    /// The overview of the last `days` days up to now (two weeks unless told).
    public func overview(days: Int = 14, timeZone: TimeZone) async throws -> Overview {
        try await overview(days: days, timeZone: timeZone, now: Date())
    }
}
