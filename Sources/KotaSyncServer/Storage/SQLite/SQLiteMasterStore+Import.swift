import Crypto
import Foundation
import GRDB
import KotaSyncCore

extension SQLiteMasterStore {
    public func importPush(_ data: Data, now: Date) async throws -> TransferImport {
        let file = try TransferFile.read(data)
        guard let mac = file.macs.first else {
            throw SyncError(.invalidTransferFile, "The transfer file carries no device authentication.")
        }
        guard let (device, key) = try await deviceKey(tokenId: mac.tokenId) else {
            throw SyncError(
                .unauthorized,
                "The file was signed with token \(mac.tokenId), which is unknown, revoked or expired, or not a device token. Ask the Command Center for a new token."
            )
        }
        guard file.verify(tokenId: mac.tokenId, key: key) else {
            throw SyncError(
                .invalidTransferFile,
                "The file's authentication code does not match token \(mac.tokenId): it was changed after it was written, or not written with that token."
            )
        }
        let body = try file.decodedBody()
        guard body.kind == .push else {
            throw SyncError(
                .invalidTransferFile,
                "This is a \(body.kind.rawValue) file; `kotasync-server import` takes the push files that `kotasync export` writes."
            )
        }
        guard body.opd == device.opd else {
            throw SyncError(
                .invalidTransferFile, "The file says OPD \(body.opd) but is signed by a token of \(device.opd).")
        }
        var replies: [PushReply] = []
        var replayed = 0
        for (index, bytes) in (body.changesets ?? []).enumerated() {
            guard bytes.count <= config.limits.maxBodyBytes else {
                throw SyncError(
                    .bodyTooLarge,
                    "Changeset \(index + 1) of the file is \(bytes.count) bytes; this server accepts at most \(config.limits.maxBodyBytes)."
                )
            }
            let changeset = try ChangesetCodec.decode([UInt8](bytes), limits: config.limits.decodeLimits)
            guard changeset.kind == .push, changeset.replicaID == body.replicaId else {
                throw SyncError(
                    .invalidTransferFile, "Changeset \(index + 1) of the file is not a push of the file's replica.")
            }
            let outcome = try await push(changeset, from: device)
            replies.append(try ProtocolJSON.decoder().decode(PushReply.self, from: outcome.reply))
            replayed += outcome.replayed ? 1 : 0
        }
        let reply = TransferBody(
            kind: .pushReply, opd: device.opd, createdAt: Timestamp.string(now), replicaId: body.replicaId,
            replies: replies)
        return TransferImport(
            device: device, replies: replies, replayed: replayed,
            replyFile: try TransferFile.seal(reply, keys: [(device.tokenID, key)]), cursor: body.cursor)
    }

    public func exportPull(opd: String, after cursor: UInt64, now: Date) async throws -> TransferFile {
        guard config.opds.contains(where: { $0.id == opd }) else {
            throw SyncError(
                .badRequest,
                "OPD \(opd) is not in the config. Known OPDs: \(config.opds.map(\.id).joined(separator: ", ")).")
        }
        let keys = try await deviceKeys(opd: opd)
        guard !keys.isEmpty else {
            throw SyncError(
                .notFound,
                "OPD \(opd) has no valid device token, so no device could check the file. Create one with `kotasync-server token create --opd \(opd)`."
            )
        }
        var pages: [Data] = []
        var next = cursor
        while true {
            let page = try await pull(after: next, limit: config.limits.maxPullPage, opd: opd)
            pages.append(Data(page.body))
            let moved = page.nextCursor != next
            next = page.nextCursor
            if !page.hasMore || !moved { break }
        }
        let body = TransferBody(
            kind: .pull, opd: opd, createdAt: Timestamp.string(now), cursor: cursor, nextCursor: next,
            changesets: pages)
        return try TransferFile.seal(body, keys: keys)
    }

    /// The device behind token id `tokenId` and its MAC key, when the token is a valid device token.
    func deviceKey(tokenId: String) async throws -> (Device, SymmetricKey)? {
        // The key leaves the read closure as the stored hash: `SymmetricKey` is not Sendable.
        let found = try await read { db -> (Device, String)? in
            guard
                let row = try Row.fetchOne(
                    db, sql: "SELECT id, opd, hash, expires_at, revoked_at, role FROM _ks_tokens WHERE id = ?",
                    arguments: [tokenId]),
                row["revoked_at"] as String? == nil,
                Device.Role(rawValue: row["role"]).map(AccessPolicy.isDevice) == true
            else { return nil }
            if let expires = (row["expires_at"] as String?).flatMap(Timestamp.date), expires <= Date() { return nil }
            return (Device(tokenID: row["id"], opd: row["opd"]), row["hash"])
        }
        guard let (device, hash) = found, let key = TransferFile.key(fromTokenHash: hash) else { return nil }
        return (device, key)
    }

    /// The MAC keys of every valid device token of `opd`.
    func deviceKeys(opd: String) async throws -> [(tokenId: String, key: SymmetricKey)] {
        let now = Date()
        let hashes = try await read { db -> [(String, String)] in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT id, hash, expires_at FROM _ks_tokens
                    WHERE opd = ? AND role = ? AND revoked_at IS NULL ORDER BY id
                    """, arguments: [opd, Device.Role.device.rawValue]
            )
            .compactMap { row in
                if let expires = (row["expires_at"] as String?).flatMap(Timestamp.date), expires <= now { return nil }
                return (row["id"], row["hash"])
            }
        }
        return hashes.compactMap { id, hash in TransferFile.key(fromTokenHash: hash).map { (id, $0) } }
    }
}
