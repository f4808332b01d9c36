import Foundation
import KotaSyncCore

/// Which records of the review queue to list.
public struct ReviewFilter: Sendable, Equatable {
    /// One of ``ConflictReport/Status``'s raw values; all when nil.
    public var status: String?
    public var table: String?
    /// Records where either side was written by this OPD.
    public var opd: String?
    /// Records with an id above this.
    public var after: Int64
    public var limit: Int

    public init(status: String? = nil, table: String? = nil, opd: String? = nil, after: Int64 = 0, limit: Int = 100) {
        self.status = status
        self.table = table
        self.opd = opd
        self.after = after
        self.limit = limit
    }
}

/// The master's review role: the queue of conflict records the Command Center's staff read and
/// resolve (the review API, the dashboard's review pages, `kotasync-server conflicts`).
public protocol ReviewStore: Sendable {
    /// The review queue: conflict records in id order, filtered.
    func reviewConflicts(_ filter: ReviewFilter) async throws -> ConflictList
    /// One record; `not_found` if there is none with this id.
    func reviewConflict(id: Int64) async throws -> ConflictReport
    /// Resolves a record as a reviewer decided: the decision is a new change of the master (it
    /// flows to every replica that holds the row), and the record keeps both sides and the
    /// decision. Returns the record as it stands afterwards.
    func resolveConflict(id: Int64, _ request: ResolveRequest, by reviewer: String) async throws -> ConflictReport
}
