// The libFuzzer target for everything the server parses from a request body: the changeset
// decoder, the schema check of a push, and the JSON the HTTP API reads. Built by `.ci/fuzz` with
// plain swiftc, not by SwiftPM (no target names this folder). See Tests/Fuzz/README.md.
//
// Every input goes down four paths, so that one corpus drives them all:
// 1. the bytes as a whole changeset, as `POST /v1/push` receives them;
// 2. the same bytes with their lengths and CRC-32 made right, so that mutations reach zlib and
//    the payload instead of stopping at the checksum;
// 3. the bytes as an uncompressed payload in a correct envelope (push and pull), so that the
//    payload reader and the schema check see every mutation;
// 4. the bytes as the JSON body of `POST /v1/review/conflicts/{id}/resolve`, and of
//    `POST /v1/uploads` (the announcement, with its range checks);
// 5. the bytes as a query string or a dashboard form (`Form`), every field of it parsed as each
//    kind of number the HTTP API and the dashboard take (`IntegerField`: cursors, page sizes,
//    the data browser's page, a token's days), and the whole input as one such number.
// A decode must succeed or throw a `SyncError` with a code the path allows; anything else (a trap,
// an ASan report, a leak, a code outside the list, an allocation larger than the limits allow)
// is a finding.

import Foundation
import KotaSyncCore
import Synchronization

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    ChangesetFuzz.run(bytes)
    return 0
}

enum ChangesetFuzz {
    /// The sample server's limits (`samples/binjai/kotasync.yaml`).
    static let serverLimits = DecodeLimits(maxUncompressedBytes: 64 << 20, maxCompressionRatio: 1000, maxRows: 200_000)
    /// Small enough that fuzzer-sized inputs reach every limit.
    static let tightLimits = DecodeLimits(maxUncompressedBytes: 4096, maxCompressionRatio: 50, maxRows: 40)
    /// For re-decoding what the encoder wrote: the encoder may compress better than the input did.
    static let roomyLimits = DecodeLimits(maxUncompressedBytes: 1 << 30, maxCompressionRatio: 1 << 30, maxRows: 1 << 30)

    static let headerCodes: Set<SyncError.Code> = [
        .unsupportedVersion, .changesetTruncated, .changesetMalformed, .changesetTooLarge, .changesetCorrupt,
    ]
    static let payloadCodes: Set<SyncError.Code> = [.changesetMalformed, .changesetTooLarge]
    static let schemaCodes: Set<SyncError.Code> = [
        .changesetMalformed, .unknownTable, .invalidPrimaryKey, .unknownColumn, .typeMismatch,
    ]

    static func run(_ bytes: [UInt8]) {
        AllocationWatch.installOnce()

        decodeAndValidate(bytes, limits: serverLimits, allowed: headerCodes)
        if bytes.count < ChangesetHeader.size {
            expectShortInputRefused(bytes)
        } else {
            decodeAndValidate(resealed(bytes), limits: tightLimits, allowed: headerCodes)
        }
        for kind in [Changeset.Kind.push, .pull] {
            decodeAndValidate(envelope(payload: bytes, kind: kind), limits: tightLimits, allowed: payloadCodes)
        }
        decodeResolveRequest(bytes)
        checkUploadAnnouncement(bytes)
        parseParameters(bytes)
    }

    // MARK: Changesets

    static func decodeAndValidate(_ bytes: [UInt8], limits: DecodeLimits, allowed: Set<SyncError.Code>) {
        let changeset: Changeset
        do {
            changeset = try AllocationWatch.bounded(by: allocationBound(bytes, limits)) {
                () throws(SyncError) -> Changeset in
                try ChangesetCodec.decode(bytes, limits: limits)
            }
        } catch {
            expect(error, in: allowed, "decode")
            expectStreamAgrees(bytes, limits: limits, .failure(error))
            return
        }
        expectStreamAgrees(bytes, limits: limits, .success(changeset))
        checkDecoded(changeset, limits: limits)
        do {
            let validated = try ChangesetValidator.validate(changeset, against: SampleSchema.tables)
            for row in changeset.rows {
                let (columns, values, _) = validated.schemaColumns(of: row)
                let table = validated.tables[row.table]
                guard columns.allSatisfy({ $0 < table.columns.count && values[$0] != nil }) else {
                    fatalError("A validated row maps to a column its table does not have: \(row)")
                }
            }
        } catch {
            expect(error, in: schemaCodes, "validate")
        }
    }

