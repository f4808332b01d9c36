import Foundation
import KotaSyncCore
import Testing

struct TransferFileTests {
    static let token = "kst_0a1b2c3d_c2VjcmV0X3dpdGhfdW5kZXJzY29yZXM"

    static func body() -> TransferBody {
        TransferBody(
            kind: .push, opd: "pkm-binjai-kota", createdAt: "2026-11-29T12:00:00.000Z", replicaId: UUID(),
            cursor: 25, changesets: [Data([1, 2, 3, 255])])
    }

    static func sealed() throws -> TransferFile {
        try TransferFile.seal(body(), keys: [("0a1b2c3d", TransferFile.key(forToken: token))])
    }

    @Test func aSealedFileReadsBackAndVerifiesWithTheTokensKey() throws {
        let file = try Self.sealed()
        let read = try TransferFile.read(try file.encoded())
        #expect(read.verify(tokenId: "0a1b2c3d", key: TransferFile.key(forToken: Self.token)))
        #expect(try read.decodedBody().changesets == [Data([1, 2, 3, 255])])
    }

    @Test func theTokenItselfIsNotInTheFile() throws {
        let text = String(decoding: try Self.sealed().encoded(), as: UTF8.self)
        #expect(!text.contains("c2VjcmV0"))
        #expect(!text.contains(Self.token))
    }

    @Test func theServerVerifiesWithTheStoredHashOfTheToken() throws {
        // The server keeps hex(SHA-256(token)); the same bytes are the key.
        let hex = TransferFile.key(forToken: Self.token).withUnsafeBytes { bytes in
            bytes.map { String(format: "%02x", $0) }.joined()
        }
        let key = try #require(TransferFile.key(fromTokenHash: hex))
        #expect(try Self.sealed().verify(tokenId: "0a1b2c3d", key: key))
    }

    @Test func anotherTokenOrAnotherTokenIdDoesNotVerify() throws {
        let file = try Self.sealed()
        #expect(!file.verify(tokenId: "0a1b2c3d", key: TransferFile.key(forToken: "kst_0a1b2c3d_other")))
        #expect(!file.verify(tokenId: "ffffffff", key: TransferFile.key(forToken: Self.token)))
    }

    @Test func aChangedBodyFailsTheIntegrityCheck() throws {
        var file = try Self.sealed()
        file.body[file.body.count / 2] ^= 1
        #expect(throws: SyncError.self) { try TransferFile.read(try file.encoded()) }
    }

    @Test func aChangedBodyWithARecomputedChecksumFailsAuthentication() throws {
        var file = try Self.sealed()
        var body = try file.decodedBody()
        body.opd = "bappeda"
        let forged = try TransferFile.seal(body, keys: [("0a1b2c3d", TransferFile.key(forToken: "a guess"))])
        file.body = forged.body
        file.sha256 = forged.sha256
        let read = try TransferFile.read(try file.encoded())
        #expect(!read.verify(tokenId: "0a1b2c3d", key: TransferFile.key(forToken: Self.token)))
    }

    @Test func aFileOfAnotherFormatOrVersionIsRefused() throws {
        var file = try Self.sealed()
        file.version = 2
        #expect(throws: SyncError.self) { try TransferFile.read(try file.encoded()) }
        #expect(throws: SyncError.self) { try TransferFile.read(Data("{}".utf8)) }
    }

    @Test func theTokenIdIsTheMiddleOfADeviceToken() {
        #expect(TransferFile.tokenId(of: Self.token) == "0a1b2c3d")
        #expect(TransferFile.tokenId(of: "kst_abc_x_y_z") == "abc")
        #expect(TransferFile.tokenId(of: "not-a-token") == nil)
    }
}
