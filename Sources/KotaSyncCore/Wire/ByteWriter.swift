/// Appends the primitive encodings of the KotaSync wire format to a byte buffer.
///
/// Every multi-byte fixed-width integer is big-endian; variable-length integers are unsigned
/// LEB128 (the protobuf varint); signed integers are zigzag-mapped first. `Protocol/changeset.md`
/// is the normative description.
package struct ByteWriter: Sendable {
    package private(set) var bytes: [UInt8]

    package init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    package mutating func writeUInt8(_ v: UInt8) { bytes.append(v) }

    package mutating func writeUInt16(_ v: UInt16) {
        bytes.append(UInt8(truncatingIfNeeded: v >> 8))
        bytes.append(UInt8(truncatingIfNeeded: v))
    }

    package mutating func writeUInt32(_ v: UInt32) {
        for shift in stride(from: 24, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: v >> UInt32(shift)))
        }
    }

    package mutating func writeUInt64(_ v: UInt64) {
        for shift in stride(from: 56, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: v >> UInt64(shift)))
        }
    }

    package mutating func writeVarint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    package mutating func writeZigzag(_ v: Int64) {
        writeVarint(UInt64(bitPattern: (v << 1) ^ (v >> 63)))
    }

    package mutating func writeBytes<C: Collection>(_ c: C) where C.Element == UInt8 { bytes.append(contentsOf: c) }

    package mutating func writeString(_ s: String) {
        var s = s
        s.withUTF8 { utf8 in
            writeVarint(UInt64(utf8.count))
            bytes.append(contentsOf: utf8)
        }
    }

    /// Writes a value as its one-byte storage-class tag followed by its body.
    package mutating func writeValue(_ value: SQLValue) {
        switch value {
        case .null:
            writeUInt8(ValueTag.null)
        case .integer(let v):
            writeUInt8(ValueTag.integer)
            writeZigzag(v)
        case .real(let v):
            writeUInt8(ValueTag.real)
            writeUInt64(v.bitPattern)
        case .text(let v):
            writeUInt8(ValueTag.text)
            writeString(v)
        case .blob(let v):
            writeUInt8(ValueTag.blob)
            writeVarint(UInt64(v.count))
            writeBytes(v)
        }
    }

    package mutating func overwriteUInt32(_ v: UInt32, at offset: Int) {
        for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: v >> UInt32(24 - 8 * i)) }
    }
}

/// Storage-class tags of encoded values.
package enum ValueTag {
    package static let null: UInt8 = 0
    package static let integer: UInt8 = 1
    package static let real: UInt8 = 2
    package static let text: UInt8 = 3
    package static let blob: UInt8 = 4
}