    /// The streaming decoder, which the server merges pushes with, must reach the whole decoder's
    /// verdict: the same rows, or the same error (code and message). A small window makes it
    /// refill and retry often.
    static func expectStreamAgrees(_ bytes: [UInt8], limits: DecodeLimits, _ whole: Result<Changeset, SyncError>) {
        let streamed = Result { () throws(SyncError) -> Changeset in
            var stream = try ChangesetStream(bytes, limits: limits, window: 32)
            var changeset = stream.withoutRows
            while let row = try stream.next() { changeset.rows.append(row) }
            return changeset
        }
        guard streamed == whole else {
            fatalError("The stream decodes \(streamed); the whole decoder \(whole).")
        }
    }

    /// The largest single allocation a decode of `bytes` may make: the inflated payload, which the
    /// limits bound before anything is inflated, a few times over for the decoded rows, and a
    /// constant for the fixed-size reservations (a dictionary of up to 10,000 tables).
    static func allocationBound(_ bytes: [UInt8], _ limits: DecodeLimits) -> Int {
        let body = max(bytes.count - ChangesetHeader.size, 1)
        let (ratioBound, overflow) = body.multipliedReportingOverflow(by: limits.maxCompressionRatio)
        let payload = min(limits.maxUncompressedBytes, overflow ? Int.max : ratioBound)
        return (1 << 20) + 16 * payload
    }

    /// What every decoded changeset must satisfy, whatever the input was.
    static func checkDecoded(_ changeset: Changeset, limits: DecodeLimits) {
        guard changeset.rows.count <= limits.maxRows else {
            fatalError("Decoded \(changeset.rows.count) rows; the limit is \(limits.maxRows).")
        }
        for row in changeset.rows {
            guard row.table >= 0, row.table < changeset.tables.count else { fatalError("Row table out of range") }
            let table = changeset.tables[row.table]
            guard row.primaryKey.count == table.primaryKey.count,
                row.columns.allSatisfy({ $0.column >= 0 && $0.column < table.columns.count }),
                Set(row.columns.map(\.column)).count == row.columns.count,
                row.operation != .delete || row.columns.isEmpty,
                changeset.kind == .push || row.operation != .update
            else { fatalError("Decoded a row the format does not allow: \(row)") }
            for value in row.primaryKey + row.columns.map(\.value) {
                if case .real(let v) = value, v.isNaN { fatalError("Decoded a NaN") }
            }
        }
        // What the encoder writes from a decoded changeset decodes to the same changeset.
        let again: Changeset
        do {
            again = try ChangesetCodec.decode(ChangesetCodec.encode(changeset), limits: roomyLimits)
        } catch {
            fatalError("The encoding of a decoded changeset does not decode: \(error)")
        }
        guard again == changeset else { fatalError("Round trip changed the changeset: \(changeset) → \(again)") }
    }

    /// Inputs shorter than the envelope are refused by the first step of `Protocol/changeset.md` §4.
    static func expectShortInputRefused(_ bytes: [UInt8]) {
        do {
            _ = try ChangesetCodec.decode(bytes, limits: serverLimits)
            fatalError("Decoded \(bytes.count) bytes, shorter than the envelope")
        } catch {
            expect(error, in: [.unsupportedVersion, .changesetTruncated], "short input")
        }
    }

    /// `bytes` with `compressed_length` and the CRC-32 made to fit its body.
    static func resealed(_ bytes: [UInt8]) -> [UInt8] {
        var w = ByteWriter(capacity: bytes.count)
        w.writeBytes(bytes[0..<60])
        w.writeUInt32(UInt32(truncatingIfNeeded: bytes.count - ChangesetHeader.size))
        w.writeUInt32(0)
        w.writeBytes(bytes[ChangesetHeader.size...])
        var sealed = w.bytes
        let crc = Zlib.crc32(sealed[ChangesetHeader.size...], initial: Zlib.crc32(sealed[0..<64]))
        w = ByteWriter(capacity: 4)
        w.writeUInt32(crc)
        sealed.replaceSubrange(64..<68, with: w.bytes)
        return sealed
    }

