import Foundation
import Testing

@testable import KotaSyncCore

@Suite("SQLValue JSON")
struct SQLValueJSONTests {
    static func json(_ v: SQLValue) throws -> [String: Any] {
        let data = try JSONEncoder().encode(v)
        return try #require(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    static func decode(_ text: String) throws -> SQLValue {
        try JSONDecoder().decode(SQLValue.self, from: Data(text.utf8))
    }

    @Test("Every edge value survives a JSON round trip bit-exact", arguments: edgeValues.indices)
    func edgeValuesRoundTripThroughJSON(_ index: Int) throws {
        let v = edgeValues[index]
        let back = try JSONDecoder().decode(SQLValue.self, from: JSONEncoder().encode(v))
        #expect(identical(back, v), "\(v) came back as \(back)")
    }

    @Test("NaNs keep their exact bits in JSON", arguments: nanValues.indices)
    func nanRoundTripsThroughJSON(_ index: Int) throws {
        let v = nanValues[index]
        let back = try JSONDecoder().decode(SQLValue.self, from: JSONEncoder().encode(v))
        #expect(identical(back, v))
    }

    @Test func integersAreDecimalStrings() throws {
        let max = try Self.json(.integer(.max))
        #expect(max["type"] as? String == "integer")
        #expect(max["value"] as? String == "9223372036854775807")
        #expect(try Self.json(.integer(.min))["value"] as? String == "-9223372036854775808")
        #expect(try Self.decode(#"{"type":"integer","value":"-9223372036854775808"}"#) == .integer(.min))
    }

    @Test func realsCarryTheirBitsAsSixteenHexDigits() throws {
        let minusZero = try Self.json(.real(-0.0))
        #expect(minusZero["type"] as? String == "real")
        #expect(minusZero["bits"] as? String == "8000000000000000")
        #expect(try Self.json(.real(0.0))["bits"] as? String == "0000000000000000")
        #expect(try Self.json(.real(1.0))["bits"] as? String == "3ff0000000000000")
        #expect(try Self.json(.real(Double.leastNonzeroMagnitude))["bits"] as? String == "0000000000000001")
        // The readable value is there for finite reals only.
        #expect(try Self.json(.real(1.5))["value"] as? Double == 1.5)
        #expect(try Self.json(.real(.infinity))["value"] == nil)
        #expect(try Self.json(.real(.nan))["value"] == nil)
        // The bits decide, not the readable value.
        let v = try Self.decode(#"{"type":"real","bits":"8000000000000000","value":0}"#)
        guard case .real(let d) = v else {
            Issue.record("not a real: \(v)")
            return
        }
        #expect(d.bitPattern == 0x8000_0000_0000_0000)
        #expect(try Self.decode(#"{"type":"real","bits":"7FF0000000000000"}"#) == .real(.infinity))
    }

    @Test func textAndBlobs() throws {
        #expect(try Self.json(.text("007"))["value"] as? String == "007")
        #expect(try Self.json(.text(""))["value"] as? String == "")
        #expect(try Self.json(.blob([0x00, 0xAB, 0xFF]))["hex"] as? String == "00abff")
        #expect(try Self.json(.blob([]))["hex"] as? String == "")
        #expect(try Self.decode(#"{"type":"blob","hex":"00ABff"}"#) == .blob([0, 0xAB, 0xFF]))
        #expect(try Self.decode(#"{"type":"text","value":"007"}"#) == .text("007"))
        #expect(try Self.decode(#"{"type":"null"}"#) == .null)
        #expect(try Self.json(.null).keys.sorted() == ["type"])
    }

    @Test(
        "Malformed JSON values are refused",
        arguments: [
            #"{"type":"integer","value":"9223372036854775808"}"#,
            #"{"type":"integer","value":"1.0"}"#,
            #"{"type":"integer","value":" 1"}"#,
            #"{"type":"integer","value":7}"#,
            #"{"type":"real","bits":"xyz"}"#,
            #"{"type":"real","bits":"10000000000000000"}"#,
            #"{"type":"blob","hex":"abc"}"#,
            #"{"type":"blob","hex":"zz"}"#,
            #"{"type":"date","value":"2024"}"#,
            #"{"value":"1"}"#,
        ])
    func malformedJSONValuesAreRefused(_ text: String) {
        #expect(throws: (any Error).self) { try Self.decode(text) }
    }

    @Test func realsCompareByBitPattern() {
        #expect(SQLValue.real(0.0) != .real(-0.0))
        #expect(SQLValue.real(.nan) == .real(.nan))
        #expect(SQLValue.integer(1) != .real(1))
        #expect(SQLValue.text("1") != .integer(1))
        #expect(SQLValue.text("é") != .text("e\u{301}"))
        #expect(Set<SQLValue>([.real(0.0), .real(-0.0), .text("é"), .text("e\u{301}")]).count == 4)
    }

    @Test func hexRoundTrips() {
        var g = SplitMix64(seed: 11)
        for n in 0..<64 {
            let b = g.bytes(n)
            #expect([UInt8](hex: b.hexString) == b)
            #expect(b.hexString.count == 2 * n)
        }
    }
}
