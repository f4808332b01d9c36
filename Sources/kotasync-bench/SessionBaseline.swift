import CSQLite
import Foundation

/// Baseline A: SQLite's own session extension, recording the same operations and applying the
/// resulting changesets with a last-writer-wins conflict handler.
enum SessionBaseline {
    /// Runs `ops` on `db` in transactions of `batch` with a session recording every table, and
    /// returns the session's changeset.
    static func record(_ db: RawDatabase, ops: [Operation], batch: Int) throws -> [UInt8] {
        var session: OpaquePointer?
        guard sqlite3session_create(db.handle, "main", &session) == SQLITE_OK, let session else {
            throw BenchError("sqlite3session_create failed")
        }
        defer { sqlite3session_delete(session) }
        guard sqlite3session_attach(session, nil) == SQLITE_OK else { throw BenchError("sqlite3session_attach failed") }
        try Bench.apply(ops, to: db, batch: batch)
        var size: Int32 = 0
        var buffer: UnsafeMutableRawPointer?
        guard sqlite3session_changeset(session, &size, &buffer) == SQLITE_OK else {
            throw BenchError("sqlite3session_changeset failed")
        }
        defer { sqlite3_free(buffer) }
        return Array(UnsafeRawBufferPointer(start: buffer, count: Int(size)))
    }

    /// Applies a changeset in one call (its own transaction); returns the conflicts the handler saw.
    static func apply(_ db: RawDatabase, changeset: [UInt8]) throws -> Int {
        var conflicts = 0
        let status = changeset.withUnsafeBytes { bytes in
            withUnsafeMutablePointer(to: &conflicts) { counter in
                sqlite3changeset_apply_v2(
                    db.handle, Int32(bytes.count), UnsafeMutableRawPointer(mutating: bytes.baseAddress), nil,
                    { context, kind, _ in
                        context?.assumingMemoryBound(to: Int.self).pointee += 1
                        // Last writer wins: the incoming change replaces what is there; a change to a
                        // row that is gone is dropped.
                        switch kind {
                        case SQLITE_CHANGESET_DATA, SQLITE_CHANGESET_CONFLICT: return SQLITE_CHANGESET_REPLACE
                        default: return SQLITE_CHANGESET_OMIT
                        }
                    }, counter, nil, nil, 0)
            }
        }
        guard status == SQLITE_OK else { throw BenchError("sqlite3changeset_apply_v2 failed with \(status)") }
        return conflicts
    }
}
