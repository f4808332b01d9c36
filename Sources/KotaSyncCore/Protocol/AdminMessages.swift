/// `POST /v1/login`: a staff member's name and password.
public struct LoginRequest: Codable, Sendable, Equatable {
    public var name: String
    public var password: String

    public init(name: String, password: String) {
        self.name = name
        self.password = password
    }
}

/// A newly issued bearer token, shown once: the answer of `POST /v1/login` and of
/// `POST /v1/admin/tokens`.
public struct IssuedTokenDocument: Codable, Sendable, Equatable {
    /// The bearer token. The server keeps only its hash.
    public var token: String
    /// The token's id (not secret): what `token list` shows and `token revoke` takes.
    public var id: String
    /// `device`, `staff` or `session`.
    public var kind: String
    /// `device`, `viewer`, `reviewer` or `admin`.
    public var role: String
    /// The OPD of a device token.
    public var opd: String?
    /// The staff member's (or the logged-in user's) name.
    public var name: String?
    /// ISO 8601; absent when the token never expires.
    public var expiresAt: String?

    public init(
        token: String, id: String, kind: String, role: String, opd: String?, name: String?, expiresAt: String?
    ) {
        self.token = token
        self.id = id
        self.kind = kind
        self.role = role
        self.opd = opd
        self.name = name
        self.expiresAt = expiresAt
    }
}

/// One token as `token list` and `GET /v1/admin/tokens` show it: never its secret or hash.
public struct TokenDocument: Codable, Sendable, Equatable {
    public var id: String
    /// `device`, `staff` or `session` (a login's token).
    public var kind: String
    /// `device`, `viewer`, `reviewer` or `admin`.
    public var role: String
    /// The OPD of a device token.
    public var opd: String?
    /// The staff member's name (for a session, the user's).
    public var name: String?
    /// ISO 8601 times; `expires_at`, `revoked_at` and `last_used_at` are absent when they do not
    /// apply. `last_used_at` is recorded within about a second of a request, not exactly.
    public var createdAt: String
    public var expiresAt: String?
    public var revokedAt: String?
    public var lastUsedAt: String?

    public init(
        id: String, kind: String, role: String, opd: String?, name: String?, createdAt: String, expiresAt: String?,
        revokedAt: String?, lastUsedAt: String?
    ) {
        self.id = id
        self.kind = kind
        self.role = role
        self.opd = opd
        self.name = name
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.revokedAt = revokedAt
        self.lastUsedAt = lastUsedAt
    }
}

/// `GET /v1/admin/tokens`.
public struct TokenList: Codable, Sendable, Equatable {
    public var tokens: [TokenDocument]

    public init(tokens: [TokenDocument]) { self.tokens = tokens }
}

/// `POST /v1/admin/tokens`: a device token (`opd`) or a staff token (`staff` and `role`).
public struct CreateTokenRequest: Codable, Sendable, Equatable {
    public var opd: String?
    public var staff: String?
    public var role: String?
    /// Days until the token expires; never when absent.
    public var expiresDays: Int?

    public init(opd: String? = nil, staff: String? = nil, role: String? = nil, expiresDays: Int? = nil) {
        self.opd = opd
        self.staff = staff
        self.role = role
        self.expiresDays = expiresDays
    }
}

/// One staff account as `user list` and `GET /v1/admin/users` show it (never the password hash).
public struct UserDocument: Codable, Sendable, Equatable {
    public var name: String
    public var role: String
    public var createdAt: String
    public var changedAt: String

    public init(name: String, role: String, createdAt: String, changedAt: String) {
        self.name = name
        self.role = role
        self.createdAt = createdAt
        self.changedAt = changedAt
    }
}

/// `GET /v1/admin/users`.
public struct UserList: Codable, Sendable, Equatable {
    public var users: [UserDocument]

    public init(users: [UserDocument]) { self.users = users }
}
