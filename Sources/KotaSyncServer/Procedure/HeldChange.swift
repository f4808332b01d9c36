import Foundation
import KotaSyncCore

/// A change that was not merged (a quarantined or held row), with everything needed to merge it
/// later exactly as it arrived: stored as JSON in `_ks_conflicts.held`.
struct HeldChange: Codable, Sendable, Equatable {
    /// The writer's number in `_ks_replicas` (0: the master).
    var writer: Int64
    var stamp: UInt64
    /// The device's stamp was too far ahead and was clamped.
    var clamped: Bool
    /// The row's base version.
    var version: UInt64
    /// Per-column bases, by column name.
    var columnBases: [String: UInt64]
    var changeset: UUID
    var row: HeldRow
}

extension HeldChange {
    /// Reads the stored form (`_ks_conflicts.held`).
    init(stored text: String) throws {
        self = try ProtocolJSON.decoder().decode(HeldChange.self, from: Data(text.utf8))
    }

    /// The stored form.
    func stored() throws -> String {
        String(decoding: try ProtocolJSON.encoder().encode(self), as: UTF8.self)
    }
}
