import KotaSyncCore

/// Which way a table's rows travel.
public enum SyncDirection: String, Sendable, Equatable, Codable, CaseIterable {
    /// Replicas read and write it.
    case both
    /// Reference data (villages, ICD-10 codes): read-only on replicas; every write is refused.
    case down
    /// Reports collected centrally: replicas write it, pulls never send it.
    case up
}

/// One table's sync rules (config: a table's `sync` entry).
public struct TableRules: Sendable, Equatable, Codable {
    /// The column whose value is the OPD a row belongs to; nil: every device sees every row.
    public var scope: String?
    public var direction: SyncDirection
    /// Columns never sent to replicas, and never taken from them.
    public var hidden: [String]

    public init(scope: String? = nil, direction: SyncDirection = .both, hidden: [String] = []) {
        self.scope = scope
        self.direction = direction
        self.hidden = hidden
    }
}

/// Who sees a row: every OPD, or the listed ones.
public enum Visibility: Sendable, Equatable {
    case everyone
    case opds(Set<String>)

    func contains(_ opd: String) -> Bool {
        switch self {
        case .everyone: true
        case .opds(let set): set.contains(opd)
        }
    }
}

/// The sync rules of the whole master: each table's rules and the OPD hierarchy. Pure: who may
/// see and write what follows from a device's OPD and the row's scope value alone.
public struct SyncRules: Sendable, Equatable {
    public var tables: [String: TableRules]
    /// Each OPD's parent.
    public var parents: [String: String]
    /// Every OPD id.
    public var opds: [String]

    public init(tables: [String: TableRules], opds: [ServerConfig.OPD]) {
        self.tables = tables
        self.parents = Dictionary(uniqueKeysWithValues: opds.compactMap { o in o.parent.map { (o.id, $0) } })
        self.opds = opds.map(\.id)
    }

    public func rules(for table: String) -> TableRules { tables[table] ?? TableRules() }

    /// `opd` and every OPD above it (the health office above its clinics).
    public func ancestors(of opd: String) -> [String] {
        var out = [opd]
        var seen: Set<String> = [opd]
        var current = opd
        while let parent = parents[current], seen.insert(parent).inserted {
            out.append(parent)
            current = parent
        }
        return out
    }

    /// `opd` and every OPD below it: the scope values a device of `opd` sees.
    public func subtree(of opd: String) -> [String] {
        opds.filter { ancestors(of: $0).contains(opd) }
    }

    /// Who sees a row of `table` whose scope value is `scope` (nil for a row the master does not hold).
    public func visibility(table: String, scope: SQLValue?) -> Visibility {
        if rules(for: table).direction == .up { return .opds([]) }
        return owners(table: table, scope: scope)
    }

    /// Who a row of `table` with scope value `scope` belongs to, whatever the direction: its
    /// OPD and every OPD above it; everyone for a table without a scope.
    public func owners(table: String, scope: SQLValue?) -> Visibility {
        guard rules(for: table).scope != nil else { return .everyone }
        guard case .text(let owner) = scope, opds.contains(owner) else { return .opds([]) }
        return .opds(Set(ancestors(of: owner)))
    }

    /// Whether a device of `opd` may make a change to a row of `table`. `old` is the row's scope
    /// value on the master (nil: the master never had the row), `new` its scope value after the
    /// change (nil for a delete): both must be the device's OPD or one under it, so nobody moves
    /// a row out of, or into, another OPD. Nil when it may; else the refusal.
    public func refusal(opd: String, table: String, old: SQLValue?, new: SQLValue?) -> RowRefusal? {
        let rules = rules(for: table)
        if rules.direction == .down {
            return RowRefusal(
                code: .readOnlyTable, message: "Table \(table) is reference data: replicas may read it, not change it.")
        }
        guard let column = rules.scope else { return nil }
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
}

/// Why one row of a push was refused.
public struct RowRefusal: Sendable, Equatable {
    public var code: SyncError.Code
    public var message: String
}

extension SyncError.Code {
    /// A pushed row is outside the device's scope (another OPD's row, or moved to another OPD).
    public static let outOfScope = SyncError.Code(rawValue: "out_of_scope")
    /// A pushed row changes a table that replicas may only read.
    public static let readOnlyTable = SyncError.Code(rawValue: "read_only_table")
}

/// Who stops seeing a row when its visibility changes.
struct VisibilityChange {
    let rules: SyncRules

    func expand(_ v: Visibility) -> Set<String> {
        switch v {
        case .everyone: Set(rules.opds)
        case .opds(let set): set
        }
    }

    /// The OPDs that saw the row before and do not now, added to `previous` (`,a,b,`), less
    /// those that see it now. Nil when none.
    func goneFor(previous: String?, before: Visibility?, after: Visibility) -> String? {
        var gone = Set((previous ?? "").split(separator: ",").map(String.init))
        let now = expand(after)
        if let before { gone.formUnion(expand(before)) }
        gone.subtract(now)
        return gone.isEmpty ? nil : "," + gone.sorted().joined(separator: ",") + ","
    }
}
