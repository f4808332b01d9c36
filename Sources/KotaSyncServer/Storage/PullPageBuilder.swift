import Foundation
import KotaSyncCore

/// The decisions of one pull page, written once for every backend: which entries of the master's
/// row heads a device of an OPD is sent and how, where the page ends, and where the cursor moves.
///
/// Pure: the backend reads the heads (table, key, version, clocks, scope of every row changed
/// after the cursor that the access service's pull reach lets through, in version order, one more
/// than the page's limit) and the live rows' values, and feeds them in version order; the builder
/// decides. The SQLite master feeds it as it steps through its query, reading each live row's
/// values as it goes; the PostgreSQL master reads the page's heads in one query, the values of
/// the rows that need them in one query per table, and then feeds them.
///
/// What it decides, as `SQLiteMasterStore` always did:
/// - each row appears once, with its current state; a row of a table no longer replicated is
///   passed over (the cursor moves past it);
/// - a row the device no longer sees (``AccessPolicy/sees(opd:table:scope:)``; its OPD is in the
///   row's `gone_for`) and a deleted row are sent as deletes, without values;
/// - hidden columns are sent as NULL;
/// - a page ends at `limit` rows or before the row that would take its payload past
///   `max_pull_page_bytes` less the table dictionary's bound, whichever comes first, and holds
///   at least one row;
/// - past the last row the device may see, the cursor moves to the master's latest version, so
///   rows it may not see are never scanned again.
struct PullPageBuilder {
    /// One entry of the heads, decoded: what the builder needs to place it.
    struct Head {
        /// The table's position in the config; nil for a table no longer replicated.
        var table: Int?
        var version: UInt64
        var key: [SQLValue]
        var stamp: HLC
        /// Sent as a delete: the row is deleted, or the device no longer sees it.
        var sendsDelete: Bool
        /// Whether the backend must read the live row's values for this entry.
        var needsValues: Bool { table != nil && !sendsDelete }
    }

    /// The config's tables and access service, taken once per page (as the loop over a page's
    /// entries did before it was shared: not looked up through the config per entry).
    let tables: [TableSchema]
    let access: AccessPolicy
    let tableIndex: [String: Int]
    let opd: String?
    let cursor: UInt64
    let limit: Int
    /// Per table (by position), the indexes of its hidden columns.
    let hidden: [[Int]]
    /// The payload bytes rows may take.
    let budget: Int
    private(set) var rows: [Changeset.Row] = []
    private(set) var next: UInt64
    private(set) var hasMore = false
    private var read = 0
    private var bytes = 0

    /// A page after `cursor` of at most `limit` rows (already clamped by the caller) for a
    /// device of `opd` (nil: the Command Center, everything).
    init(config: ServerConfig, tableIndex: [String: Int], opd: String?, cursor: UInt64, limit: Int) {
        tables = config.tables
        access = config.access
        self.tableIndex = tableIndex
        self.opd = opd
        self.cursor = cursor
        self.limit = limit
        next = cursor
        hidden = config.tables.map { table in
            config.access.hiddenColumns(table: table.name).compactMap { name in
                table.columns.firstIndex { $0.name == name }
            }
        }
        budget = config.limits.maxPullPageBytes - RowLimits.dictionaryBound(config.tables)
        rows.reserveCapacity(min(limit, 1024))
    }

    /// Whether the page ends before the next entry because it holds `limit` entries already
    /// (the backend asks for one more than that: its arrival means there is more); then
    /// ``hasMore`` is set.
    mutating func endsBeforeNext() -> Bool {
        if read >= limit { hasMore = true }
        return hasMore
    }

    /// Decodes one entry of the heads. `scope` is asked only when the page is for a device.
    func head(table name: String, pk: [UInt8], version: UInt64, clocks: [UInt8], scope: () -> SQLValue?) throws
        -> Head
    {
        guard let t = tableIndex[name] else {
            return Head(
                table: nil, version: version, key: [], stamp: HLC(milliseconds: 0, counter: 0), sendsDelete: true)
        }
        let table = tables[t]
        let decoded = try RowClocksCoding.decode(
            clocks, version: version, columnCount: table.columns.count, resolve: { Writer(number: $0, id: .zero) })
        let key = try PrimaryKeyCoding.decode(pk)
        let gone = opd.map { !access.sees(opd: $0, table: name, scope: scope()) } ?? false
        return Head(table: t, version: version, key: key, stamp: decoded.stamp, sendsDelete: decoded.isDeleted || gone)
    }

    /// Places `head` with the live row's `values` (nil when it needs none, or the master no
    /// longer holds the row). Returns false when the page ends before it: the entry is not
    /// taken, and ``hasMore`` is set.
    mutating func add(_ head: Head, values: [SQLValue]?) -> Bool {
        if endsBeforeNext() { return false }
        // Rows of a table no longer replicated are passed over, cursor and all.
        guard let t = head.table else {
            read += 1
            next = head.version
            return true
        }
        // A table of key columns only: the backend's read of the row may give a placeholder.
        var values = head.sendsDelete ? nil : values.map { tables[t].columns.isEmpty ? [] : $0 }
        for c in hidden[t] { values?[c] = .null }
        let size = RowLimits.encodedBound(
            rowBytes: RowLimits.bytes(key: head.key, values: values ?? []),
            valueCount: head.key.count + (values?.count ?? 0))
        if !rows.isEmpty, bytes + size > budget {
            hasMore = true
            return false
        }
        bytes += size
        read += 1
        next = head.version
        if let values {
            rows.append(
                Changeset.Row(
                    table: t, operation: .upsert, version: head.version, stamp: head.stamp, primaryKey: head.key,
                    columns: values.enumerated().map { Changeset.ColumnValue(column: $0, value: $1) }))
        } else {
            rows.append(
                Changeset.Row(
                    table: t, operation: .delete, version: head.version, stamp: head.stamp, primaryKey: head.key,
                    columns: []))
        }
        return true
    }

    /// The page, once every entry was fed; `latest` (the master's latest version, read from the
    /// same snapshot as the entries) is asked only when the page reached the end of what the
    /// device may see.
    func page(latest: () throws -> UInt64) rethrows -> PullPage {
        let next = hasMore ? next : max(next, try latest())
        let page = Changeset(
            kind: .pull, id: UUID(), replicaID: .zero, firstSequence: cursor, lastSequence: next,
            tables: tables.map(\.changesetTable), rows: rows)
        return PullPage(body: ChangesetCodec.encode(page), rows: rows.count, nextCursor: next, hasMore: hasMore)
    }
}
