import Foundation
import GRDB
import KotaSyncCore

/// The tokens the transfer role keys its files with, from `_ks_tokens`; the transfer role itself
/// is the one every backend shares (`TransferFiles.swift`).
extension SQLiteMasterStore: TransferTokens {
    public func transferToken(id: String) async throws -> TransferToken? {
        try await read { db in
            try Row.fetchOne(
                db, sql: "SELECT \(Self.transferTokenColumns) FROM _ks_tokens WHERE id = ?", arguments: [id]
            )
            .map(Self.transferToken)
        }
    }

    public func transferTokens(opd: String) async throws -> [TransferToken] {
        try await read { db in
            try Row.fetchAll(
                db,
                sql:
                    "SELECT \(Self.transferTokenColumns) FROM _ks_tokens WHERE opd = ? AND revoked_at IS NULL ORDER BY id",
                arguments: [opd]
            ).map(Self.transferToken)
        }
    }

    private static let transferTokenColumns = "id, opd, role, hash, expires_at, revoked_at"

    private static func transferToken(_ row: Row) -> TransferToken {
        TransferToken(
            id: row["id"], opd: row["opd"], role: row["role"], hash: row["hash"], expiresAt: row["expires_at"],
            revokedAt: row["revoked_at"])
    }
}
