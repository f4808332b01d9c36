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
}
