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

    /// Whether a device of `opd` is among them.
    public func contains(_ opd: String) -> Bool {
        switch self {
        case .everyone: true
        case .opds(let set): set.contains(opd)
        }
    }
}

/// The sync rules of the whole master, as the config states them: each table's rules and the OPD
/// hierarchy. Data only: who may see and write what is ``AccessPolicy``'s to decide.
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

    /// Who sees a row of `table` whose scope value is `scope`: ``AccessPolicy/visibility(table:scope:)``
    /// decides; kept here for the merge's visibility bookkeeping (``VisibilityChange``), which
    /// holds the rules rather than the policy.
    public func visibility(table: String, scope: SQLValue?) -> Visibility {
        AccessPolicy(rules: self).visibility(table: table, scope: scope)
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
