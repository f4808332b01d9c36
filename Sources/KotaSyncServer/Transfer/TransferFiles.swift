import Crypto
import Foundation
import KotaSyncCore

/// A token as the transfer role reads it: whose it is, what it may do, and the stored hash its
/// files' MAC key is derived from (`TransferFile.key(fromTokenHash:)`). Never the secret.
public struct TransferToken: Sendable, Equatable {
    public var id: String
    public var opd: String
    /// The token's role as stored (`device`, `viewer`, …).
    public var role: String
    /// The SHA-256 of the secret, as the master keeps it.
    public var hash: String
    public var expiresAt: String?
    public var revokedAt: String?

    public init(id: String, opd: String, role: String, hash: String, expiresAt: String?, revokedAt: String?) {
        self.id = id
        self.opd = opd
        self.role = role
        self.hash = hash
        self.expiresAt = expiresAt
        self.revokedAt = revokedAt
    }

    /// Whether the token is a device token that is neither revoked nor expired at `now`: the only
    /// tokens that sign or read transfer files.
    func isValidDeviceToken(at now: Date) -> Bool {
        guard revokedAt == nil, Device.Role(rawValue: role).map(AccessPolicy.isDevice) == true else { return false }
        if let expires = expiresAt.flatMap(Timestamp.date), expires <= now { return false }
        return true
    }
}

/// What the transfer role asks of a backend besides pushes and pulls: the tokens whose hashes
/// key the files. Both backends answer it from their token table; the rules (which tokens count,
/// how a file is checked, merged and written) are written once, in the extension of
/// ``TransferStore`` below.
public protocol TransferTokens: Sendable {
    /// The configuration the store was opened with (the OPDs, the push limits).
    var config: ServerConfig { get }
    /// The token with id `id`, whatever its role or state; nil when there is none.
    func transferToken(id: String) async throws -> TransferToken?
    /// The tokens of `opd` that are not revoked, whatever their role or expiry, by id.
    func transferTokens(opd: String) async throws -> [TransferToken]
}

/// The transfer role written once for every backend: a store that pushes, pulls and answers
/// ``TransferTokens`` imports and exports transfer files with these methods, so its conformance
/// to ``TransferStore`` is one line.
extension TransferStore where Self: SyncStore & TransferTokens {
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
        guard let token = try await transferToken(id: tokenId), token.isValidDeviceToken(at: Date()),
            let key = TransferFile.key(fromTokenHash: token.hash)
        else { return nil }
        return (Device(tokenID: token.id, opd: token.opd), key)
    }

    /// The MAC keys of every valid device token of `opd`, by token id.
    func deviceKeys(opd: String) async throws -> [(tokenId: String, key: SymmetricKey)] {
        let now = Date()
        return try await transferTokens(opd: opd)
            .filter { $0.opd == opd && $0.isValidDeviceToken(at: now) }
            .sorted { $0.id < $1.id }
            .compactMap { token in TransferFile.key(fromTokenHash: token.hash).map { (token.id, $0) } }
    }
}
