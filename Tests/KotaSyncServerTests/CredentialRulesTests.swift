import Foundation
import KotaSyncCore
import Testing

@testable import KotaSyncServer

/// The pure rules behind credentials and the audit log: failed-login windows, request budgets,
/// client addresses behind a proxy, password hashes and the audit hash chain.
struct CredentialRulesTests {
    let t0 = Date(timeIntervalSince1970: 1_764_000_000)

    @Test func theFailureAfterTheLimitWaitsUntilTheOldestLeavesTheWindow() {
        var window = FailureWindow(limit: 3, window: 900)
        for i in 0..<3 {
            #expect(window.retryAfter("ani", now: t0 + Double(i)) == nil)
            window.fail("ani", now: t0 + Double(i))
        }
        #expect(window.retryAfter("ani", now: t0 + 10) == 890)
        #expect(window.retryAfter("budi", now: t0 + 10) == nil, "other keys are not affected")
        #expect(window.retryAfter("ani", now: t0 + 900) == nil, "the first failure left the window")
        window.clear("ani")
        #expect(window.retryAfter("ani", now: t0 + 10) == nil)
    }

    @Test func aTokenGetsItsRequestsPerMinuteAndWaitsForTheNextMinute() {
        var budget = RequestBudget(perMinute: 2)
        let start = Date(timeIntervalSince1970: 1_764_000_000 - 1_764_000_000.truncatingRemainder(dividingBy: 60))
        #expect(budget.admit("a", now: start + 1) == nil)
        #expect(budget.admit("a", now: start + 2) == nil)
        #expect(budget.admit("a", now: start + 3) == 57)
        #expect(budget.admit("b", now: start + 3) == nil, "other tokens are served")
        #expect(budget.admit("a", now: start + 60) == nil, "a new minute")
    }

    @Test func theClientAddressComesFromForwardedForOnlyBehindATrustedProxy() {
        let trusted = ["127.0.0.1"]
        #expect(ClientAddress.of(peer: "10.0.0.5", forwardedFor: "1.2.3.4", trusted: trusted) == "10.0.0.5")
        #expect(ClientAddress.of(peer: "127.0.0.1", forwardedFor: "1.2.3.4", trusted: trusted) == "1.2.3.4")
        // The client may send its own header; the proxy appends the address it saw: the last one counts.
        #expect(ClientAddress.of(peer: "127.0.0.1", forwardedFor: "6.6.6.6, 1.2.3.4", trusted: trusted) == "1.2.3.4")
        #expect(ClientAddress.of(peer: "127.0.0.1", forwardedFor: nil, trusted: trusted) == "127.0.0.1")
        #expect(ClientAddress.of(peer: "127.0.0.1", forwardedFor: "1.2.3.4", trusted: []) == "127.0.0.1")
    }

    @Test func aPasswordVerifiesOnlyItselfAndIsStoredSaltedNotInClear() throws {
        let cheap = "N=1024,r=8,p=1"
        let hash = try PasswordHash.make("kopi susu pagi", parameters: cheap)
        #expect(try hash.verify("kopi susu pagi"))
        #expect(try !hash.verify("kopi susu pagI"))
        #expect(try !hash.verify(""))
        let again = try PasswordHash.make("kopi susu pagi", parameters: cheap)
        #expect(again.salt != hash.salt && again.hash != hash.hash, "a new salt each time")
        #expect(hash.hash.count == 32 && hash.kdf == "scrypt" && hash.parameters == cheap)
        let stored = PasswordHash(kdf: "argon2", parameters: cheap, salt: hash.salt, hash: hash.hash)
        #expect(throws: (any Error).self) { try stored.verify("kopi susu pagi") }
    }

    static func chain(_ count: Int) -> [(entry: AuditEntry, previous: String, hash: String)] {
        var previous = AuditEntry.genesis
        return (1...count).map { i in
            var entry = AuditEntry(actor: "t\(i)", actorKind: "device", action: "pull", status: 200)
            entry.id = Int64(i)
            let hash = entry.chainedHash(after: previous)
            defer { previous = hash }
            return (entry, previous, hash)
        }
    }

    static func firstProblem(_ rows: [(entry: AuditEntry, previous: String, hash: String)], head: (Int64, String))
        -> AuditChainCheck.Problem?
    {
        var check = AuditChainCheck()
        for row in rows {
            if let problem = check.check(row.entry, previous: row.previous, hash: row.hash) { return problem }
        }
        return check.checkEnd(headID: head.0, headHash: head.1)
    }

    @Test func anIntactChainPassesAndEveryKindOfTamperingIsNamed() {
        let rows = Self.chain(5)
        let head = (Int64(5), rows[4].hash)
        #expect(Self.firstProblem(rows, head: head) == nil)

        var edited = rows
        edited[2].entry.status = 500
        #expect(Self.firstProblem(edited, head: head)?.id == 3)
        #expect(Self.firstProblem(edited, head: head)?.message.contains("edited") == true)

        var deleted = rows
        deleted.remove(at: 1)
        #expect(Self.firstProblem(deleted, head: head) == .init(id: 3, message: "entry 2 before it was deleted"))

        #expect(
            Self.firstProblem(Array(rows.prefix(4)), head: head)?.message.contains("deleted from the end of the log")
                == true)

        // An edit whose hash was recomputed shows in the next entry's link.
        var rehashed = rows
        rehashed[1].entry.actor = "someone else"
        rehashed[1].hash = rehashed[1].entry.chainedHash(after: rehashed[1].previous)
        #expect(Self.firstProblem(rehashed, head: head)?.id == 3)
    }
}
