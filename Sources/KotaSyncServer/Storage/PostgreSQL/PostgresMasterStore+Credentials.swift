import Foundation
import KotaSyncCore
import PostgresNIO

/// The credentials role on PostgreSQL: what `SQLiteMasterStore+Credentials` and the token part of
/// `SQLiteMasterStore` do, on `kotasync.tokens` and `kotasync.users`. The pure parts are shared:
/// `PasswordHash` (scrypt), the token hash and the name and password checks.
extension PostgresMasterStore {
    // MARK: - Tokens

    public func createToken(opd: String, expiresAt: Date?) async throws -> IssuedToken {
        let opd = try CredentialChecks.checkedTokenOPD(opd, config: config)
        return try await insertToken(opd: opd, role: .device, name: nil, expiresAt: expiresAt)
    }

    public func createStaffToken(name: String, role: Device.Role, expiresAt: Date?) async throws -> IssuedToken {
        let name = try CredentialChecks.checkedStaffToken(name: name, role: role)
        // Staff belong to the Command Center, not to an OPD: the empty OPD matches no replica.
        return try await insertToken(opd: "", role: role, name: name, expiresAt: expiresAt)
    }

    func insertToken(opd: String, role: Device.Role, name: String?, expiresAt: Date?, user: String? = nil)
        async throws -> IssuedToken
    {
        let (id, token) = CredentialChecks.newToken()
        try await client.query(
            """
            INSERT INTO kotasync.tokens(id, opd, hash, created_at, expires_at, role, name, user_name)
            VALUES (\(id), \(opd), \(CredentialChecks.tokenHash(token)), \(Timestamp.string(Date())),
                \(expiresAt.map(Timestamp.string)), \(role.rawValue), \(name), \(user))
            """, logger: logger)
        return IssuedToken(id: id, opd: opd, token: token, expiresAt: expiresAt, role: role, name: name)
    }

    public func authenticate(token: String) async throws -> Device? {
        let rows = try await client.query(
            """
            SELECT id, opd, expires_at, revoked_at, role, name, user_name FROM kotasync.tokens
            WHERE hash = \(CredentialChecks.tokenHash(token))
            """, logger: logger)
        var device: Device?
        for try await (id, opd, expires, revoked, roleName, name, user) in rows.decode(
            (String, String, String?, String?, String, String?, String?).self)
        {
            // A role this build does not know grants nothing.
            guard revoked == nil, let role = Device.Role(rawValue: roleName) else { continue }
            if let expires = expires.flatMap(Timestamp.date), expires <= Date() { continue }
            var found = Device(tokenID: id, opd: opd, role: role, name: name)
            found.session = user != nil
            device = found
        }
        if let device { noteTokenUse(device.tokenID) }
        return device
    }

    public func tokens() async throws -> [TokenDocument] {
        try await flushAudit()  // so `last_used_at` includes the last second's requests
        let rows = try await client.query(
            "SELECT \(unescaped: Self.tokenColumns) FROM kotasync.tokens ORDER BY created_at DESC, id", logger: logger)
        var out: [TokenDocument] = []
        for try await row in rows { out.append(try Self.tokenDocument(row)) }
        return out
    }

    public func revokeToken(id: String) async throws -> TokenDocument {
        let rows = try await client.query(
            """
            WITH revoked AS (
                UPDATE kotasync.tokens SET revoked_at = \(Timestamp.string(Date()))
                WHERE id = \(id) AND revoked_at IS NULL RETURNING \(unescaped: Self.tokenColumns)
            )
            SELECT \(unescaped: Self.tokenColumns) FROM revoked
            UNION ALL
            SELECT \(unescaped: Self.tokenColumns) FROM kotasync.tokens WHERE id = \(id) AND NOT EXISTS (SELECT 1 FROM revoked)
            """, logger: logger)
        for try await row in rows { return try Self.tokenDocument(row) }
        throw SyncError(.notFound, "There is no token with id \(id); `token list` shows them.")
    }

    static let tokenColumns = "id, opd, role, user_name, name, created_at, expires_at, revoked_at, last_used_at"

