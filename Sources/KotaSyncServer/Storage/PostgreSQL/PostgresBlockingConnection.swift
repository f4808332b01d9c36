import Foundation
import KotaSyncCore
import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import Synchronization

/// One connection of the pool, used from a blocking thread: each query waits for its round trip.
///
/// The merge's port is synchronous (decision D2), so on PostgreSQL the merge procedure runs on
/// a thread of `NIOThreadPool.singleton` — never on a Swift-concurrency cooperative thread nor
/// on an event loop, which a waiting thread would starve — holding this connection inside one
/// transaction (``PostgresMaster/blockingTransaction(lock:_:)``). Every query is postgres-nio's
/// `EventLoopFuture` form followed by `wait()`, which NIO allows off its event loops. Rows are
/// collected whole: the merge's reads are bounded (a window of keys), never a table scan.
struct PostgresBlockingConnection {
    let connection: PostgresConnection
    let logger: Logger
    /// Counts every statement sent (``PostgresMaster/blockingStatements``).
    let count: StatementCount

    /// Runs `query` and returns every row it gives.
    @discardableResult
    func rows(_ query: PostgresQuery) throws -> [PostgresRow] {
        count.add()
        return try connection.query(query, logger: logger).wait().rows
    }

    /// Runs `query` for its effect.
    func run(_ query: PostgresQuery) throws {
        count.add()
        _ = try connection.query(query, logger: logger).wait()
    }

    /// Runs SQL text that takes no parameters.
    func run(sql: String) throws {
        try run(PostgresQuery(unsafeSQL: sql))
    }

    /// Runs SQL text with `bindings` and returns every row.
    @discardableResult
    func rows(sql: String, _ bindings: PostgresBindings) throws -> [PostgresRow] {
        try rows(PostgresQuery(unsafeSQL: sql, binds: bindings))
    }
}

extension PostgresMaster {
    /// Runs the synchronous `body` on a blocking thread (`NIOThreadPool.singleton`) with one
    /// connection of the pool inside one transaction: BEGIN; with `lock`, `pg_advisory_xact_lock`
    /// on it (held to the end of the transaction, so every process of the master waits its turn);
    /// `body`; COMMIT — or ROLLBACK when `body` throws, and then `body`'s error is rethrown.
    ///
    /// The value is returned only after COMMIT has returned: a push is acknowledged only once it
    /// is durable. Should the COMMIT itself fail, its error is thrown (the push is not
    /// acknowledged; a retry of the same changeset gets the stored reply if it did commit).
    func blockingTransaction<T: Sendable>(
        lock: LockKey?, _ body: @escaping @Sendable (PostgresBlockingConnection) throws -> T
    ) async throws -> T {
        let logger = self.logger
        let count = blockingStatements
        return try await client.withConnection { connection in
            try await NIOThreadPool.singleton.runIfActive {
                let blocking = PostgresBlockingConnection(
                    connection: connection, logger: logger, count: count)
                try blocking.run(sql: "BEGIN")
                do {
                    if let lock { try blocking.run("SELECT pg_advisory_xact_lock(\(lock.rawValue))") }
                    let value = try body(blocking)
                    try blocking.run(sql: "COMMIT")
                    return value
                } catch {
                    // A connection whose transaction cannot be rolled back is closed by the pool
                    // when it next fails; the error that matters is the body's.
                    _ = try? blocking.run(sql: "ROLLBACK")
                    throw error
                }
            }
        }
    }
}

/// A count of statements, shared by the threads that send them.
package final class StatementCount: Sendable {
    private let value = Atomic<Int>(0)

    /// The statements counted so far.
    package var total: Int { value.load(ordering: .relaxed) }

    func add() { value.add(1, ordering: .relaxed) }
}
