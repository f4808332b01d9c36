import Foundation

/// What a device says about itself on each request (headers `KotaSync-*`), kept for the overview.
public struct DeviceReport: Sendable, Equatable {
    public var replicaId: UUID
    /// The OPD of the token that sent it: it is kept only for a replica of that OPD
    /// (``AccessPolicy/acceptsReport(from:aboutReplicaOf:)``).
    public var opd: String
    public var clientVersion: String?
    public var pending: Int?
    public var lastError: String?
    /// The cursor it pulled from, for its lag.
    public var cursor: UInt64?

    public init(
        replicaId: UUID, opd: String, clientVersion: String?, pending: Int?, lastError: String?, cursor: UInt64?
    ) {
        self.replicaId = replicaId
        self.opd = opd
        self.clientVersion = clientVersion
        self.pending = pending
        self.lastError = lastError
        self.cursor = cursor
    }
}

/// Whose reports are folded together: one replica's, as told by devices of one OPD (a report
/// about another OPD's replica is folded apart, and dropped when written).
struct DeviceReportKey: Hashable, Sendable {
    var replica: UUID
    var opd: String
}

/// A replica's device reports since the last write, folded into one: the latest report (later
/// ones keep an earlier one's client, pending count and cursor when they do not say), the last
/// time it was seen and the last time it pulled.
struct PendingDeviceReport: Sendable {
    var report: DeviceReport?
    var seenAt = Date.distantPast
    var pulledAt: Date?

    /// Folds in a report made at `date`.
    mutating func fold(_ next: DeviceReport, pulled: Bool, at date: Date) {
        self = followed(by: PendingDeviceReport(report: next, seenAt: date, pulledAt: pulled ? date : nil))
    }

    /// These reports followed by the later `next`.
    func followed(by next: PendingDeviceReport) -> PendingDeviceReport {
        guard let earlier = report, var later = next.report else { return next.report == nil ? self : next }
        later.clientVersion = later.clientVersion ?? earlier.clientVersion
        later.pending = later.pending ?? earlier.pending
        later.cursor = later.cursor ?? earlier.cursor
        return PendingDeviceReport(report: later, seenAt: next.seenAt, pulledAt: next.pulledAt ?? pulledAt)
    }
}