    static func tokenDocument(_ row: PostgresRow) throws -> TokenDocument {
        let (id, opd, role, user, name, created, expires, revoked, lastUsed) = try row.decode(
            (String, String, String, String?, String?, String, String?, String?, String?).self)
        let kind = role == "device" ? "device" : user == nil ? "staff" : "session"
        return TokenDocument(
            id: id, kind: kind, role: role, opd: opd.isEmpty ? nil : opd, name: user ?? name, createdAt: created,
            expiresAt: expires, revokedAt: revoked, lastUsedAt: lastUsed)
    }

    // MARK: - Staff accounts

    public func addUser(name: String, role: Device.Role, password: String) async throws -> UserDocument {
        guard role != .device else {
            throw SyncError(.badRequest, "A staff account is a viewer, reviewer or admin.")
        }
        let name = try CredentialChecks.checkedUserName(name)
        let hash = try CredentialChecks.checkedPassword(password)
        let now = Timestamp.string(Date())
        let rows = try await client.query(
            """
            INSERT INTO kotasync.users(name, role, password_kdf, password_params, password_salt, password_hash,
                created_at, changed_at)
            VALUES (\(name), \(role.rawValue), \(hash.kdf), \(hash.parameters), \(Data(hash.salt)), \(Data(hash.hash)),
                \(now), \(now))
            ON CONFLICT (name) DO NOTHING RETURNING name
            """, logger: logger)
        for try await _ in rows {
            return UserDocument(name: name, role: role.rawValue, createdAt: now, changedAt: now)
        }
        throw SyncError(.badRequest, "There is already a user \(name); `user passwd` changes a password.")
    }

    public func users() async throws -> [UserDocument] {
        let rows = try await client.query(
            "SELECT name, role, created_at, changed_at FROM kotasync.users ORDER BY name", logger: logger)
        var out: [UserDocument] = []
        for try await (name, role, created, changed) in rows.decode((String, String, String, String).self) {
            out.append(UserDocument(name: name, role: role, createdAt: created, changedAt: changed))
        }
        return out
    }

    public func removeUser(name: String) async throws {
        try await master.transaction { connection in
            let rows = try await connection.query(
                "DELETE FROM kotasync.users WHERE name = \(name) RETURNING name", logger: logger)
            var found = false
            for try await _ in rows { found = true }
            guard found else { throw SyncError(.notFound, "There is no user \(name).") }
            try await Self.revokeSessions(of: name, connection)
        }
    }

    public func setPassword(name: String, password: String) async throws {
        let hash = try CredentialChecks.checkedPassword(password)
        try await master.transaction { connection in
            let rows = try await connection.query(
                """
                UPDATE kotasync.users SET password_kdf = \(hash.kdf), password_params = \(hash.parameters),
                    password_salt = \(Data(hash.salt)), password_hash = \(Data(hash.hash)),
                    changed_at = \(Timestamp.string(Date()))
                WHERE name = \(name) RETURNING name
                """, logger: logger)
            var found = false
            for try await _ in rows { found = true }
            guard found else { throw SyncError(.notFound, "There is no user \(name).") }
            // Whoever knew the old password may hold a session; a new password ends them.
            try await Self.revokeSessions(of: name, connection)
        }
    }

    public func login(name: String, password: String, minutes: Int) async throws -> IssuedToken? {
        let rows = try await client.query(
            """
            SELECT role, password_kdf, password_params, password_salt, password_hash FROM kotasync.users
            WHERE name = \(name)
            """, logger: logger)
        var account: (Device.Role, PasswordHash)?
        for try await (roleName, kdf, parameters, salt, hash) in rows.decode((String, String, String, Data, Data).self)
        {
            guard let role = Device.Role(rawValue: roleName) else { continue }
            account = (role, PasswordHash(kdf: kdf, parameters: parameters, salt: [UInt8](salt), hash: [UInt8](hash)))
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

    static func revokeSessions(of name: String, _ connection: PostgresConnection) async throws {
        try await connection.query(
            """
            UPDATE kotasync.tokens SET revoked_at = \(Timestamp.string(Date()))
            WHERE user_name = \(name) AND revoked_at IS NULL
            """, logger: SQLiteMasterStore.quietLogger)
    }
}
