import Crypto
import Foundation

/// One entry of the audit log: who did what, from where, when, and how it ended. Never a token,
/// a password or a patient's value: counts, ids and names only.
public struct AuditEntry: Sendable, Equatable, Codable {
    /// The entry's position in the log (1, 2, …); 0 until it is written.
    public var id: Int64 = 0
    /// When it happened, ISO 8601 in UTC with milliseconds.
    public var at: String
    /// The token id, the user name (logins), or `cli:<user>` for the command line; `-` when the
    /// request carried no valid credential.
    public var actor: String
    /// `device`, `staff`, `session`, `user`, `cli` or `anonymous`.
    public var actorKind: String
    /// The device's OPD.
    public var opd: String?
    /// The replica id (pushes, conflict lists).
    public var replica: String?
    /// The client's address (the proxy's `X-Forwarded-For` when the proxy is trusted).
    public var address: String?
    /// What was done: `push`, `pull`, `review.resolve`, `token.revoke`, `login`, …
    public var action: String
    /// The HTTP status, or for the command line 0 on success and the exit status otherwise.
    public var status: Int
    /// The error code when refused.
    public var code: String?
    /// Counts and ids as JSON with sorted keys (`{"rows":3,"tables":"patients=2,visits=1"}`).
    public var detail: String?

    public init(
        at: Date = Date(), actor: String, actorKind: String, opd: String? = nil, replica: String? = nil,
        address: String? = nil, action: String, status: Int, code: String? = nil, detail: [String: String] = [:]
    ) {
        self.at = Timestamp.string(at)
        self.actor = actor
        self.actorKind = actorKind
        self.opd = opd
        self.replica = replica
        self.address = address
        self.action = action
        self.status = status
        self.code = code
        if !detail.isEmpty {
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            self.detail = (try? encoder.encode(detail)).map { String(decoding: $0, as: UTF8.self) }
        }
    }

    /// The text the chain hashes: every field, length-prefixed so no two entries share a text.
    var canonicalText: String {
        let fields: [(String, String?)] = [
            ("id", String(id)), ("at", at), ("actor", actor), ("actor_kind", actorKind), ("opd", opd),
            ("replica", replica), ("address", address), ("action", action), ("status", String(status)),
            ("code", code), ("detail", detail),
        ]
        return fields.map { name, value in
            guard let value else { return "\(name)=-\n" }
            return "\(name)=\(value.utf8.count):\(value)\n"
        }.joined()
    }

    /// SHA-256 over the previous entry's hash and this entry's canonical text, in lower-case hex.
    func chainedHash(after previous: String) -> String {
        let digest = SHA256.hash(data: Data((previous + "\n" + canonicalText).utf8))
        return digest.map { byte in (byte < 16 ? "0" : "") + String(byte, radix: 16) }.joined()
    }

    /// The `prev_hash` of the first entry.
    static let genesis = String(repeating: "0", count: 64)
}
