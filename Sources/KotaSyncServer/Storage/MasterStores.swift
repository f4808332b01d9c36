import Foundation
import Logging

/// Opens the master: the one place that knows which backends there are.
///
/// Every command that opens the master (`serve`, `token`, `user`, `conflicts`, `history`,
/// `audit`, `import`, `export`) comes through here and gets the store as ``MasterStore``, so
/// none of them depends on a backend.
public enum MasterStores {
    /// Opens (creating if needed) the master at `location` for `config`. Today `location` is the
    /// path of the embedded SQLite master file.
    public static func open(location: String, config: ServerConfig, logger: Logger) throws -> any MasterStore {
        try SQLiteMasterStore(path: location, config: config, logger: logger)
    }
}
