import Foundation
import KotaSyncCore

/// The one place that answers who may read or write what: every path that hands a device a row,
/// takes a row from one, or opens a staff route asks it, and nothing else decides.
///
/// Pure: the answers follow from the credential, the config's ``SyncRules`` (its tables' data and
/// the OPD hierarchy) and the row's scope value alone. The callers do the I/O (read the row's
/// scope from the master, render the refusal). `Protocol/access.md` states these rules for a
/// reader; each question below names the paths that ask it.
public struct AccessPolicy: Sendable, Equatable {
    /// The config's tables' rules and the OPD hierarchy.
    public let rules: SyncRules

    public init(rules: SyncRules) {
        self.rules = rules
    }

    // MARK: - Rows

    /// Whether a device of `opd` may be sent the row of `table` whose scope value is `scope`:
    /// its values, its key, or anything that names it (pull, push replies, conflict lists).
    public func sees(opd: String, table: String, scope: SQLValue?) -> Bool {
        visibility(table: table, scope: scope).contains(opd)
    }

    /// Who is sent a row of `table` whose scope value is `scope` (nil for a row the master does
    /// not hold): its owners, and nobody for a table replicas only write (`up`).
    public func visibility(table: String, scope: SQLValue?) -> Visibility {
        if rules.rules(for: table).direction == .up { return .opds([]) }
        return owners(table: table, scope: scope)
    }

    /// Who a row of `table` with scope value `scope` belongs to, whatever the direction: its
    /// OPD and every OPD above it; everyone for a table without a scope. A scope value that is
    /// not a configured OPD (or no value at all) belongs to nobody: no device sees or writes it.
    public func owners(table: String, scope: SQLValue?) -> Visibility {
        guard rules.rules(for: table).scope != nil else { return .everyone }
        guard case .text(let owner) = scope, rules.opds.contains(owner) else { return .opds([]) }
        return .opds(Set(rules.ancestors(of: owner)))
    }

    /// The refusal of a change that a device of `opd` made to a row of `table` — whose scope value
    /// on the master is `old` (nil: the master holds no row) and after the change `new` (nil for a
    /// delete) — or nil when the change is the device's to make. Asked when a change arrives and
    /// again whenever it is finally applied (a held, queued or quarantined change released later).
    ///
    /// Both scopes must be the device's OPD or one under it, so nobody moves a row out of, or
    /// into, another OPD; a reference (`down`) table is refused whatever the scope.
    public func writeRefusal(opd: String, table: String, old: SQLValue?, new: SQLValue?) -> RowRefusal? {
        let tableRules = rules.rules(for: table)
        if tableRules.direction == .down {
            return RowRefusal(
                code: .readOnlyTable, message: "Table \(table) is reference data: replicas may read it, not change it.")
        }
        guard let column = tableRules.scope else { return nil }
        if let old, !owners(table: table, scope: old).contains(opd) {
            return RowRefusal(
                code: .outOfScope,
                message: "This row of \(table) belongs to another OPD (\(column) is not \(opd) or an OPD under it).")
        }
        if let new, !owners(table: table, scope: new).contains(opd) {
            return RowRefusal(
                code: .outOfScope,
                message:
                    "The row would belong to another OPD: \(table).\(column) must be \(opd) or an OPD under it; a row cannot be moved out of, or into, another OPD."
            )
        }
        return nil
    }

    /// Which rows of `table` a pull of a device of `opd` walks: the rows it is sent (values and
    /// all), besides those that left its scope (sent as deletes). Pull builds its query from this.
    public func pullReach(opd: String, table: String) -> PullReach {
        let tableRules = rules.rules(for: table)
        if tableRules.direction == .up { return .none }
        guard tableRules.scope != nil else { return .whole }
        return .scopes(rules.subtree(of: opd))
    }

    /// The columns of `table` never sent to a device and never taken from one.
    public func hiddenColumns(table: String) -> [String] {
        rules.rules(for: table).hidden
    }

    // MARK: - Staff

    /// Whether a credential of `role` opens a staff route that needs `needed` (viewer < reviewer
    /// < admin). A device opens no staff route, and `needed` of `.device` is no staff route at
    /// all: both are false.
    public static func grants(_ role: Device.Role, _ needed: Device.Role) -> Bool {
        guard let held = rank(role), let required = rank(needed) else { return false }
        return held >= required
    }

    /// Whether a credential of `role` opens the device routes (schema, push, pull, uploads, its
    /// conflicts): device tokens only, so a reviewer's token can never write as if it were an OPD's.
    public static func isDevice(_ role: Device.Role) -> Bool { role == .device }

    /// Staff roles in increasing power; nil for a device.
    private static func rank(_ role: Device.Role) -> Int? {
        switch role {
        case .device: nil
        case .viewer: 1
        case .reviewer: 2
        case .admin: 3
        }
    }

    // MARK: - Device reports

