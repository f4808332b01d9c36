import Crypto
import Foundation
import _CryptoExtras

/// A staff password as the master stores it: the scrypt hash with the parameters and the salt it
/// was made with, so that the cost can be raised later while old hashes still verify.
package struct PasswordHash: Sendable, Equatable {
    /// The key-derivation function; `scrypt` is the only one this build knows.
    package var kdf: String
    /// The function's parameters as text, `N=32768,r=8,p=1`.
    package var parameters: String
    package var salt: [UInt8]
    package var hash: [UInt8]

    /// scrypt's cost for new passwords: N = 2^15, r = 8, p = 1 (32 MiB, tens of milliseconds
    /// optimised), the parameters RFC 7914 and OWASP suggest for interactive logins.
    package static let defaultParameters = "N=32768,r=8,p=1"

    /// The shortest password accepted.
    package static let minimumLength = 10

    /// Hashes `password` with a new random salt.
    package static func make(_ password: String, parameters: String = defaultParameters) throws -> PasswordHash {
        var rng = SystemRandomNumberGenerator()
        let salt = (0..<16).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let hash = try derive(password, salt: salt, parameters: parameters)
        return PasswordHash(kdf: "scrypt", parameters: parameters, salt: salt, hash: hash)
    }

    /// Whether `password` is the one this hash was made from, compared in constant time.
    package func verify(_ password: String) throws -> Bool {
        guard kdf == "scrypt" else {
            throw PasswordHashError.unknownKDF(kdf)
        }
        let candidate = try Self.derive(password, salt: salt, parameters: parameters)
        return Self.constantTimeEqual(candidate, hash)
    }

    static func derive(_ password: String, salt: [UInt8], parameters: String) throws -> [UInt8] {
        var values: [String: Int] = [:]
        for part in parameters.split(separator: ",") {
            let pair = part.split(separator: "=", maxSplits: 1)
            if pair.count == 2, let value = Int(pair[1]) { values[String(pair[0])] = value }
        }
        guard let n = values["N"], let r = values["r"], let p = values["p"], n > 1, r > 0, p > 0 else {
            throw PasswordHashError.badParameters(parameters)
        }
        let key = try KDF.Scrypt.deriveKey(
            from: Array(password.utf8), salt: salt, outputByteCount: 32, rounds: n, blockSize: r, parallelism: p,
            maxMemory: 128 * r * n * p + (16 << 20))
        return key.withUnsafeBytes { Array($0) }
    }

    /// Compares every byte whatever the first difference, so the time taken does not tell an
    /// attacker how much of a guess was right.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for (x, y) in zip(a, b) { difference |= x ^ y }
        return difference == 0
    }

    /// A hash of nothing anyone can type, verified against when the user name is unknown so
    /// that a failed login takes as long whether or not the name exists.
    package static let decoy: PasswordHash = {
        (try? make("\u{0}decoy\u{0}")) ?? PasswordHash(kdf: "scrypt", parameters: defaultParameters, salt: [], hash: [])
    }()
}

/// Why a stored password could not be checked (a master written by a newer build, or edited).
enum PasswordHashError: Error, CustomStringConvertible {
    case unknownKDF(String)
    case badParameters(String)

    var description: String {
        switch self {
        case .unknownKDF(let name): "the password was stored with `\(name)`, which this build does not know"
        case .badParameters(let text): "the stored password parameters `\(text)` are not valid scrypt parameters"
        }
    }
}
