import Foundation
import KotaSyncCore
import Logging
import PostgresNIO
import Synchronization

/// The master on PostgreSQL, with every role (``MasterStore``): sync (`+Push`, `+Pull`,
/// `+Devices`, ``PostgresUploads``), review (`+Review`), credentials, audit, overview and
/// transfer files.
///
/// Several stores (several servers, the command line) may work on one master at once, and the
/// master stays one master:
/// - merges (pushes, reviewers' decisions) are serialised city-wide by a transaction-scoped
///   advisory lock (``PostgresMaster/LockKey/merge``) held from reading the latest version to
///   commit, so versions become visible in number order and a version-paged pull never passes
///   one still being written; pulls and the dashboard read snapshots without the lock;
/// - a token, a login or a partial upload made through one is valid on all (they read the same
///   rows);
/// - the audit log stays one hash chain, because every append holds its own advisory lock
///   (``PostgresMaster/LockKey/audit``) from reading the chain's head to commit.
public final class PostgresMasterStore: Sendable {
    /// The pool and schema this store works on.
    public let master: PostgresMaster
    /// The configuration the store was opened with.
    public let config: ServerConfig
    let logger: Logger
    /// Audit entries and token uses waiting for their batched write (`PostgresMasterStore+Audit`).
    let auditBuffer = Mutex(PostgresAuditBuffer())
    /// What every merge of this store looks up once (`PostgresMasterStore+Push`).
    let mergeCache = Mutex(PostgresMergeCache())

    /// A store over `master`, whose schema ``PostgresMaster/prepareSchema(for:)`` has prepared
    /// for `config`.
    public init(master: PostgresMaster, config: ServerConfig, logger: Logger = SQLiteMasterStore.quietLogger) {
        self.master = master
        self.config = config
        self.logger = logger
    }

    /// Connects to `location`, prepares the schema for `config`, and returns the store.
    public static func open(
        _ location: PostgresLocation, password: String?, config: ServerConfig,
        logger: Logger = SQLiteMasterStore.quietLogger
    ) async throws -> PostgresMasterStore {
        let master = try PostgresMaster.connect(to: location, password: password, logger: logger)
        do {
            try await master.prepareSchema(for: config)
        } catch {
            await master.close()
            throw error
        }
        return PostgresMasterStore(master: master, config: config, logger: logger)
    }

    var client: PostgresClient { master.client }

    /// Writes what is still queued (audit entries, token uses), stops scheduling writes, and
    /// closes the pool. The store is not used afterwards.
    public func close() async {
        do {
            try await flushAudit()
        } catch {
            logger.error("audit write at close failed", metadata: ["error": "\(error)"])
        }
        auditBuffer.withLock { $0.closed = true }
        await master.close()
    }
}

/// Audit entries, token uses and device reports waiting to be written.
struct PostgresAuditBuffer: Sendable {
    var entries: [AuditEntry] = []
    /// Token id → the last time it authenticated a request, not yet written.
    var tokenUses: [String: Date] = [:]
    /// Replica and sender's OPD → what its devices said about themselves since the last write,
    /// folded together (`PostgresMasterStore+Devices`).
    var deviceReports: [DeviceReportKey: PendingDeviceReport] = [:]
    /// Whether a flush is already scheduled.
    var scheduled = false
    /// Set by ``PostgresMasterStore/close()``: nothing is scheduled any more.
    var closed = false
}
