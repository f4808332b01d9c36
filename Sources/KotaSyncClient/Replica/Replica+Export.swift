import Crypto
import Foundation
import GRDB
import KotaSyncCore

/// What `kotasync export` wrote.
public struct ExportSummary: Codable, Sendable, Equatable {
    /// The changeset in the file (the outbox's), nil when nothing was pending.
    public var changesetId: UUID?
    /// Rows in it.
    public var rows: Int
    /// The file's size in bytes.
    public var bytes: Int
    /// Log entries left for a later export (the file carries one changeset).
    public var remainingEntries: Int
    /// The replica's pull cursor: the `--since` for `kotasync-server export`.
    public var cursor: UInt64

    /// A summary of an export.
    public init(changesetId: UUID?, rows: Int, bytes: Int, remainingEntries: Int, cursor: UInt64) {
        self.changesetId = changesetId
        self.rows = rows
        self.bytes = bytes
        self.remainingEntries = remainingEntries
        self.cursor = cursor
    }
}

/// What `kotasync import` did with one file.
public struct ImportSummary: Codable, Sendable, Equatable {
    /// `push_reply` or `pull`.
    public var kind: String
    /// Changesets acknowledged (reply files).
    public var acknowledged = 0
    /// Replies for changesets acknowledged before (the file was imported already, or the changes
    /// went up over the network meanwhile).
    public var alreadyAcknowledged = 0
    /// Pages applied (pull files).
    public var pages = 0
    /// Pages skipped because the replica had applied them already.
    public var skippedPages = 0
    /// Rows in the applied pages.
    public var rows = 0
    /// The replica's cursor afterwards.
    public var cursor: UInt64 = 0
}

extension Replica {
    /// The key and id of this replica's device token, for sealing and checking transfer files.
    private func transferCredential() throws -> (tokenId: String, key: SymmetricKey) {
        let token = try token()
        guard let tokenId = TransferFile.tokenId(of: token) else {
            throw ReplicaError(
                .invalidTransferFile,
                "This replica's token is not a KotaSync device token (kst_<id>_<secret>); transfer files need one.")
        }
        return (tokenId, TransferFile.key(forToken: token))
    }

    /// The push file `kotasync export` writes: the changeset the next push would send (the one in
    /// the outbox, or a new one built into it), sealed with this device's token. Sending it over
    /// the network later sends the same bytes under the same id, so whichever reaches the server
    /// second changes nothing. Nil when nothing is pending.
    public func exportPush(now: Date = Date()) throws -> (file: TransferFile, summary: ExportSummary)? {
        guard let outbound = try nextOutbound(now: now) else { return nil }
        let credential = try transferCredential()
        let cursor = try cursor()
        let body = TransferBody(
            kind: .push, opd: schema.opd, createdAt: now.iso8601, replicaId: id, cursor: cursor,
            changesets: [Data(outbound.body)])
        let file = try TransferFile.seal(body, keys: [credential])
        let remaining = try dbQueue.read { db in
            try Int.fetchOne(
                db, sql: "SELECT count(*) FROM _ks_log WHERE op <> 0 AND seq > ?",
                arguments: [Int64(outbound.lastSequence)]) ?? 0
        }
        let summary = ExportSummary(
            changesetId: outbound.id, rows: outbound.rows, bytes: try file.encoded().count, remainingEntries: remaining,
            cursor: cursor)
        return (file, summary)
    }

    /// Imports a transfer file: a reply file acknowledges the exported changesets it answers, a
    /// pull file applies its pages. The file must be intact, authenticated for this device's
    /// token, and for this replica (its OPD, its cursor); importing it again changes nothing.
    public func importTransfer(_ data: Data, now: Date = Date()) throws -> ImportSummary {
        let file: TransferFile
        do {
            file = try TransferFile.read(data)
        } catch {
            throw ReplicaError(.invalidTransferFile, error.message, server: error)
        }
        let credential = try transferCredential()
        guard file.verify(tokenId: credential.tokenId, key: credential.key) else {
            throw ReplicaError(
                .invalidTransferFile,
                "The file is not authenticated for this device's token \(credential.tokenId): it was made for another device, changed on the way, or made before this token existed."
            )
        }
        let body: TransferBody
        do {
            body = try file.decodedBody()
        } catch {
            throw ReplicaError(.invalidTransferFile, error.message, server: error)
        }
        guard body.opd == schema.opd else {
            throw ReplicaError(
                .invalidTransferFile, "The file is for OPD \(body.opd); this replica belongs to \(schema.opd).")
        }
        switch body.kind {
        case .pushReply: return try importReplies(body, now: now)
        case .pull: return try importPages(body, now: now)
        case .push:
            throw ReplicaError(
                .invalidTransferFile,
                "This is a push file, for `kotasync-server import` at the Command Center; bring back its reply file.")
        }
    }

    private func importReplies(_ body: TransferBody, now: Date) throws -> ImportSummary {
        guard body.replicaId == id else {
            throw ReplicaError(
                .invalidTransferFile,
                "The reply is for replica \(body.replicaId?.uuidString ?? "?"); this is replica \(id).")
        }
        var summary = ImportSummary(kind: body.kind.rawValue)
        for reply in body.replies ?? [] {
            let waiting = try dbQueue.read { db in
                try Row.fetchOne(
                    db, sql: "SELECT id, first_seq, last_seq, rows, body FROM _ks_outbox WHERE id = ?",
                    arguments: [reply.changesetId.uuidString])
            }
            guard let row = waiting else {
                summary.alreadyAcknowledged += 1
                continue
            }
            let outbound = OutboundChangeset(
                id: reply.changesetId, firstSequence: UInt64(row["first_seq"] as Int64),
                lastSequence: UInt64(row["last_seq"] as Int64), rows: row["rows"], body: [UInt8](row["body"] as Data))
            try acknowledge(outbound, reply: reply, now: now)
            summary.acknowledged += 1
        }
        summary.cursor = try cursor()
        return summary
    }

    private func importPages(_ body: TransferBody, now: Date) throws -> ImportSummary {
        var summary = ImportSummary(kind: body.kind.rawValue)
        let current = try cursor()
        if let start = body.cursor, start > current {
            throw ReplicaError(
                .invalidTransferFile,
                "The file holds changes after \(start), but this replica has applied only up to \(current). Ask for a file made with `kotasync-server export --opd \(schema.opd) --since \(current)`."
            )
        }
        for bytes in body.changesets ?? [] {
            let page: Changeset
            do {
                page = try ChangesetCodec.decode([UInt8](bytes), limits: .pullPage)
            } catch {
                throw ReplicaError(.invalidTransferFile, "A page of the file does not decode: \(error.message)")
            }
            let at = try cursor()
            if page.lastSequence <= at {
                summary.skippedPages += 1
                continue
            }
            guard page.firstSequence == at else {
                throw ReplicaError(
                    .invalidTransferFile,
                    "A page of the file starts at \(page.firstSequence), but this replica is at \(at). Ask for a file made with `kotasync-server export --opd \(schema.opd) --since \(at)`."
                )
            }
            _ = try apply(page: page, now: now)
            summary.pages += 1
            summary.rows += page.rows.count
        }
        summary.cursor = try cursor()
        return summary
    }
}
