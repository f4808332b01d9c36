import Foundation
import KotaSyncCore

#if canImport(Hummingbird)
    import Hummingbird
#endif

// Every number that arrives from outside the server as text — a query parameter, a form field of
// the dashboard, a header — is parsed here, against the range `Protocol/http-api.md` documents for
// it. Out of range or not a number is `400 bad_request` with a message that names the parameter,
// says what was wrong and gives the range; nothing from outside reaches arithmetic or SQLite
// unchecked, so no request can make the server trap on an overflow.
//
// The parsing is plain Foundation (the Hummingbird wrapper is compiled only where Hummingbird is),
// so that the fuzz target (`Tests/Fuzz`) builds this file as it is and fuzzes it.

/// A whole number from outside the server and the range it must lie in.
package struct IntegerField: Sendable {
    /// What a value above the range's maximum does.
    package enum AboveMaximum: Sendable {
        /// It is refused, as a value below the minimum is.
        case refused
        /// It is lowered to the maximum: a page size (`limit`) larger than the server's page.
        case lowered
    }

    /// The name the request uses (`after`, `limit`, `page`), for messages.
    package let name: String
    /// The values accepted.
    package let range: ClosedRange<Int64>
    package let above: AboveMaximum

    /// Cursors, record ids and versions: the master keeps them as SQLite integers.
    package static let cursorRange: ClosedRange<Int64> = 0...Int64.max

    package init(_ name: String, _ range: ClosedRange<Int64>, above: AboveMaximum = .refused) {
        self.name = name
        self.range = range
        self.above = above
    }

    /// The value of `text`, or `fallback` when it is absent; `bad_request` when it is not a
    /// decimal integer (an optional `-` and the digits 0–9, nothing else) in the range.
    package func parse(_ text: (some StringProtocol)?, default fallback: Int64) throws(SyncError) -> Int64 {
        guard let text else { return fallback }
        return try parse(text)
    }

    /// The value of `text`; `bad_request` when it is not a decimal integer in the range.
    package func parse(_ text: some StringProtocol) throws(SyncError) -> Int64 {
        var digits = Substring(text).utf8[...]
        let negative = digits.first == UInt8(ascii: "-")
        if negative { digits = digits.dropFirst() }
        guard !digits.isEmpty, digits.allSatisfy({ (48...57).contains($0) }) else {
            throw SyncError(.badRequest, "`\(name)` is not a decimal integer; \(allowed).")
        }
        // The digits themselves, for messages: a thousand of them are named by their count.
        let shown =
            digits.count <= 25
            ? (negative ? "-" : "") + String(decoding: digits, as: UTF8.self)
            : "a number of \(digits.count) digits"
        // Accumulated as a magnitude that stops at Int64's, so that a thousand digits cost a
        // thousand steps and no overflow.
        let limit = negative ? UInt64(Int64.max) + 1 : UInt64(Int64.max)
        var magnitude: UInt64 = 0
        for digit in digits {
            let (times10, o1) = magnitude.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(UInt64(digit - 48))
            magnitude = o1 || o2 ? limit + 1 : sum
            if magnitude > limit { break }
        }
        let value: Int64? =
            magnitude > limit ? nil : negative ? (magnitude == limit ? .min : -Int64(magnitude)) : Int64(magnitude)
        if let value, range.contains(value) { return value }
        if value.map({ $0 < range.lowerBound }) ?? negative {
            throw SyncError(.badRequest, "`\(name)` is \(shown), below its minimum \(range.lowerBound); \(allowed).")
        }
        if above == .lowered { return range.upperBound }
        throw SyncError(.badRequest, "`\(name)` is \(shown), above its maximum \(range.upperBound); \(allowed).")
    }

    /// The rule, as the messages state it.
    private var allowed: String {
        switch above {
        case .refused: "it must be an integer from \(range.lowerBound) to \(range.upperBound)"
        case .lowered:
            "it must be an integer of at least \(range.lowerBound) (values above \(range.upperBound) are lowered to it)"
        }
    }
}

extension UploadRequest {
    /// The upload announcement of `POST /v1/uploads` from its JSON body, checked: `length` from 1
    /// to `maxLength` (else `body_too_large` above it, `bad_request` below), `sha256` 64 hex
    /// digits; any other body is `bad_request` saying what was wrong.
    package static func checked(json body: Data, maxLength: Int) throws(SyncError) -> UploadRequest {
        let shape =
            "Announce an upload as JSON {\"changeset_id\": UUID, \"length\": bytes (1 to \(maxLength)), \"sha256\": 64 hex digits}"
        let announced: UploadRequest
        do {
            announced = try ProtocolJSON.decoder().decode(UploadRequest.self, from: body)
        } catch let DecodingError.keyNotFound(key, _) {
            throw SyncError(.badRequest, "\(shape); `\(snakeCase(key.stringValue))` is missing.")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.dataCorrupted(context),
            let DecodingError.valueNotFound(_, context)
        {
            let path = context.codingPath.map { snakeCase($0.stringValue) }.joined(separator: ".")
            if path == "length" {
                throw SyncError(.badRequest, "\(shape); `length` is not an integer from 1 to \(maxLength).")
            }
            // Foundation's reader refuses a number beyond 64 bits as not JSON at all.
            throw SyncError(
                .badRequest,
                "\(shape); \(path.isEmpty ? "the body is not JSON of that shape (its numbers must fit in 64 bits)" : "`\(path)` is not valid")."
            )
        } catch {
            throw SyncError(.badRequest, "\(shape); the body is not such JSON.")
        }
        guard announced.length >= 1 else {
            throw SyncError(.badRequest, "\(shape); `length` is \(announced.length), below its minimum 1.")
        }
        guard announced.length <= maxLength else {
            throw SyncError(
                .bodyTooLarge,
                "The changeset is \(announced.length) bytes; this server accepts at most \(maxLength).")
        }
        guard announced.sha256.utf8.count == 64, announced.sha256.utf8.allSatisfy(\.isHexDigit) else {
            throw SyncError(.badRequest, "\(shape); `sha256` is not 64 hex digits.")
        }
        return announced
    }
}

/// `changesetId` as the protocol's JSON spells it, `changeset_id`.
private func snakeCase(_ key: String) -> String {
    key.reduce(into: "") { out, c in out += c.isUppercase ? "_" + c.lowercased() : String(c) }
}

extension UInt8 {
    /// 0–9, a–f or A–F.
    package var isHexDigit: Bool {
        (48...57).contains(self) || (97...102).contains(self) || (65...70).contains(self)
    }
}

#if canImport(Hummingbird)
    /// An integer query parameter, or `fallback` when it is absent, at least `minimum` and at most
    /// `maximum` (by default the largest SQLite integer that `T` can hold). A value above
    /// `lowering` is lowered to it (a page size). Anything else is `bad_request`.
    func integer<T: FixedWidthInteger>(
        _ request: Request, _ name: String, default fallback: T, minimum: T, maximum: T? = nil, lowering: T? = nil
    ) throws -> T {
        guard let text = request.uri.queryParameters.get(name) else { return fallback }
        let upper = Int64(clamping: lowering ?? maximum ?? T.max)
        let field = IntegerField(name, Int64(clamping: minimum)...upper, above: lowering == nil ? .refused : .lowered)
        return T(try field.parse(text))
    }
#endif
