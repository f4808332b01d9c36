/// Values in JSON, as the protocol's JSON bodies and the test vectors write them.
///
/// A value is an object with a `type` (its storage class) and the value in a form JSON carries
/// exactly: integers as decimal strings (JSON numbers lose 64-bit precision in many languages),
/// reals as the hex of their IEEE-754 bits (plus a readable `value`), text as a string, blobs as
/// hex. Example: `{"type":"integer","value":"9223372036854775807"}`.
extension SQLValue: Codable {
    private enum Keys: String, CodingKey { case type, value, bits, hex }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        let type = try c.decode(StorageClass.self, forKey: .type)
        switch type {
        case .null: self = .null
        case .integer:
            let s = try c.decode(String.self, forKey: .value)
            guard let v = Int64(s) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .value, in: c, debugDescription: "not a 64-bit integer: \(s)")
            }
            self = .integer(v)
        case .real:
            let s = try c.decode(String.self, forKey: .bits)
            guard let bits = UInt64(s, radix: 16) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .bits, in: c, debugDescription: "not 16 hex digits: \(s)")
            }
            self = .real(Double(bitPattern: bits))
        case .text: self = .text(try c.decode(String.self, forKey: .value))
        case .blob:
            let s = try c.decode(String.self, forKey: .hex)
            guard let bytes = [UInt8](hex: s) else {
                throw DecodingError.dataCorruptedError(forKey: .hex, in: c, debugDescription: "not hex: \(s)")
            }
            self = .blob(bytes)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(storageClass, forKey: .type)
        switch self {
        case .null: break
        case .integer(let v): try c.encode(String(v), forKey: .value)
        case .real(let v):
            let hex = String(v.bitPattern, radix: 16)
            try c.encode(String(repeating: "0", count: 16 - hex.count) + hex, forKey: .bits)
            if v.isFinite { try c.encode(v, forKey: .value) }
        case .text(let v): try c.encode(v, forKey: .value)
        case .blob(let v): try c.encode(v.hexString, forKey: .hex)
        }
    }
}

extension [UInt8] {
    /// Lower-case hex digits, two per byte.
    package var hexString: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(count * 2)
        for b in self {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    package init?(hex: String) {
        let chars = Array(hex.utf8)
        guard chars.count % 2 == 0 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(chars.count / 2)
        var i = 0
        while i < chars.count {
            guard let hi = nibble(chars[i]), let lo = nibble(chars[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        self = out
    }
}
