import Foundation
import Synchronization
import Testing

@testable import KotaSyncCore
@testable import KotaSyncServer

/// Chunked uploads on disk: offsets, checks, restarts and expiry, without HTTP.
struct UploadStoreTests {
    /// A clock the test moves by hand.
    final class TestClock: Sendable {
        let now = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
        func advance(_ seconds: TimeInterval) { now.withLock { $0 += seconds } }
    }

    static func store(_ dir: URL, clock: TestClock, expiry: Int = 3600) throws -> UploadStore {
        try UploadStore(directory: dir, maxChunkBytes: 1024, expirySeconds: expiry, now: { clock.now.withLock { $0 } })
    }

    static func directory(_ name: String = #function) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent(
            "kotasync-uploads-\(name.filter(\.isLetter))-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    static let bytes: [UInt8] = (0..<2500).map { UInt8(truncatingIfNeeded: $0 &* 7) }
    static let request = UploadRequest(
        changesetId: UUID(), length: bytes.count, sha256: UploadStore.sha256Hex(bytes))

    func send(_ store: UploadStore, _ id: String, _ range: Range<Int>) async throws -> UploadStatus {
        let chunk = Array(Self.bytes[range])
        return try await store.append(
            id: id, opd: "pkm-a", offset: range.lowerBound, chunk: chunk, sha256: UploadStore.sha256Hex(chunk))
    }

    @Test func chunksAssembleIntoTheAnnouncedBytes() async throws {
        let store = try Self.store(try Self.directory(), clock: TestClock())
        let (status, created) = try await store.create(Self.request, opd: "pkm-a")
        #expect(created && status.offset == 0 && status.maxChunkBytes == 1024)
        _ = try await send(store, status.id, 0..<1000)
        _ = try await send(store, status.id, 1000..<2000)
        let last = try await send(store, status.id, 2000..<2500)
        #expect(last.offset == 2500)
        guard case .complete(let assembled) = try await store.assemble(id: status.id, opd: "pkm-a") else {
            Issue.record("not complete")
            return
        }
        #expect(try Self.read(assembled) == Self.bytes)
    }

    /// Every byte of an assembled upload.
    static func read(_ file: UploadedChangeset) throws -> [UInt8] {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: file.count, alignment: 1)
        defer { buffer.deallocate() }
        let n = try file.copyBytes(from: 0, into: buffer)
        return Array(buffer[..<n])
    }

    @Test func announcingTheSameChangesetAgainReturnsTheUploadWithItsOffset() async throws {
        let store = try Self.store(try Self.directory(), clock: TestClock())
        let first = try await store.create(Self.request, opd: "pkm-a").status
        _ = try await send(store, first.id, 0..<1000)
        let again = try await store.create(Self.request, opd: "pkm-a")
        #expect(!again.created && again.status.id == first.id && again.status.offset == 1000)
        let otherOPD = try await store.create(Self.request, opd: "pkm-b")
        #expect(otherOPD.created && otherOPD.status.id != first.id)
    }

    @Test func aChunkAtTheWrongOffsetIsRefusedWithTheServersOffset() async throws {
        let store = try Self.store(try Self.directory(), clock: TestClock())
        let id = try await store.create(Self.request, opd: "pkm-a").status.id
        _ = try await send(store, id, 0..<1000)
        // The same chunk again (a duplicated request, or a lost acknowledgement).
        await #expect { _ = try await send(store, id, 0..<1000) } throws: { ($0 as? OffsetMismatch)?.offset == 1000 }
        await #expect { _ = try await send(store, id, 1500..<2000) } throws: { ($0 as? OffsetMismatch)?.offset == 1000 }
        #expect(try await store.status(id: id, opd: "pkm-a").offset == 1000)
    }

