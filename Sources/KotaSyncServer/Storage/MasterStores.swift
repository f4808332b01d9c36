import Foundation
import Logging

/// Opens the master: the one place that knows which backends there are.
///
/// Every command that opens the master (`serve`, `token`, `user`, `conflicts`, `history`,
/// `audit`, `import`, `export`) comes through here and gets the store as the roles it needs, so
/// none of them depends on a backend.
public enum MasterStores {
    /// Opens (creating if needed) the master at `location` for `config`, with every role, on
    /// either backend.
    /// `password` is the PostgreSQL master's (``MasterLocation/password(file:environment:)``).
    /// `close` writes what is still queued (audit entries, device reports) and closes the
    /// master's connections; call it before the process ends.
    public static func open(
        location: MasterLocation, password: String?, config: ServerConfig, logger: Logger
    ) async throws -> (store: any MasterStore, close: @Sendable () async -> Void) {
        switch location {
        case .file(let path):
            let store = try SQLiteMasterStore(path: path, config: config, logger: logger)
            return (store, { try? await store.flushAudit() })
        case .postgres(let postgres):
            let store = try await PostgresMasterStore.open(
                postgres, password: password, config: config, logger: logger)
            return (store, { await store.close() })
        }
    }

    /// The SQLite master file at `path`, with every role.
    public static func open(location path: String, config: ServerConfig, logger: Logger) throws -> any MasterStore {
        try SQLiteMasterStore(path: path, config: config, logger: logger)
    }

    /// Opens the master's accounts (tokens, staff accounts and sessions, the audit log) at
    /// `location`, on either backend. `close` writes what is still queued and closes the
    /// master's connections; call it before the process ends.
    public static func openAccounts(
        location: MasterLocation, password: String?, config: ServerConfig, logger: Logger
    ) async throws -> (store: any CredentialStore & AuditStore, close: @Sendable () async -> Void) {
        switch location {
        case .file(let path):
            let store = try SQLiteMasterStore(path: path, config: config, logger: logger)
            return (store, { try? await store.flushAudit() })
        case .postgres(let postgres):
            let store = try await PostgresMasterStore.open(
                postgres, password: password, config: config, logger: logger)
            return (store, { await store.close() })
        }
    }
}

extension PostgresMasterStore: SyncStore {}
extension PostgresMasterStore: ReviewStore {}
extension PostgresMasterStore: CredentialStore {}
extension PostgresMasterStore: AuditStore {}
extension PostgresMasterStore: OverviewStore {}
extension PostgresMasterStore: TransferStore {}
