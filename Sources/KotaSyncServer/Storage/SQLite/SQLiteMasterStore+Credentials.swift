import Foundation
import GRDB
import KotaSyncCore

extension SQLiteMasterStore {
    // MARK: - Tokens

    public func tokens() async throws -> [TokenDocument] {
        try await flushAudit()  // so `last_used_at` includes the last second's requests
        return try await read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM _ks_tokens ORDER BY created_at DESC, id").map(Self.tokenDocument)
        }
    }

    public func revokeToken(id: String) async throws -> TokenDocument {
        try await pool.write { db in
            try db.execute(
                sql: "UPDATE _ks_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                arguments: [Timestamp.string(Date()), id])
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM _ks_tokens WHERE id = ?", arguments: [id]) else {
                throw SyncError(.notFound, "There is no token with id \(id); `token list` shows them.")
            }
            return Self.tokenDocument(row)
        }
    }

    static func tokenDocument(_ row: Row) -> TokenDocument {
        let role: String = row["role"]
        let kind = role == "device" ? "device" : row["user_name"] as String? == nil ? "staff" : "session"
        let opd: String = row["opd"]
        return TokenDocument(
            id: row["id"], kind: kind, role: role, opd: opd.isEmpty ? nil : opd,
            name: row["user_name"] ?? row["name"], createdAt: row["created_at"], expiresAt: row["expires_at"],
            revokedAt: row["revoked_at"], lastUsedAt: row["last_used_at"])
    }

    // MARK: - Staff accounts

    public func addUser(name: String, role: Device.Role, password: String) async throws -> UserDocument {
        guard role != .device else {
            throw SyncError(.badRequest, "A staff account is a viewer, reviewer or admin.")
        }
        let name = try CredentialChecks.checkedUserName(name)
        let hash = try CredentialChecks.checkedPassword(password)
        let now = Timestamp.string(Date())
        return try await pool.write { db in
            guard try Bool.fetchOne(db, sql: "SELECT 1 FROM _ks_users WHERE name = ?", arguments: [name]) == nil else {
                throw SyncError(.badRequest, "There is already a user \(name); `user passwd` changes a password.")
            }
            try db.execute(
                sql: """
                    INSERT INTO _ks_users(name, role, password_kdf, password_params, password_salt, password_hash,
                        created_at, changed_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    name, role.rawValue, hash.kdf, hash.parameters, Data(hash.salt), Data(hash.hash), now, now,
                ])
            return UserDocument(name: name, role: role.rawValue, createdAt: now, changedAt: now)
        }
    }

    public func users() async throws -> [UserDocument] {
        try await read { db in
            try Row.fetchAll(db, sql: "SELECT name, role, created_at, changed_at FROM _ks_users ORDER BY name").map {
                UserDocument(
                    name: $0["name"], role: $0["role"], createdAt: $0["created_at"], changedAt: $0["changed_at"])
            }
        }
    }

    public func removeUser(name: String) async throws {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM _ks_users WHERE name = ?", arguments: [name])
            guard db.changesCount > 0 else { throw SyncError(.notFound, "There is no user \(name).") }
            try Self.revokeSessions(of: name, db: db)
        }
    }

    public func setPassword(name: String, password: String) async throws {
        let hash = try CredentialChecks.checkedPassword(password)
        try await pool.write { db in
            try db.execute(
                sql: """
                    UPDATE _ks_users SET password_kdf = ?, password_params = ?, password_salt = ?, password_hash = ?,
                        changed_at = ?
                    WHERE name = ?
                    """,
                arguments: [
                    hash.kdf, hash.parameters, Data(hash.salt), Data(hash.hash), Timestamp.string(Date()), name,
                ])
            guard db.changesCount > 0 else { throw SyncError(.notFound, "There is no user \(name).") }
            // Whoever knew the old password may hold a session; a new password ends them.
            try Self.revokeSessions(of: name, db: db)
        }
    }

    public func login(name: String, password: String, minutes: Int) async throws -> IssuedToken? {
        let account = try await read { db -> (Device.Role, PasswordHash)? in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM _ks_users WHERE name = ?", arguments: [name]),
                let role = Device.Role(rawValue: row["role"])
            else { return nil }
            return (
                role,
                PasswordHash(
                    kdf: row["password_kdf"], parameters: row["password_params"],
                    salt: [UInt8](row["password_salt"] as Data), hash: [UInt8](row["password_hash"] as Data))
            )
        }
        guard let (role, stored) = account else {
            // As slow as a wrong password, so the time does not tell which names exist.
            _ = try? PasswordHash.decoy.verify(password)
            return nil
        }
        guard try stored.verify(password) else { return nil }
        return try await insertToken(
            opd: "", role: role, name: name, expiresAt: Date().addingTimeInterval(TimeInterval(minutes) * 60),
            user: name)
    }

    static func revokeSessions(of name: String, db: Database) throws {
        try db.execute(
            sql: "UPDATE _ks_tokens SET revoked_at = ? WHERE user_name = ? AND revoked_at IS NULL",
            arguments: [Timestamp.string(Date()), name])
    }
}
