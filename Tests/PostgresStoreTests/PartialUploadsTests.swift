import Foundation
import KotaSyncCore
import KotaSyncTesting
import Synchronization
import Testing

@testable import KotaSyncServer

/// The promises of ``PartialUploads`` (offsets, checks, limits, expiry, commits), held by both
/// the file-based uploads beside a SQLite master and the uploads in a PostgreSQL master — the
/// cases of `UploadStoreTests`, run on both — and, on PostgreSQL, across servers: an upload
/// started through one server is resumed and committed through another.
@Suite("Partial uploads on both backends", .postgres)
struct PartialUploadsTests {
    enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case files, postgres
        var testDescription: String { rawValue }
    }

    /// A clock the test moves by hand.
    final class TestClock: Sendable {
        let now = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
        func advance(_ seconds: TimeInterval) { now.withLock { $0 += seconds } }
    }

    struct Limits {
        var expiry = 3600
        var perToken = 4
        var inAll = 64
    }

    /// Runs `body` with `count` uploads stores on one place (one directory, or `count` servers on
    /// one PostgreSQL master), with a 1024-byte chunk size.
    static func withUploads(
        _ backend: Backend, count: Int = 1, clock: TestClock = TestClock(), limits: Limits = Limits(),
        _ body: ([any TestableUploads]) async throws -> Void
    ) async throws {
        let now: @Sendable () -> Date = { clock.now.withLock { $0 } }
        switch backend {
        case .files:
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
                "kotasync-partial-\(UUID().uuidString.prefix(8))")
            let stores = try (0..<count).map { _ in
                try UploadStore(
                    directory: dir, maxChunkBytes: 1024, expirySeconds: limits.expiry,
                    maxPartialPerToken: limits.perToken, maxPartial: limits.inAll, now: now)
            }
            try await body(stores)
        case .postgres:
            try await withStores(count) { stores in
                try await body(
                    stores.map {
                        PostgresUploads(
                            master: $0.master, maxChunkBytes: 1024, expirySeconds: limits.expiry,
                            maxPartialPerToken: limits.perToken, maxPartial: limits.inAll, now: now)
                    })
            }
        }
    }

    static let bytes: [UInt8] = (0..<2500).map { UInt8(truncatingIfNeeded: $0 &* 7) }
    static let request = UploadRequest(changesetId: UUID(), length: bytes.count, sha256: UploadStore.sha256Hex(bytes))

    func send(_ store: any PartialUploads, _ id: String, _ range: Range<Int>, signed: Bool = true) async throws
        -> UploadStatus
    {
        let chunk = Array(Self.bytes[range])
        return try await store.append(
            id: id, opd: "pkm-a", offset: range.lowerBound, chunk: chunk,
            sha256: signed ? UploadStore.sha256Hex(chunk) : nil)
    }

    /// Every byte of a complete upload as its commit reads it; nil when it is not complete.
    static func assembledBytes(_ store: any PartialUploads, _ id: String) async throws -> [UInt8]? {
        guard case .complete(let bytes) = try await store.assembled(id: id, opd: "pkm-a") else { return nil }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.source.count + 10, alignment: 1)
        defer { buffer.deallocate() }
        var out: [UInt8] = []
        // A piece at a time, as the push reads it.
        while out.count < bytes.source.count {
            let n = try bytes.source.copyBytes(
                from: out.count, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<700]))
            guard n > 0 else { break }
            out += buffer[0..<n]
        }
        return out
    }

    @Test(arguments: Backend.allCases)
    func chunksAssembleIntoTheAnnouncedBytes(_ backend: Backend) async throws {
        try await Self.withUploads(backend) { stores in
            let store = stores[0]
            let (status, created) = try await store.create(Self.request, opd: "pkm-a", token: "t1")
            #expect(created && status.offset == 0 && status.maxChunkBytes == 1024 && !status.committed)
            _ = try await send(store, status.id, 0..<1000)
            _ = try await send(store, status.id, 1000..<2000)
            let last = try await send(store, status.id, 2000..<2500)
            #expect(last.offset == 2500)
            #expect(try await Self.assembledBytes(store, status.id) == Self.bytes)
        }
    }

    @Test(arguments: Backend.allCases)
    func streamedChunksAreKeptAndTheWholeIsChecked(_ backend: Backend) async throws {
        try await Self.withUploads(backend) { stores in
            let store = stores[0]
            let id = try await store.create(Self.request, opd: "pkm-a", token: "t1").status.id
            _ = try await send(store, id, 0..<700, signed: false)
            _ = try await send(store, id, 700..<2500, signed: false)
            #expect(try await Self.assembledBytes(store, id) == Self.bytes)
        }
    }

    @Test(arguments: Backend.allCases)
    func announcingTheSameChangesetAgainReturnsTheUploadWithItsOffset(_ backend: Backend) async throws {
        try await Self.withUploads(backend) { stores in
            let store = stores[0]
            let first = try await store.create(Self.request, opd: "pkm-a", token: "t1").status
            _ = try await send(store, first.id, 0..<1000)
            let again = try await store.create(Self.request, opd: "pkm-a", token: "t1")
            #expect(!again.created && again.status.id == first.id && again.status.offset == 1000)
            let otherOPD = try await store.create(Self.request, opd: "pkm-b", token: "t2")
            #expect(otherOPD.created && otherOPD.status.id != first.id)
        }
    }

    @Test(arguments: Backend.allCases)
    func aChunkAtTheWrongOffsetIsRefusedWithTheServersOffset(_ backend: Backend) async throws {
        try await Self.withUploads(backend) { stores in
            let store = stores[0]
            let id = try await store.create(Self.request, opd: "pkm-a", token: "t1").status.id
            _ = try await send(store, id, 0..<1000)
            await #expect { _ = try await send(store, id, 0..<1000) } throws: {
                ($0 as? OffsetMismatch)?.offset == 1000
            }
            await #expect { _ = try await send(store, id, 1500..<2000) } throws: {
                ($0 as? OffsetMismatch)?.offset == 1000
            }
            #expect(try await store.status(id: id, opd: "pkm-a").offset == 1000)
        }
    }

    @Test(arguments: Backend.allCases)
    func aChunkPastTheEndIsRefused(_ backend: Backend) async throws {
        try await Self.withUploads(backend) { stores in
            let store = stores[0]
            let id = try await store.create(Self.request, opd: "pkm-a", token: "t1").status.id
            await #expect {
                _ = try await store.append(
                    id: id, opd: "pkm-a", offset: 0, chunk: Array(repeating: 1, count: 2600), sha256: nil)
            } throws: { ($0 as? SyncError)?.code == .badRequest }
            #expect(try await store.status(id: id, opd: "pkm-a").offset == 0)
        }
    }

    @Test(arguments: Backend.allCases)
    func aDamagedChunkIsRefusedAndNothingOfItIsKept(_ backend: Backend) async throws {
        try await Self.withUploads(backend) { stores in
            let store = stores[0]
            let id = try await store.create(Self.request, opd: "pkm-a", token: "t1").status.id
            var damaged = Array(Self.bytes[0..<1000])
            let sha = UploadStore.sha256Hex(damaged)
            damaged[500] ^= 0xFF
            await #expect {
                _ = try await store.append(id: id, opd: "pkm-a", offset: 0, chunk: damaged, sha256: sha)
            } throws: { ($0 as? SyncError)?.code == .chunkCorrupt }
            #expect(try await store.status(id: id, opd: "pkm-a").offset == 0)
            // The good chunk goes in where the damaged one did not.
            _ = try await send(store, id, 0..<1000)
            _ = try await send(store, id, 1000..<2500)
            #expect(try await Self.assembledBytes(store, id) == Self.bytes)
        }
    }

    @Test(arguments: Backend.allCases)
    func anAssembledChangesetThatDoesNotMatchItsHashIsDiscarded(_ backend: Backend) async throws {
        try await Self.withUploads(backend) { stores in
            let store = stores[0]
            var request = Self.request
            request.sha256 = String(repeating: "0", count: 64)
            let id = try await store.create(request, opd: "pkm-a", token: "t1").status.id
            _ = try await send(store, id, 0..<1000)
            _ = try await send(store, id, 1000..<2500)
            await #expect { _ = try await store.assembled(id: id, opd: "pkm-a") } throws: {
                ($0 as? SyncError)?.code == .uploadCorrupt
            }
            await #expect { _ = try await store.status(id: id, opd: "pkm-a") } throws: {
                ($0 as? SyncError)?.code == .uploadNotFound
            }
        }
    }

    @Test(arguments: Backend.allCases)
    func anIncompleteUploadCannotBeCommitted(_ backend: Backend) async throws {
        try await Self.withUploads(backend) { stores in
            let store = stores[0]
            let id = try await store.create(Self.request, opd: "pkm-a", token: "t1").status.id
            _ = try await send(store, id, 0..<1000)
            await #expect { _ = try await store.assembled(id: id, opd: "pkm-a") } throws: {
                ($0 as? OffsetMismatch).map { $0.incomplete && $0.offset == 1000 } == true
            }
        }
    }

    @Test(arguments: Backend.allCases)
    func anotherOPDCannotSeeExtendCommitOrDeleteTheUpload(_ backend: Backend) async throws {
        try await Self.withUploads(backend) { stores in
            let store = stores[0]
            let id = try await store.create(Self.request, opd: "pkm-a", token: "t1").status.id
            func notFound(_ error: any Error) -> Bool { (error as? SyncError)?.code == .uploadNotFound }
            await #expect(performing: { _ = try await store.status(id: id, opd: "pkm-b") }, throws: notFound)
            await #expect(
                performing: {
                    _ = try await store.append(id: id, opd: "pkm-b", offset: 0, chunk: [1], sha256: nil)
                }, throws: notFound)
            await #expect(performing: { _ = try await store.assembled(id: id, opd: "pkm-b") }, throws: notFound)
            await #expect(performing: { try await store.delete(id: id, opd: "pkm-b") }, throws: notFound)
            await #expect(
                performing: { _ = try await store.status(id: "../../etc/passwd", opd: "pkm-a") }, throws: notFound)
            await #expect(
                performing: { _ = try await store.status(id: String(repeating: "0", count: 32), opd: "pkm-a") },
                throws: notFound)
            #expect(try await store.status(id: id, opd: "pkm-a").offset == 0)
        }
    }

    @Test(arguments: Backend.allCases)
    func anUploadStartedThroughOneStoreIsResumedAndCommittedThroughAnother(_ backend: Backend) async throws {
        // Files: a restart of the server on the same directory. PostgreSQL: two servers of one master.
        try await Self.withUploads(backend, count: 2) { stores in
            let id = try await stores[0].create(Self.request, opd: "pkm-a", token: "t1").status.id
            _ = try await send(stores[0], id, 0..<1000)
            #expect(try await stores[1].status(id: id, opd: "pkm-a").offset == 1000)
            let again = try await stores[1].create(Self.request, opd: "pkm-a", token: "t1")
            #expect(!again.created && again.status.offset == 1000)
            _ = try await send(stores[1], id, 1000..<2500)
            #expect(try await Self.assembledBytes(stores[1], id) == Self.bytes)
            try await stores[1].committed(id: id, reply: Data("{\"applied\":1}".utf8))
            guard case .committed(let reply) = try await stores[0].assembled(id: id, opd: "pkm-a") else {
                Issue.record("the other store does not see the commit")
                return
            }
            #expect(String(decoding: reply, as: UTF8.self) == "{\"applied\":1}")
        }
    }

    @Test func twoServersTakingTheSameChunkAtOnceKeepItOnce() async throws {
        try await Self.withUploads(.postgres, count: 2) { stores in
            let id = try await stores[0].create(Self.request, opd: "pkm-a", token: "t1").status.id
            let results = await withTaskGroup(of: Result<Int, any Error>.self) { group in
                for store in stores {
                    group.addTask {
                        do {
                            return .success(try await send(store, id, 0..<1000).offset)
                        } catch {
                            return .failure(error)
                        }
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            let accepted = results.compactMap { try? $0.get() }
            let refused = results.compactMap { result -> OffsetMismatch? in
                if case .failure(let error) = result { return error as? OffsetMismatch }
                return nil
            }
            #expect(accepted == [1000] && refused.map(\.offset) == [1000])
            _ = try await send(stores[1], id, 1000..<2500)
            #expect(try await Self.assembledBytes(stores[0], id) == Self.bytes)
        }
    }

    @Test(arguments: Backend.allCases)
    func unfinishedUploadsAreBoundedPerTokenAndInAll(_ backend: Backend) async throws {
        let clock = TestClock()
        // Files serve one server (its counts are in its memory); PostgreSQL counts for every server.
        let count = backend == .postgres ? 2 : 1
        try await Self.withUploads(
            backend, count: count, clock: clock, limits: Limits(expiry: 600, perToken: 2, inAll: 3)
        ) { all in
            let stores = [all[0], all[count - 1]]
            func announce(_ store: any PartialUploads, token: String) async throws -> String {
                let bytes = Array(UUID().uuidString.utf8)
                let request = UploadRequest(
                    changesetId: UUID(), length: bytes.count, sha256: UploadStore.sha256Hex(bytes))
                return try await store.create(request, opd: "pkm-a", token: token).status.id
            }
            func tooMany(_ error: any Error) -> Bool {
                guard let error = error as? SyncError, error.code == .tooManyUploads else { return false }
                return (error.retryAfterSeconds ?? 0) > 0
            }
            _ = try await announce(stores[0], token: "t1")
            clock.advance(100)
            _ = try await announce(stores[1], token: "t1")
            await #expect(performing: { _ = try await announce(stores[0], token: "t1") }, throws: tooMany)
            let third = try await announce(stores[0], token: "t2")
            // Three unfinished uploads in all, whichever store took them.
            await #expect(performing: { _ = try await announce(stores[1], token: "t3") }, throws: tooMany)
            // A deleted upload frees its place.
            try await stores[1].delete(id: third, opd: "pkm-a")
            _ = try await announce(stores[1], token: "t3")
            // Expired uploads hold no place.
            clock.advance(601)
            _ = try await announce(stores[0], token: "t1")
        }
    }

    @Test(arguments: Backend.allCases)
    func anAbandonedUploadIsDiscardedAfterTheExpiry(_ backend: Backend) async throws {
        let clock = TestClock()
        try await Self.withUploads(backend, clock: clock, limits: Limits(expiry: 600)) { stores in
            let store = stores[0]
            let kept = try await store.create(Self.request, opd: "pkm-a", token: "t1").status.id
            var other = Self.request
            other.changesetId = UUID()
            let abandoned = try await store.create(other, opd: "pkm-a", token: "t1").status.id
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
            clock.advance(601)
            try await store.sweepIfDue()
            #expect(try await store.uploadIDs().isEmpty)
        }
    }

    @Test(arguments: Backend.allCases)
    func aCommittedUploadKeepsItsReplyAndNotItsBytes(_ backend: Backend) async throws {
        try await Self.withUploads(backend) { stores in
            let store = stores[0]
            let id = try await store.create(Self.request, opd: "pkm-a", token: "t1").status.id
            _ = try await send(store, id, 0..<1000)
            _ = try await send(store, id, 1000..<2500)
            try await store.committed(id: id, reply: Data("{\"applied\":1}".utf8))
            guard case .committed(let reply) = try await store.assembled(id: id, opd: "pkm-a") else {
                Issue.record("not committed")
                return
            }
            #expect(String(decoding: reply, as: UTF8.self) == "{\"applied\":1}")
            #expect(try await store.heldBytes(id) == 0)
            let status = try await store.status(id: id, opd: "pkm-a")
            #expect(status.committed && status.offset == 2500)
            await #expect { _ = try await send(store, id, 0..<1000) } throws: {
                ($0 as? OffsetMismatch)?.offset == 2500
            }
        }
    }
}

/// What the tests also ask of an uploads store, besides ``PartialUploads``.
protocol TestableUploads: PartialUploads {
    func sweep() async throws
    func uploadIDs() async throws -> [String]
    /// The bytes it still holds for upload `id`.
    func heldBytes(_ id: String) async throws -> Int
}

extension UploadStore: TestableUploads {
    func heldBytes(_ id: String) async throws -> Int {
        let part = directory.appendingPathComponent("\(id).part").path
        return (try? FileManager.default.attributesOfItem(atPath: part)[.size] as? Int) ?? 0
    }
}

extension PostgresUploads: TestableUploads {
    func heldBytes(_ id: String) async throws -> Int {
        for try await n in try await master.client.query(
            "SELECT coalesce(sum(length(bytes)), 0)::bigint FROM kotasync.upload_chunks WHERE upload = \(id)",
            logger: SQLiteMasterStore.quietLogger
        ).decode(Int64.self) {
            return Int(n)
        }
        return 0
    }
}
