import Foundation
import KotaSyncCore
import PostgresNIO

/// The tokens the transfer role keys its files with, from `kotasync.tokens`. With the sync role
/// (push and pull), this is all the PostgreSQL store needs for import and export files: the
/// transfer role itself is the one every backend shares (`TransferFiles.swift`).
extension PostgresMasterStore: TransferTokens {
    public func transferToken(id: String) async throws -> TransferToken? {
        let rows = try await client.query(
            "SELECT \(unescaped: Self.transferTokenColumns) FROM kotasync.tokens WHERE id = \(id)", logger: logger)
        for try await row in rows { return try Self.transferToken(row) }
        return nil
    }

    public func transferTokens(opd: String) async throws -> [TransferToken] {
        let rows = try await client.query(
            """
            SELECT \(unescaped: Self.transferTokenColumns) FROM kotasync.tokens
            WHERE opd = \(opd) AND revoked_at IS NULL ORDER BY id
            """, logger: logger)
        var out: [TransferToken] = []
        for try await row in rows { out.append(try Self.transferToken(row)) }
        return out
    }

    private static let transferTokenColumns = "id, opd, role, hash, expires_at, revoked_at"

    private static func transferToken(_ row: PostgresRow) throws -> TransferToken {
        let (id, opd, role, hash, expires, revoked) = try row.decode(
            (String, String, String, String, String?, String?).self)
        return TransferToken(id: id, opd: opd, role: role, hash: hash, expiresAt: expires, revokedAt: revoked)
    }
}
