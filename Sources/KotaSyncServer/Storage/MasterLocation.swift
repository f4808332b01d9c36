import Foundation

/// Where the master database is: an SQLite file (the embedded default) or a PostgreSQL database.
///
/// Named on the command line (`--master`), in the environment (`KOTASYNC_MASTER`) or in the
/// config (`master:`), in that order of precedence, by ``MasterLocation/resolve(flag:environment:config:defaultPath:)``.
/// A PostgreSQL location is a URL without a password,
/// `postgresql://USER@HOST:PORT/DATABASE[?sslmode=MODE]`; the password comes from a file or the
/// environment (``MasterLocation/password(file:environment:)``), never from the command line,
/// where every user of the machine could read it in the process list.
public enum MasterLocation: Sendable, Equatable, CustomStringConvertible {
    /// An SQLite master file.
    case file(path: String)
    /// A PostgreSQL database.
    case postgres(PostgresLocation)

    /// The environment variable naming the master.
    public static let environmentVariable = "KOTASYNC_MASTER"
    /// The environment variable naming a file that holds the PostgreSQL password.
    public static let passwordFileVariable = "KOTASYNC_MASTER_PASSWORD_FILE"
    /// libpq's own variable for the password, honoured as PostgreSQL's tools do.
    public static let libpqPasswordVariable = "PGPASSWORD"
    /// The most bytes a password file may hold: a password, not a document.
    public static let maxPasswordFileBytes = 4096

    /// Parses `text`: a `postgresql://` or `postgres://` URL, or else a file path (relative paths
    /// resolve against `base`, the config file's folder for the config's `master:`).
    public init(parsing text: String, relativeTo base: URL? = nil) throws(ConfigError) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty else {
            throw ConfigError(
                .invalid,
                "The master location is empty; give a file path or postgresql://USER@HOST:PORT/DATABASE.")
        }
        let lower = trimmed.lowercased()
        if lower.hasPrefix("postgresql://") || lower.hasPrefix("postgres://") {
            self = .postgres(try PostgresLocation(parsing: trimmed))
            return
        }
        if lower.contains("://") {
            throw ConfigError(
                .invalid,
                "The master location \(Self.schemeOnly(trimmed)) is neither a file path nor a postgresql:// URL.")
        }
        if let base, !trimmed.hasPrefix("/") {
            self = .file(path: URL(fileURLWithPath: trimmed, relativeTo: base).standardizedFileURL.path)
        } else {
            self = .file(path: trimmed)
        }
    }

    /// Which master to open: `--master` if given, else `KOTASYNC_MASTER`, else the config's
    /// `master:`, else the embedded default file `defaultPath`.
    public static func resolve(
        flag: String?, environment: [String: String], config: MasterLocation?, defaultPath: String
    ) throws(ConfigError) -> MasterLocation {
        if let flag { return try MasterLocation(parsing: flag) }
        if let value = environment[environmentVariable], !value.isEmpty { return try MasterLocation(parsing: value) }
        if let config { return config }
        return .file(path: defaultPath)
    }

    /// The PostgreSQL password: the file `--master-password-file` names (`file`), else the file
    /// `KOTASYNC_MASTER_PASSWORD_FILE` names, else `PGPASSWORD`; nil when none is set (a server
    /// that trusts the connection, or authenticates it another way).
    ///
    /// A file holds the password alone; one trailing line break is not part of it.
    public static func password(file: String?, environment: [String: String]) throws(ConfigError) -> String? {
        if let path = file ?? environment[passwordFileVariable].flatMap({ $0.isEmpty ? nil : $0 }) {
            return try readPasswordFile(path)
        }
        if let value = environment[libpqPasswordVariable], !value.isEmpty { return value }
        return nil
    }

    static func readPasswordFile(_ path: String) throws(ConfigError) -> String {
        let data: Data
        do {
            let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
            defer { try? handle.close() }
            // One byte more than allowed, to tell a file at the limit from a longer one.
            data = try handle.read(upToCount: maxPasswordFileBytes + 1) ?? Data()
        } catch {
            throw ConfigError(
                .unreadable, "Cannot read the master password file \(path): \(error.localizedDescription)")
        }
        guard data.count <= maxPasswordFileBytes else {
            throw ConfigError(
                .invalid,
                "The master password file \(path) is larger than \(maxPasswordFileBytes) bytes; it holds the password alone."
            )
        }
        guard var text = String(data: data, encoding: .utf8) else {
            throw ConfigError(.invalid, "The master password file \(path) is not UTF-8 text.")
        }
        // "\r\n" is one Character in Swift: one removeLast() takes either line ending.
        if text.hasSuffix("\r\n") || text.hasSuffix("\n") { text.removeLast() }
        guard !text.isEmpty, !text.unicodeScalars.contains(where: { $0 == "\n" || $0 == "\r" || $0 == "\u{0}" }) else {
            throw ConfigError(.invalid, "The master password file \(path) must hold the password alone, on one line.")
        }
        return text
    }

    /// The part before `://`, so that an error message never repeats what may be a secret.
    static func schemeOnly(_ text: String) -> String {
        guard let range = text.range(of: "://") else { return "" }
        return String(text[..<range.upperBound]) + "…"
    }

    /// The location as logs and messages may show it: the path, or the URL (which holds no password).
    public var description: String {
        switch self {
        case .file(let path): path
        case .postgres(let location): location.description
        }
    }
}

