import KotaSyncCore
import PostgresNIO
import _ConnectionPoolModule

/// What a failure of the PostgreSQL master means to the one who asked: a device, a staff member,
/// an operator at the command line.
///
/// A `PSQLError` says nothing by itself (its description is deliberately generic, so no value
/// leaks through it) and carries no code a client knows. Every route and command turns it into a
/// ``SyncError`` through ``syncError(_:)``: `internal_error` (retryable) with words that say
/// whether the master could not be reached — a connection refused or lost, the database shutting
/// down or out of connections, a transaction chosen as a deadlock's victim — or refused a
/// statement. The message carries the SQLSTATE and, for the classes whose server text holds no
/// row value (connection, resources, shutdown, privileges), PostgreSQL's own words; never the
/// text of a data or constraint error, which may quote a value (rule 7).
public enum PostgresFailure {
    /// The failure `error` is, or nil when it is not one of the PostgreSQL master's.
    public static func syncError(_ error: any Error) -> SyncError? {
        if error is ConnectionPoolError {
            return unreachable("no connection to it could be made")
        }
        guard let error = error as? PSQLError else { return nil }
        switch error.code {
        case .server:
            let state = error.serverInfo?[.sqlState] ?? "?????"
            let said = error.serverInfo?[.message].map { ": \($0)" } ?? ""
            if transient(state) {
                return unreachable("SQLSTATE \(state)\(safeToQuote(state) ? said : "")")
            }
            return SyncError(
                .internalError,
                "The PostgreSQL master refused a statement (SQLSTATE \(state)\(safeToQuote(state) ? said : "")); nothing of the request was applied. Tell the Command Center's operator if it persists."
            )
        case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed,
            .queryCancelled, .sslUnsupported, .failedToAddSSLHandler:
            return unreachable("\(error.code)")
        default:
            return SyncError(
                .internalError,
                "The PostgreSQL master's answer could not be used (\(error.code)). Tell the Command Center's operator if it persists."
            )
        }
    }

    /// The SQLSTATE log field of a PostgreSQL failure (never its message), for the server's log.
    public static func logSummary(_ error: any Error) -> String? {
        if error is ConnectionPoolError { return "postgresql: no connection" }
        guard let error = error as? PSQLError else { return nil }
        if error.code == .server { return "postgresql: SQLSTATE \(error.serverInfo?[.sqlState] ?? "?????")" }
        return "postgresql: \(error.code)"
    }

    private static func unreachable(_ reason: String) -> SyncError {
        SyncError(
            .internalError,
            "The PostgreSQL master cannot serve the request now (\(reason)). Send the same request again later: a push the master committed before the link broke is answered from its stored reply."
        )
    }

    /// Classes that pass: connection exceptions (08), insufficient resources (53: too many
    /// connections, disk full), operator intervention (57: shutdown, cancelled), a serialization
    /// failure or deadlock victim (40001, 40P01), a lock not available (55P03).
    static func transient(_ state: String) -> Bool {
        ["08", "53", "57"].contains(String(state.prefix(2))) || ["40001", "40P01", "55P03"].contains(state)
    }

    /// Classes whose server message names objects and reasons, never a row's value: those of
    /// ``transient(_:)``, invalid authorization (28), an unknown database (3D), syntax and
    /// privileges (42), and object state (55).
    static func safeToQuote(_ state: String) -> Bool {
        ["08", "28", "3D", "40", "42", "53", "55", "57"].contains(String(state.prefix(2)))
    }
}
