import Foundation
import KotaSyncCore
import Testing

@testable import KotaSyncServer

/// Numbers from outside as `IntegerField` parses them, and the tally of refused requests per
/// address: the pure rules under the HTTP routes, without a server.
struct NumericInputTests {
    static let after = IntegerField("after", IntegerField.cursorRange)
    static let limit = IntegerField("limit", 1...5000, above: .lowered)

    @Test func aCursorIsADecimalIntegerFromZeroToTheLargestSQLiteInteger() throws {
        #expect(try Self.after.parse("0") == 0)
        #expect(try Self.after.parse("9007199254740992") == 1 << 53)
        #expect(try Self.after.parse("9223372036854775807") == .max)
        #expect(try Self.after.parse(nil as String?, default: 7) == 7)
        for text in ["9223372036854775808", "18446744073709551615", String(repeating: "9", count: 1000)] {
            let error = try #require(throws: SyncError.self) { try Self.after.parse(text) }
            #expect(error.code == .badRequest)
            #expect(error.message.contains("above its maximum 9223372036854775807"), "\(error.message)")
        }
        for text in ["-1", "-9223372036854775808", "-99999999999999999999"] {
            let error = try #require(throws: SyncError.self) { try Self.after.parse(text) }
            #expect(error.message.contains("below its minimum 0"), "\(error.message)")
        }
        for text in ["", "-", "abc", "1e3", "0x10", "+5", " 5", "5 ", "١٢", "1.0"] {
            let error = try #require(throws: SyncError.self) { try Self.after.parse(text) }
            #expect(error.message.contains("not a decimal integer"), "\(text): \(error.message)")
        }
    }

    @Test func aPageSizeAboveItsMaximumIsLoweredHoweverLarge() throws {
        #expect(try Self.limit.parse("1") == 1)
        #expect(try Self.limit.parse("5001") == 5000)
        #expect(try Self.limit.parse("18446744073709551615") == 5000)
        #expect(try Self.limit.parse(String(repeating: "7", count: 300)) == 5000)
        let zero = try #require(throws: SyncError.self) { try Self.limit.parse("0") }
        #expect(zero.message.contains("below its minimum 1"))
        #expect(zero.message.contains("lowered"))
    }

    @Test func anUploadAnnouncementSaysWhichFieldIsWrong() throws {
        func refusal(_ json: String) throws -> SyncError {
            try #require(throws: SyncError.self) {
                try UploadRequest.checked(json: Data(json.utf8), maxLength: 1000)
            }
        }
        let id = UUID().uuidString
        let sha = String(repeating: "a", count: 64)
        #expect(
            try UploadRequest.checked(
                json: Data("{\"changeset_id\":\"\(id)\",\"length\":1000,\"sha256\":\"\(sha)\"}".utf8), maxLength: 1000
            ).length == 1000)
        let zero = try refusal("{\"changeset_id\":\"\(id)\",\"length\":0,\"sha256\":\"\(sha)\"}")
        #expect(zero.code == .badRequest && zero.message.contains("`length` is 0"))
        let large = try refusal("{\"changeset_id\":\"\(id)\",\"length\":1001,\"sha256\":\"\(sha)\"}")
        #expect(large.code == .bodyTooLarge)
        let huge = try refusal("{\"changeset_id\":\"\(id)\",\"length\":18446744073709551616,\"sha256\":\"\(sha)\"}")
        #expect(huge.code == .badRequest && huge.message.contains("64 bits"))
        let text = try refusal("{\"changeset_id\":\"\(id)\",\"length\":\"ten\",\"sha256\":\"\(sha)\"}")
        #expect(text.code == .badRequest && text.message.contains("`length` is not an integer from 1 to 1000"))
        let hash = try refusal("{\"changeset_id\":\"\(id)\",\"length\":10,\"sha256\":\"xyz\"}")
        #expect(hash.code == .badRequest && hash.message.contains("`sha256`"))
        let missing = try refusal("{\"length\":10,\"sha256\":\"\(sha)\"}")
        #expect(missing.message.contains("`changeset_id` is missing"))
        #expect(try refusal("not json").code == .badRequest)
    }

    @Test func refusalsBeyondTheAllowanceAreCountedAndSummarisedOnceTheMinuteEnds() {
        var tally = RefusalTally(perMinute: 3)
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)  // the start of a minute
        for i in 0..<3 { #expect(tally.refuse("10.0.0.1", now: t0 + Double(i)).retryAfter == nil) }
        let fourth = tally.refuse("10.0.0.1", now: t0 + 10)
        #expect(fourth.retryAfter == 50)
        #expect(fourth.ended == nil)
        for i in 0..<6 { _ = tally.refuse("10.0.0.1", now: t0 + 20 + Double(i)) }
        // Another address has its own allowance.
        #expect(tally.refuse("10.0.0.2", now: t0 + 30).retryAfter == nil)
        #expect(tally.hasUnaudited)
        #expect(tally.ended(now: t0 + 59).isEmpty, "the minute is not over")
        let summaries = tally.ended(now: t0 + 61)
        #expect(summaries == [.init(address: "10.0.0.1", minute: t0, refused: 10, unaudited: 7)])
        #expect(tally.ended(now: t0 + 62).isEmpty, "each summary once")
        #expect(!tally.hasUnaudited)
        // A new minute starts a new allowance; the previous minute's summary comes with it.
        for _ in 0..<5 { _ = tally.refuse("10.0.0.3", now: t0 + 70) }
        let next = tally.refuse("10.0.0.3", now: t0 + 125)
        #expect(next.retryAfter == nil)
        #expect(next.ended == .init(address: "10.0.0.3", minute: t0 + 60, refused: 5, unaudited: 2))
    }
}