/// A PostgreSQL database named by `postgresql://USER@HOST:PORT/DATABASE[?sslmode=MODE]`.
public struct PostgresLocation: Sendable, Equatable, CustomStringConvertible {
    /// How the connection is encrypted, named as libpq's `sslmode` names it.
    public enum SSLMode: String, Sendable, CaseIterable {
        /// Never TLS.
        case disable
        /// TLS when the server offers it, without checking its certificate (libpq's default).
        case prefer
        /// TLS always, without checking the certificate.
        case require
        /// TLS always; the certificate must chain to a trusted authority.
        case verifyCA = "verify-ca"
        /// TLS always; the certificate must chain to a trusted authority and name the host.
        case verifyFull = "verify-full"
    }

    public var user: String
    /// A host name, an IPv4 address, or an IPv6 address without brackets.
    public var host: String
    public var port: Int
    public var database: String
    public var sslMode: SSLMode

    /// PostgreSQL's port when the URL names none.
    public static let defaultPort = 5432

    public init(user: String, host: String, port: Int = defaultPort, database: String, sslMode: SSLMode = .prefer) {
        self.user = user
        self.host = host
        self.port = port
        self.database = database
        self.sslMode = sslMode
    }

    /// Parses `postgresql://USER@HOST[:PORT]/DATABASE[?sslmode=MODE]` (also `postgres://`).
    /// A URL with a password is refused, and the refusal does not repeat it.
    public init(parsing text: String) throws(ConfigError) {
        func refuse(_ why: String) -> ConfigError {
            ConfigError(
                .invalid,
                "The master URL \(MasterLocation.schemeOnly(text)) \(why); write postgresql://USER@HOST:PORT/DATABASE[?sslmode=MODE]."
            )
        }
        guard let schemeEnd = text.range(of: "://") else { throw refuse("has no scheme") }
        var rest = Substring(text[schemeEnd.upperBound...])
        var query: Substring = ""
        if let q = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: q)...]
            rest = rest[..<q]
        }
        if rest.contains("#") { throw refuse("has a fragment (#…)") }
        guard let slash = rest.firstIndex(of: "/") else { throw refuse("names no database") }
        let authority = rest[..<slash]
        let path = rest[rest.index(after: slash)...]
        guard let at = authority.lastIndex(of: "@") else { throw refuse("names no user (USER@HOST)") }
        let userInfo = authority[..<at]
        if userInfo.contains(":") {
            throw ConfigError(
                .invalid,
                "The master URL holds a password. Remove it from the URL (where the process list and shell history show it) and give it with --master-password-file, KOTASYNC_MASTER_PASSWORD_FILE or PGPASSWORD."
            )
        }
        guard let user = Self.decode(userInfo), !user.isEmpty else { throw refuse("names no user (USER@HOST)") }
        var hostPort = authority[authority.index(after: at)...]
        var host: String
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else { throw refuse("has an IPv6 host without its ]") }
            host = String(hostPort[hostPort.index(after: hostPort.startIndex)..<close])
            hostPort = hostPort[hostPort.index(after: close)...]
            guard hostPort.isEmpty || hostPort.hasPrefix(":") else { throw refuse("has text after the IPv6 host") }
        } else {
            let colon = hostPort.firstIndex(of: ":") ?? hostPort.endIndex
            host = String(hostPort[..<colon])
            hostPort = hostPort[colon...]
        }
        guard !host.isEmpty, !host.contains(where: { $0 == "@" || $0 == "%" || $0.isWhitespace }) else {
            throw refuse("names no valid host")
        }
        host = host.lowercased()
        var port = Self.defaultPort
        if hostPort.hasPrefix(":") {
            let digits = hostPort.dropFirst()
            // Range-checked before conversion: a long run of digits must not overflow Int.
            guard !digits.isEmpty, digits.count <= 5, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber),
                let value = Int(digits), (1...65535).contains(value)
            else {
                throw refuse("has port \(digits.prefix(8)); give a port from 1 to 65535")
            }
            port = value
        }
        guard let database = Self.decode(path), !database.isEmpty, !database.contains("/") else {
            throw refuse("names no database")
        }
        var sslMode = SSLMode.prefer
        for pair in query.split(separator: "&") where !pair.isEmpty {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(parts[0])
            guard name == "sslmode", parts.count == 2 else {
                throw refuse("has the parameter \(name.prefix(40)), which KotaSync does not take (only sslmode)")
            }
            guard let mode = SSLMode(rawValue: String(parts[1])) else {
                throw refuse(
                    "has sslmode=\(parts[1].prefix(20)); use \(SSLMode.allCases.map(\.rawValue).joined(separator: ", "))"
                )
            }
            sslMode = mode
        }
        self.init(user: user, host: host, port: port, database: database, sslMode: sslMode)
    }

    /// Percent-decoding of a URL part; nil when an escape is broken.
    private static func decode(_ part: Substring) -> String? {
        guard part.contains("%") else { return String(part) }
        return String(part).removingPercentEncoding
    }

    /// The URL, without a password (there is none to show).
    public var description: String {
        let hostPart = host.contains(":") ? "[\(host)]" : host
        let user = user.addingPercentEncoding(withAllowedCharacters: .urlUserAllowed) ?? user
        let database = database.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? database
        let mode = sslMode == .prefer ? "" : "?sslmode=\(sslMode.rawValue)"
        return "postgresql://\(user)@\(hostPart):\(port)/\(database)\(mode)"
    }
}
