import Crypto
import Foundation

/// A file that carries changes where there is no network at all (a USB stick): a device's push,
/// the server's reply to it, or merged changes for a device. `Protocol/transfer-files.md` is its
/// specification.
///
/// The file is JSON: a small envelope around the ``TransferBody``'s exact bytes (base64), their
/// SHA-256 (integrity) and one HMAC-SHA256 per device token that may use it (authenticity). The
/// HMAC key is SHA-256 of the device token: the device derives it from its token, and the server
/// has it already (it stores exactly that hash). The raw token never travels.
public struct TransferFile: Codable, Sendable, Equatable {
    /// One message authentication code: the token it is keyed by, and the code.
    public struct MAC: Codable, Sendable, Equatable {
        /// The token's id (the part between `kst_` and the next `_`).
        public var tokenId: String
        /// Lowercase hex of HMAC-SHA256(key: SHA-256(token), message: the body's bytes).
        public var hmac: String

        /// A code for the token with id `tokenId`.
        public init(tokenId: String, hmac: String) {
            self.tokenId = tokenId
            self.hmac = hmac
        }
    }

    /// The value of ``format`` in every transfer file.
    public static let formatName = "kotasync-transfer"
    /// The format version this build writes and reads.
    public static let currentVersion = 1

    /// Always ``formatName``.
    public var format: String
    /// The format version.
    public var version: Int
    /// The body: UTF-8 JSON of a ``TransferBody``.
    public var body: Data
    /// Lowercase hex of SHA-256 of ``body``.
    public var sha256: String
    /// Codes by which each token that may use the file authenticates it.
    public var macs: [MAC]

    /// Seals `body` for the tokens whose keys are given (see ``key(forToken:)``).
    public static func seal(_ body: TransferBody, keys: [(tokenId: String, key: SymmetricKey)]) throws -> TransferFile {
        let bytes = try ProtocolJSON.encoder().encode(body)
        return TransferFile(
            format: formatName, version: currentVersion, body: bytes, sha256: SHA256.hash(data: bytes).hex,
            macs: keys.map {
                MAC(tokenId: $0.tokenId, hmac: HMAC<SHA256>.authenticationCode(for: bytes, using: $0.key).hex)
            }
        )
    }

    /// The file's bytes, as written to disk.
    public func encoded() throws -> Data {
        let encoder = ProtocolJSON.encoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        return try encoder.encode(self)
    }

    /// Reads a transfer file and checks its integrity (format, version, SHA-256). Its
    /// authenticity is checked separately, by ``verify(tokenId:key:)``, once the reader knows
    /// which token to check it with.
    public static func read(_ data: Data) throws(SyncError) -> TransferFile {
        let file: TransferFile
        do {
            file = try ProtocolJSON.decoder().decode(TransferFile.self, from: data)
        } catch {
            throw SyncError(.invalidTransferFile, "This is not a KotaSync transfer file (or it is cut short): \(error)")
        }
        guard file.format == formatName else {
            throw SyncError(.invalidTransferFile, "This is not a KotaSync transfer file (format \(file.format)).")
        }
        guard file.version == currentVersion else {
            throw SyncError(
                .invalidTransferFile,
                "The transfer file is of version \(file.version); this build reads version \(currentVersion). Update KotaSync."
            )
        }
        guard SHA256.hash(data: file.body).hex == file.sha256.lowercased() else {
            throw SyncError(
                .invalidTransferFile,
                "The transfer file is damaged (its SHA-256 does not match). Copy it again from the sending machine.")
        }
        return file
    }

    /// Whether the file carries a valid code for token `tokenId` keyed by `key`.
    public func verify(tokenId: String, key: SymmetricKey) -> Bool {
        guard let mac = macs.first(where: { $0.tokenId == tokenId }), let code = Data(hex: mac.hmac) else {
            return false
        }
        return HMAC<SHA256>.isValidAuthenticationCode(code, authenticating: body, using: key)
    }

    /// The body, decoded; call only after ``verify(tokenId:key:)``.
    public func decodedBody() throws(SyncError) -> TransferBody {
        do {
            return try ProtocolJSON.decoder().decode(TransferBody.self, from: body)
        } catch {
            throw SyncError(.invalidTransferFile, "The transfer file's body is not a valid transfer body: \(error)")
        }
    }

    /// The MAC key of a device token: SHA-256 of its UTF-8 bytes.
    public static func key(forToken token: String) -> SymmetricKey {
        SymmetricKey(data: Data(SHA256.hash(data: Data(token.utf8))))
    }

    /// The MAC key from the hex SHA-256 of a token, as the server stores it.
    public static func key(fromTokenHash hex: String) -> SymmetricKey? {
        Data(hex: hex).map { SymmetricKey(data: $0) }
    }

    /// A device token's id: `kst_<id>_<secret>` → `<id>`; nil for a token not of that form.
    public static func tokenId(of token: String) -> String? {
        let parts = token.split(separator: "_", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "kst", !parts[1].isEmpty else { return nil }
        return String(parts[1])
    }
}

/// What a transfer file carries.
public struct TransferBody: Codable, Sendable, Equatable {
    /// The direction and meaning of a file.
    public enum Kind: String, Codable, Sendable {
        /// A device's pending changes (`kotasync export`), for `kotasync-server import`.
        case push
        /// The server's replies to an imported push file, for `kotasync import`.
        case pushReply = "push_reply"
        /// Merged changes for a device of an OPD (`kotasync-server export`), for `kotasync import`.
        case pull
    }

    /// What the file carries.
    public var kind: Kind
    /// The OPD the file is for (pull) or from (push, push reply).
    public var opd: String
    /// When the file was written (ISO 8601, UTC).
    public var createdAt: String
    /// The replica that exported the push (push, push reply).
    public var replicaId: UUID?
    /// Push: the replica's pull cursor at export, so the operator can export the changes it lacks.
    /// Pull: the cursor the first page starts after.
    public var cursor: UInt64?
    /// Pull: the cursor after the last page.
    public var nextCursor: UInt64?
    /// Push: encoded push changesets, exactly as they would be sent to `POST /v1/push`. Pull:
    /// encoded pull pages in order, exactly as `GET /v1/pull` returns them.
    public var changesets: [Data]?
    /// Push reply: the server's reply to each changeset, in the file's order.
    public var replies: [PushReply]?

    /// A body of `kind` for (or from) `opd`.
    public init(
        kind: Kind, opd: String, createdAt: String, replicaId: UUID? = nil, cursor: UInt64? = nil,
        nextCursor: UInt64? = nil, changesets: [Data]? = nil, replies: [PushReply]? = nil
    ) {
        self.kind = kind
        self.opd = opd
        self.createdAt = createdAt
        self.replicaId = replicaId
        self.cursor = cursor
        self.nextCursor = nextCursor
        self.changesets = changesets
        self.replies = replies
    }
}

extension Sequence where Element == UInt8 {
    fileprivate var hex: String {
        map { byte in
            let digits = Array("0123456789abcdef")
            return String([digits[Int(byte >> 4)], digits[Int(byte & 0xF)]])
        }
        .joined()
    }
}

extension Data {
    /// Bytes from lowercase or uppercase hex; nil if `hex` is not an even number of hex digits.
    fileprivate init?(hex: String) {
        let digits = Array(hex.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var i = 0
        while i < digits.count {
            guard let high = Self.nibble(digits[i]), let low = Self.nibble(digits[i + 1]) else { return nil }
            bytes.append(high << 4 | low)
            i += 2
        }
        self.init(bytes)
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