    /// A correct envelope around `payload`, compressed at the fastest level.
    static func envelope(payload: [UInt8], kind: Changeset.Kind) -> [UInt8] {
        let compressed = Zlib.compress(payload, level: 1)
        var w = ByteWriter(capacity: ChangesetHeader.size + compressed.count)
        w.writeBytes(ChangesetHeader.magic)
        w.writeUInt8(ChangesetHeader.formatVersion)
        w.writeUInt8(kind.rawValue)
        w.writeUInt16(0)
        w.writeBytes(SampleSchema.changesetID.bytes)
        w.writeBytes(kind == .push ? SampleSchema.replicaID.bytes : UUID.zero.bytes)
        w.writeUInt64(1)
        w.writeUInt64(2)
        w.writeUInt32(UInt32(truncatingIfNeeded: payload.count))
        w.writeUInt32(UInt32(compressed.count))
        w.writeUInt32(Zlib.crc32(compressed, initial: Zlib.crc32(w.bytes)))
        w.writeBytes(compressed)
        return w.bytes
    }

    // MARK: JSON

    /// The review API's body: it answers `bad_request` for anything JSONDecoder throws.
    static func decodeResolveRequest(_ bytes: [UInt8]) {
        let decoded: ResolveRequest
        do {
            decoded = try ProtocolJSON.decoder().decode(ResolveRequest.self, from: Data(bytes))
        } catch {
            return
        }
        let again: ResolveRequest
        do {
            again = try ProtocolJSON.decoder().decode(
                ResolveRequest.self, from: try ProtocolJSON.encoder().encode(decoded))
        } catch {
            fatalError("The encoding of a decoded ResolveRequest does not decode: \(error)")
        }
        guard again == decoded else { fatalError("JSON round trip changed \(decoded) into \(again)") }
    }

    /// `POST /v1/uploads`: an announcement is accepted only within its ranges, and anything
    /// else is refused with `bad_request` (or `body_too_large` for a length above the limit).
    static func checkUploadAnnouncement(_ bytes: [UInt8]) {
        let maxLength = 16 << 20
        do {
            let announced = try UploadRequest.checked(json: Data(bytes), maxLength: maxLength)
            guard (1...maxLength).contains(announced.length), announced.sha256.utf8.count == 64,
                announced.sha256.utf8.allSatisfy(\.isHexDigit)
            else { fatalError("Accepted an announcement outside its ranges: \(announced)") }
        } catch {
            expect(error, in: [.badRequest, .bodyTooLarge], "upload announcement")
        }
    }

    // MARK: Query parameters and forms

    /// The numbers the HTTP API and the dashboard take as text, with their ranges.
    static let fields = [
        IntegerField("after", IntegerField.cursorRange), IntegerField("limit", 1...10_000, above: .lowered),
        IntegerField("page", 0...Int64(Int32.max)), IntegerField("expires_days", 1...36_500),
        IntegerField("Upload-Offset", 0...(16 << 20)),
    ]

    /// Every field of the input read as a form (and a query string: the same syntax), and the
    /// whole input, parsed as each kind of number: a value in the field's range (the maximum
    /// for a lowered one), or `bad_request` with a message; never a trap.
    static func parseParameters(_ bytes: [UInt8]) {
        let text = String(decoding: bytes, as: UTF8.self)
        let form = Form(text)
        for value in [text] + form.fields.keys.sorted().compactMap({ form[$0] }) {
            for field in fields {
                do {
                    let parsed = try field.parse(value)
                    guard field.range.contains(parsed) else {
                        fatalError(
                            "\(field.name) parsed \(value.debugDescription) as \(parsed), outside \(field.range)")
                    }
                    // What is accepted as itself is the number the text says.
                    if parsed != field.range.upperBound || field.above == .refused {
                        guard Int64(value) == parsed else {
                            fatalError("\(field.name) parsed \(value.debugDescription) as \(parsed)")
                        }
                    }
                } catch {
                    expect(error, in: [.badRequest], "\(field.name) parameter")
                }
            }
        }
    }

    static func expect(_ error: SyncError, in allowed: Set<SyncError.Code>, _ step: String) {
        guard allowed.contains(error.code), !error.message.isEmpty else {
            fatalError("\(step) threw \(error.code), which is not one of \(allowed.map(\.rawValue).sorted())")
        }
    }
}

/// The replicated tables of `samples/binjai/kotasync.yaml`, as the server derives them from the
/// DDL. The validator reads only names and declared types, so the DDL text is left out.
enum SampleSchema {
    static let changesetID = UUID(uuidString: "e5f6a7b8-c9d0-4e1f-8a2b-3c4d5e6f7a8b")!
    static let replicaID = UUID(uuidString: "5f0c6b9e-2d4a-4c39-9a51-7be1d0c3a2f4")!

