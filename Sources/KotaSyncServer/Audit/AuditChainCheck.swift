/// Walks the audit log in id order and finds the first entry that breaks the hash chain: an
/// entry whose content was edited, one that was inserted, or a gap where entries were deleted.
///
/// A plain value fed one stored entry at a time, so it checks any length of log in constant
/// memory and is tested without a database.
public struct AuditChainCheck: Sendable {
    /// The first problem found, naming the entry: its id and what is wrong.
    public struct Problem: Sendable, Equatable, CustomStringConvertible {
        /// The id of the first entry that does not check out (for a deletion at the end, the
        /// first missing id).
        public var id: Int64
        /// What is wrong with it: edited, entries deleted before it, or not following its predecessor.
        public var message: String
        /// `entry N: message`.
        public var description: String { "entry \(id): \(message)" }
    }

    private var lastID: Int64 = 0
    private var lastHash = AuditEntry.genesis
    /// How many entries were checked.
    package private(set) var count = 0

    package init() {}

    /// Checks the next stored entry with its stored `previous` and `hash`; nil if it follows.
    package mutating func check(_ entry: AuditEntry, previous: String, hash: String) -> Problem? {
        defer {
            lastID = entry.id
            lastHash = hash
            count += 1
        }
        if entry.chainedHash(after: previous) != hash {
            return Problem(id: entry.id, message: "edited: its content no longer matches its hash")
        }
        if entry.id != lastID + 1 {
            let missing =
                lastID + 1 == entry.id - 1
                ? "entry \(lastID + 1) before it was" : "entries \(lastID + 1) to \(entry.id - 1) before it were"
            return Problem(id: entry.id, message: "\(missing) deleted")
        }
        if previous != lastHash {
            return Problem(
                id: entry.id,
                message: "does not follow entry \(lastID): an entry was inserted, or entry \(lastID) was replaced")
        }
        return nil
    }

    /// Checks the end of the log against the head recorded with the last write (`id`, `hash`):
    /// entries deleted from the end leave the chain intact but not the head.
    package func checkEnd(headID: Int64, headHash: String) -> Problem? {
        if headID > lastID {
            let missing = lastID + 1 == headID ? "it was" : "entries \(lastID + 1) to \(headID) were"
            return Problem(id: lastID + 1, message: "\(missing) deleted from the end of the log")
        }
        if headID != lastID || headHash != lastHash {
            return Problem(id: lastID, message: "the last entry is not the one the recorded head names")
        }
        return nil
    }

    /// The hash of the last entry checked (to keep elsewhere and compare later).
    package var head: (id: Int64, hash: String) { (lastID, lastHash) }
}
