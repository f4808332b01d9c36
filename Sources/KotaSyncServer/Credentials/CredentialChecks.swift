import Crypto
import Foundation
import KotaSyncCore

/// The credential rules every backend applies the same way: what a staff account's name and
/// password must be, and how a bearer token is kept (its hash, never the token).
enum CredentialChecks {
    /// Tokens are 256 random bits, so a fast hash is enough: no dictionary to attack.
    static func tokenHash(_ token: String) -> String {
        [UInt8](SHA256.hash(data: Data(token.utf8))).hexString
    }

    /// The name trimmed; `bad_request` unless it has 1 to 100 characters and no control characters.
    static func checkedUserName(_ name: String) throws -> String {
        let name = name.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !name.isEmpty, name.count <= 100,
            !name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
        else {
            throw SyncError(.badRequest, "A user name has 1 to 100 characters and no control characters.")
        }
        return name
    }

    /// The password's scrypt hash; `bad_request` when it is shorter than the minimum.
    static func checkedPassword(_ password: String) throws -> PasswordHash {
        guard password.count >= PasswordHash.minimumLength else {
            throw SyncError(
                .badRequest, "A password needs at least \(PasswordHash.minimumLength) characters; a phrase is best.")
        }
        return try PasswordHash.make(password)
    }

    /// `opd` when the config has it; `bad_request` naming the known OPDs otherwise (a device
    /// token belongs to an OPD of the config).
    static func checkedTokenOPD(_ opd: String, config: ServerConfig) throws -> String {
        guard config.opds.contains(where: { $0.id == opd }) else {
            throw SyncError(
                .badRequest,
                "OPD \(opd) is not in the config. Known OPDs: \(config.opds.map(\.id).joined(separator: ", ")).")
        }
        return opd
    }

    /// The staff member's name trimmed, for a staff token of `role`; `bad_request` for a device
    /// role or a name that is empty, over 100 characters or has control characters.
    static func checkedStaffToken(name: String, role: Device.Role) throws -> String {
        guard role != .device else {
            throw SyncError(
                .badRequest, "A staff token is a viewer, reviewer or admin; device tokens belong to an OPD.")
        }
        let name = name.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !name.isEmpty, name.count <= 100,
            !name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
        else {
            throw SyncError(
                .badRequest,
                "Give the staff member's name (1 to 100 characters, no control characters); it is recorded with every decision they make."
            )
        }
        return name
    }

    /// A new bearer token and its id: `kst_<8 hex digits>_<256 random bits, base64url>`. Only
    /// the id and ``tokenHash(_:)`` of the token are stored.
    static func newToken() -> (id: String, token: String) {
        var rng = SystemRandomNumberGenerator()
        let id = (0..<8).map { _ in String(UInt8.random(in: 0...15, using: &rng), radix: 16) }.joined()
        let secret = (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }
        return (id, "kst_\(id)_\(Data(secret).base64URLEncoded)")
    }
}
