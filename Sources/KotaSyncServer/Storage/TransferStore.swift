import Foundation
import KotaSyncCore

/// What importing a device's push file did.
public struct TransferImport: Sendable {
    /// The device whose token authenticated the file.
    public var device: Device
    /// The server's reply to each changeset, in the file's order.
    public var replies: [PushReply]
    /// How many of them had been applied before (by an earlier import or a network push).
    public var replayed: Int
    /// The reply file to carry back to the device (`kotasync import`).
    public var replyFile: TransferFile
    /// The replica's pull cursor when it exported the file.
    public var cursor: UInt64?
}

/// The master's transfer role: push and pull files carried without a network
/// (`kotasync-server import` / `export`), with the guarantees of the network paths.
///
/// Written once for every backend: a store that is a ``SyncStore`` and answers ``TransferTokens``
/// gets both methods from the extension in `Transfer/TransferFiles.swift` (an import is a push of
/// each changeset, an export the pages of a pull), so its conformance is one line.
public protocol TransferStore: Sendable {
    /// Imports a device's push file (`kotasync export`) with the guarantees of `POST /v1/push`:
    /// the file must be intact and authenticated by a valid device token, each changeset is
    /// decoded within the configured limits and merged as a push of that token's device — so
    /// scope rules apply and a changeset imported (or pushed) before gets its stored reply and
    /// changes nothing. `now` dates the reply file.
    func importPush(_ data: Data, now: Date) async throws -> TransferImport
    /// A pull file (`kotasync-server export`): every merged change after `cursor` that a device
    /// of `opd` may see, as the pages `GET /v1/pull` would send, authenticated for each valid
    /// device token of the OPD. `now` dates the file.
    func exportPull(opd: String, after cursor: UInt64, now: Date) async throws -> TransferFile
}

extension TransferStore {
    /// Imports a device's push file now (see ``importPush(_:now:)``).
    public func importPush(_ data: Data) async throws -> TransferImport {
        try await importPush(data, now: Date())
    }

    /// A pull file written now (see ``exportPull(opd:after:now:)``).
    public func exportPull(opd: String, after cursor: UInt64) async throws -> TransferFile {
        try await exportPull(opd: opd, after: cursor, now: Date())
    }
}