    /// Whether what a device of `opd` says about replica `replicaOPD`'s health (the `KotaSync-*`
    /// headers) is kept: only for a replica registered to its own OPD. Nil `replicaOPD` (the master
    /// knows no such replica) is not. The caller ignores a refused report silently, so the reply
    /// does not tell whether the replica exists.
    public func acceptsReport(from opd: String, aboutReplicaOf replicaOPD: String?) -> Bool {
        guard let replicaOPD, !opd.isEmpty else { return false }
        return replicaOPD == opd
    }

    // MARK: - Conflict records

    /// What a device of `opd` is told of conflict record `record` (its conflict list, its push
    /// reply), or nil when it is told nothing of it. `scopes` are the scope values of the rows the
    /// record names, as the master holds them (``ConflictScopes``).
    ///
    /// The device sees a record only if one side was written by a replica of its OPD or one under
    /// it, and the record's row is one it wrote (it made the held change) or may see. When the
    /// other side — the other change of the row, the row a quarantined row collided with, the row
    /// a queued change waits behind, a foreign key's parent — is in its scope, it gets the record
    /// whole; otherwise only its own side: the other side, the base, the related row (but for a
    /// foreign key, the parent key it sent itself) and a reviewer's values and note are left out,
    /// and the reason is a sentence that names no other row. So the reply is the same whether
    /// the out-of-scope row exists or not, but for the uniqueness exception of `Protocol/access.md`.
    public func deviceView(of record: ConflictReport, for opd: String, scopes: ConflictScopes) -> ConflictReport? {
        let subtree = Set(rules.subtree(of: opd))
        let loserMine = record.loser.map { subtree.contains($0.opd) } ?? false
        let winnerMine = record.winner.map { subtree.contains($0.opd) } ?? false
        guard loserMine || winnerMine else { return nil }
        let rowVisible = sees(opd: opd, table: record.table, scope: scopes.row)
        // A held or quarantined row is the losing side's change: another writer's is not the
        // device's to hear of unless it may see the row.
        let heldRow = ConflictReport.heldKinds.contains(record.kind)
        if heldRow, !loserMine, !rowVisible { return nil }
        let otherVisible: Bool =
            switch record.kind {
            case .unique, .foreignKey:
                record.related.map { sees(opd: opd, table: $0.table, scope: scopes.related) } ?? false
            case .queued: sees(opd: opd, table: record.table, scope: scopes.related)
            case .updateUpdate, .insertInsert, .deleteUpdate: rowVisible
            }
        if otherVisible { return record }
        var view = ConflictReport(
            id: record.id, table: record.table, primaryKey: record.primaryKey, column: record.column,
            kind: record.kind, policy: record.policy, base: nil, winner: winnerMine ? record.winner : nil,
            loser: loserMine ? record.loser : nil, status: record.status, decidedAt: record.decidedAt)
        view.reason = Self.privateReason(record)
        view.held = heldRow && loserMine ? record.held : nil
        view.related = record.kind == .foreignKey && loserMine ? record.related : nil
        view.resolution = record.resolution.map {
            Resolution(take: $0.take, values: nil, note: nil, by: $0.by, at: $0.at, masterVersion: nil)
        }
        return view
    }

    /// Why a record waits or was decided, in words that name no row but the device's own.
    static func privateReason(_ record: ConflictReport) -> String {
        switch record.kind {
        case .unique:
            let what = record.column.map { "this \($0)" } ?? "these values"
            return
                "Another record in the city already uses \(what); the Command Center reviews both before either is shared."
        case .foreignKey:
            let parent = record.related?.table ?? "row"
            return
                "Refers to a \(parent) row this OPD does not have on the master; merged when it arrives, or decided by the Command Center."
        case .queued:
            return
                "Waits behind an earlier change of the same row that the Command Center has not decided yet; merged in order when it is."
        case .updateUpdate, .insertInsert, .deleteUpdate:
            return "Another change to this row was merged by the table's rules; the Command Center may review it."
        }
    }
}

/// Which rows of one table a device's pull walks.
public enum PullReach: Sendable, Equatable {
    /// None: a table replicas only write (`up`).
    case none
    /// Every row: a table without a scope column.
    case whole
    /// The rows whose scope value is one of these OPDs.
    case scopes([String])
}

/// The scope values of the rows a conflict record names, as the master holds them, for
/// ``AccessPolicy/deviceView(of:for:scopes:)``.
public struct ConflictScopes: Sendable, Equatable {
    /// The record's own row: its scope on the master, or, while the master does not hold it
    /// (a held or quarantined row), the scope the held change gives it. Nil when neither.
    public var row: SQLValue?
    /// The related row (the row a quarantined row collided with, a foreign key's parent, the
    /// row a queued change waits behind): its scope on the master, or that of the pending
    /// change that holds its place. Nil when the master has neither.
    public var related: SQLValue?

    public init(row: SQLValue?, related: SQLValue?) {
        self.row = row
        self.related = related
    }
}

extension ConflictReport {
    /// The kinds whose losing side is a change the master holds back (quarantined, held, queued).
    static let heldKinds: Set<Kind> = [.unique, .foreignKey, .queued]
}

extension ServerConfig {
    /// The access decisions of this config.
    public var access: AccessPolicy { AccessPolicy(rules: rules) }
}
