import Foundation
import Testing

@testable import KotaSyncCore
@testable import KotaSyncServer

/// A kill while an upload's record is saved leaves no file that nothing removes.
struct UploadTempFileTests {
    /// What a kill during a save leaves: the record's temporary file, and (from versions that
    /// saved through Foundation's `createFile`) Foundation's own hidden temporary file. Opening the
    /// store sweeps both; a live upload's files stay.
    @Test func leftoversOfAKilledSaveAreSweptWhenTheStoreOpens() async throws {
        let dir = try UploadStoreTests.directory()
        let store = try UploadStoreTests.store(dir, clock: UploadStoreTests.TestClock())
        let (status, _) = try await store.create(UploadStoreTests.request, opd: "pkm-a")
        let leftovers = [".dat.nosync1f2e.Xc9QvA", "\(status.id).json.tmp"]
        for name in leftovers {
            FileManager.default.createFile(atPath: dir.appendingPathComponent(name).path, contents: Data("{".utf8))
        }
        _ = try UploadStoreTests.store(dir, clock: UploadStoreTests.TestClock())
        let names = Set(try FileManager.default.contentsOfDirectory(atPath: dir.path))
        #expect(names == ["\(status.id).json", "\(status.id).part"])
    }

    /// Saving a record leaves only the upload's own two files, whatever Foundation does inside.
    @Test func savingARecordLeavesOnlyTheUploadsFiles() async throws {
        let dir = try UploadStoreTests.directory()
        let store = try UploadStoreTests.store(dir, clock: UploadStoreTests.TestClock())
        let (status, _) = try await store.create(UploadStoreTests.request, opd: "pkm-a")
        let chunk = Array(UploadStoreTests.bytes[0..<1000])
        _ = try await store.append(
            id: status.id, opd: "pkm-a", offset: 0, chunk: chunk, sha256: UploadStore.sha256Hex(chunk))
        let names = Set(try FileManager.default.contentsOfDirectory(atPath: dir.path))
        #expect(names == ["\(status.id).json", "\(status.id).part"])
    }
}