    static let tables: [TableSchema] = [
        table("villages", key: [("code", "TEXT", false)], [("name", "TEXT", true), ("district", "TEXT", true)]),
        table(
            "patients", key: [("id", "TEXT", false)],
            [
                ("nik", "TEXT", false), ("name", "TEXT", true), ("birth_date", "TEXT", false),
                ("sex", "TEXT", false), ("village_code", "TEXT", false), ("phone", "TEXT", false),
                ("clinic_id", "TEXT", true), ("updated_at", "TEXT", false),
            ]),
        table(
            "visits", key: [("id", "TEXT", false)],
            [
                ("patient_id", "TEXT", true), ("clinic_id", "TEXT", true), ("visit_date", "TEXT", true),
                ("complaint", "TEXT", false), ("weight_kg", "REAL", false), ("systolic", "INTEGER", false),
                ("diastolic", "INTEGER", false), ("notes", "TEXT", false),
            ]),
        table(
            "diagnoses", key: [("visit_id", "TEXT", true), ("line", "INTEGER", true)],
            [("clinic_id", "TEXT", true), ("icd10", "TEXT", true), ("description", "TEXT", false)]),
        table(
            "drug_stock", key: [("clinic_id", "TEXT", true), ("drug_code", "TEXT", true)],
            [("quantity", "INTEGER", true), ("updated_at", "TEXT", false)]),
    ]

    private static func table(
        _ name: String, key: [(String, String, Bool)], _ columns: [(String, String, Bool)]
    ) -> TableSchema {
        TableSchema(
            name: name, ddl: "",
            primaryKey: key.map { ColumnSchema(name: $0.0, declaredType: $0.1, notNull: $0.2) },
            columns: columns.map { ColumnSchema(name: $0.0, declaredType: $0.1, notNull: $0.2) })
    }
}

/// Records the largest single allocation made while a decode runs, through the sanitizer's
/// malloc hook, so that a size taken from the input and allocated before the limits were checked
/// is caught even when it would fit in memory.
enum AllocationWatch {
    // Atomics, so that the optimiser cannot assume an allocation leaves them unchanged.
    static let watching = Atomic<Bool>(false)
    static let largest = Atomic<Int>(0)
    nonisolated(unsafe) static var installed = false

    static func installOnce() {
        guard !installed else { return }
        installed = true
        // Touch the globals first so the hook never runs their lazy initialisation.
        watching.store(false, ordering: .relaxed)
        largest.store(0, ordering: .relaxed)
        let status = installMallocHooks(
            { _, size in
                guard AllocationWatch.watching.load(ordering: .relaxed) else { return }
                AllocationWatch.largest.max(size)
            },
            // The sanitizer installs neither hook unless both are given.
            { _ in })
        // A hook that never runs would pass every input: check that it sees an allocation.
        watching.store(true, ordering: .relaxed)
        let probe = UnsafeMutableRawPointer.allocate(byteCount: 12345, alignment: 16)
        watching.store(false, ordering: .relaxed)
        probe.deallocate()
        guard largest.load(ordering: .relaxed) == 12345 else {
            fatalError("The sanitizer's malloc hook is not installed (status \(status)).")
        }
    }

    static func bounded<T>(by bound: Int, _ body: () throws(SyncError) -> T) throws(SyncError) -> T {
        largest.store(0, ordering: .relaxed)
        watching.store(true, ordering: .relaxed)
        defer {
            watching.store(false, ordering: .relaxed)
            let seen = largest.load(ordering: .relaxed)
            if seen > bound {
                fatalError("A decode allocated \(seen) bytes at once; its limits allow at most \(bound).")
            }
        }
        return try body()
    }
}

extension Atomic where Value == Int {
    /// Raises the value to `candidate` if it is smaller.
    func max(_ candidate: Int) {
        var current = load(ordering: .relaxed)
        while candidate > current {
            let (exchanged, original) = compareExchange(
                expected: current, desired: candidate, ordering: .relaxed)
            if exchanged { return }
            current = original
        }
    }
}

@_silgen_name("__sanitizer_install_malloc_and_free_hooks")
private func installMallocHooks(
    _ malloc: @convention(c) (UnsafeRawPointer?, Int) -> Void,
    _ free: @convention(c) (UnsafeRawPointer?) -> Void
) -> CInt