    @Test func aDamagedChunkIsRefusedAndNothingOfItIsKept() async throws {
        let store = try Self.store(try Self.directory(), clock: TestClock())
        let id = try await store.create(Self.request, opd: "pkm-a").status.id
        var damaged = Array(Self.bytes[0..<1000])
        let sha = UploadStore.sha256Hex(damaged)
        damaged[500] ^= 0xFF
        await #expect {
            _ = try await store.append(id: id, opd: "pkm-a", offset: 0, chunk: damaged, sha256: sha)
        } throws: { ($0 as? SyncError)?.code == .chunkCorrupt }
        #expect(try await store.status(id: id, opd: "pkm-a").offset == 0)
    }

    @Test func anAssembledChangesetThatDoesNotMatchItsHashIsDiscarded() async throws {
        let store = try Self.store(try Self.directory(), clock: TestClock())
        var request = Self.request
        request.sha256 = String(repeating: "0", count: 64)
        let id = try await store.create(request, opd: "pkm-a").status.id
        _ = try await send(store, id, 0..<1000)
        _ = try await send(store, id, 1000..<2000)
        _ = try await send(store, id, 2000..<2500)
        await #expect { _ = try await store.assemble(id: id, opd: "pkm-a") } throws: {
            ($0 as? SyncError)?.code == .uploadCorrupt
        }
        await #expect { _ = try await store.status(id: id, opd: "pkm-a") } throws: {
            ($0 as? SyncError)?.code == .uploadNotFound
        }
    }

    @Test func anIncompleteUploadCannotBeCommitted() async throws {
        let store = try Self.store(try Self.directory(), clock: TestClock())
        let id = try await store.create(Self.request, opd: "pkm-a").status.id
        _ = try await send(store, id, 0..<1000)
        await #expect { _ = try await store.assemble(id: id, opd: "pkm-a") } throws: {
            ($0 as? OffsetMismatch).map { $0.incomplete && $0.offset == 1000 } == true
        }
    }

    @Test func anotherOPDCannotSeeOrExtendTheUpload() async throws {
        let store = try Self.store(try Self.directory(), clock: TestClock())
        let id = try await store.create(Self.request, opd: "pkm-a").status.id
        await #expect { _ = try await store.status(id: id, opd: "pkm-b") } throws: {
            ($0 as? SyncError)?.code == .uploadNotFound
        }
        await #expect { _ = try await store.status(id: "../../etc/passwd", opd: "pkm-a") } throws: {
            ($0 as? SyncError)?.code == .uploadNotFound
        }
    }

    @Test func aPartialUploadSurvivesARestartOfTheServer() async throws {
        let dir = try Self.directory()
        let clock = TestClock()
        let id = try await Self.store(dir, clock: clock).create(Self.request, opd: "pkm-a").status.id
        _ = try await send(try Self.store(dir, clock: clock), id, 0..<1000)
        let restarted = try Self.store(dir, clock: clock)
        #expect(try await restarted.status(id: id, opd: "pkm-a").offset == 1000)
        _ = try await send(restarted, id, 1000..<2500)
        guard case .complete(let assembled) = try await restarted.assemble(id: id, opd: "pkm-a") else {
            Issue.record("not complete")
            return
        }
        #expect(try Self.read(assembled) == Self.bytes)
    }

    @Test func bytesPastTheAcknowledgedOffsetAreCutOffBeforeTheNextChunk() async throws {
        let dir = try Self.directory()
        let store = try Self.store(dir, clock: TestClock())
        let id = try await store.create(Self.request, opd: "pkm-a").status.id
        _ = try await send(store, id, 0..<1000)
        // A crash after writing part of a chunk, before its offset was stored.
        let handle = try FileHandle(forWritingTo: dir.appendingPathComponent("\(id).part"))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(repeating: 0xEE, count: 300))
        try handle.close()
        _ = try await send(store, id, 1000..<2000)
        _ = try await send(store, id, 2000..<2500)
        guard case .complete(let assembled) = try await store.assemble(id: id, opd: "pkm-a") else {
            Issue.record("not complete")
            return
        }
        #expect(try Self.read(assembled) == Self.bytes)
    }

    @Test func anAbandonedUploadIsDiscardedAfterTheExpiry() async throws {
        let dir = try Self.directory()
        let clock = TestClock()
        let store = try Self.store(dir, clock: clock, expiry: 600)
        let kept = try await store.create(Self.request, opd: "pkm-a").status.id
        var other = Self.request
        other.changesetId = UUID()
        let abandoned = try await store.create(other, opd: "pkm-a").status.id
        _ = try await send(store, abandoned, 0..<1000)
        clock.advance(400)
        _ = try await send(store, kept, 0..<1000)
        clock.advance(400)
        // 800 s since the abandoned upload's last chunk, 400 s since the kept one's.
        await #expect { _ = try await store.status(id: abandoned, opd: "pkm-a") } throws: {
            ($0 as? SyncError)?.code == .uploadNotFound
        }
        try await store.sweep()
        #expect(try await store.uploadIDs() == [kept])
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("\(abandoned).part").path))
        clock.advance(601)
        try await store.sweep()
        #expect(try await store.uploadIDs().isEmpty)
    }

    @Test func aCommittedUploadKeepsItsReplyAndNotItsBytes() async throws {
        let dir = try Self.directory()
        let store = try Self.store(dir, clock: TestClock())
        let id = try await store.create(Self.request, opd: "pkm-a").status.id
        _ = try await send(store, id, 0..<1000)
        _ = try await send(store, id, 1000..<2000)
        _ = try await send(store, id, 2000..<2500)
        try await store.committed(id: id, reply: Data("{\"applied\":1}".utf8))
        guard case .committed(let reply) = try await store.assemble(id: id, opd: "pkm-a") else {
            Issue.record("not committed")
            return
        }
        #expect(String(decoding: reply, as: UTF8.self) == "{\"applied\":1}")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("\(id).part").path))
        let status = try await store.status(id: id, opd: "pkm-a")
        #expect(status.committed && status.offset == 2500)
    }

    @Test func theConfigReadsTheUploadLimits() throws {
        let yaml = """
            tables:
              - name: notes
                ddl: CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT)
            limits:
              max_chunk_bytes: 65536
              upload_expiry_seconds: 120
            """
        let config = try ServerConfig.parse(yaml: yaml, baseURL: URL(fileURLWithPath: "/"))
        #expect(config.limits.maxChunkBytes == 65536)
        #expect(config.limits.uploadExpirySeconds == 120)
        #expect(throws: ConfigError.self) {
            _ = try ServerConfig.parse(
                yaml: yaml.replacingOccurrences(of: "120", with: "0"), baseURL: URL(fileURLWithPath: "/"))
        }
    }
}
