import Foundation
import KotaSyncCore
import Testing

@testable import KotaSyncServer

/// Tokens, staff accounts and sessions on the PostgreSQL master: what the SQLite store's
/// credential tests check (StaffTokenTests, CredentialTests), and that several servers on one
/// master share them.
@Suite(.postgres)
struct PostgresCredentialTests {
    @Test(arguments: [Device.Role.viewer, .reviewer, .admin])
    func aStaffTokenAuthenticatesWithItsRoleAndNameAndNoOPD(_ role: Device.Role) async throws {
        try await withStore { store in
            let issued = try await store.createStaffToken(name: "  Ani Lubis ", role: role, expiresAt: nil)
            #expect(issued.role == role)
            #expect(issued.name == "Ani Lubis")
            let credential = try #require(try await store.authenticate(token: issued.token))
            #expect(credential == Device(tokenID: issued.id, opd: "", role: role, name: "Ani Lubis"))
        }
    }

    @Test func aDeviceTokenAuthenticatesAsADeviceOfItsOPDAndOnlyItsHashIsStored() async throws {
        try await withStore { store in
            let issued = try await store.createToken(opd: "pkm-a", expiresAt: nil)
            let credential = try #require(try await store.authenticate(token: issued.token))
            #expect(credential == Device(tokenID: issued.id, opd: "pkm-a", role: .device, name: nil))
            let stored = try await store.client.query("SELECT hash FROM kotasync.tokens").collect()
            let hash = try stored[0].decode(String.self)
            #expect(hash == CredentialChecks.tokenHash(issued.token))
            #expect(!hash.contains(issued.token.split(separator: "_")[2]))
            #expect(try await store.authenticate(token: issued.token + "x") == nil)
            #expect(try await store.authenticate(token: "") == nil)
        }
    }

    @Test func aTokenForAnOPDTheConfigDoesNotNameIsRefused() async throws {
        try await withStore { store in
            await #expect {
                _ = try await store.createToken(opd: "pkm-z", expiresAt: nil)
            } throws: { ($0 as? SyncError)?.code == .badRequest }
        }
    }

    @Test func anExpiredTokenIsRefused() async throws {
        try await withStore { store in
            let staff = try await store.createStaffToken(
                name: "Ani", role: .admin, expiresAt: Date().addingTimeInterval(-1))
            let device = try await store.createToken(opd: "pkm-a", expiresAt: Date().addingTimeInterval(-1))
            let later = try await store.createToken(opd: "pkm-a", expiresAt: Date().addingTimeInterval(3600))
            #expect(try await store.authenticate(token: staff.token) == nil)
            #expect(try await store.authenticate(token: device.token) == nil)
            #expect(try await store.authenticate(token: later.token) != nil)
        }
    }

    @Test(arguments: [("", Device.Role.viewer), ("   ", .reviewer), ("Ani\u{7}", .viewer), ("Ani", .device)])
    func aStaffTokenNeedsANameAndAStaffRole(_ name: String, _ role: Device.Role) async throws {
        try await withStore { store in
            await #expect {
                _ = try await store.createStaffToken(name: name, role: role, expiresAt: nil)
            } throws: { ($0 as? SyncError)?.code == .badRequest }
        }
    }

    @Test func aRevokedTokenIsRefusedAndRevokingAgainChangesNothing() async throws {
        try await withStore { store in
            let issued = try await store.createToken(opd: "pkm-b", expiresAt: nil)
            let other = try await store.createToken(opd: "pkm-b", expiresAt: nil)
            let revoked = try await store.revokeToken(id: issued.id)
            #expect(revoked.id == issued.id)
            let revokedAt = try #require(revoked.revokedAt)
            #expect(try await store.authenticate(token: issued.token) == nil)
            #expect(try await store.authenticate(token: other.token) != nil)
            let again = try await store.revokeToken(id: issued.id)
            #expect(again.revokedAt == revokedAt)
            await #expect {
                _ = try await store.revokeToken(id: "0000000z")
            } throws: { ($0 as? SyncError)?.code == .notFound }
        }
    }

    @Test func tokensAreListedNewestFirstWithTheirLastUseAndNoSecret() async throws {
        try await withStore { store in
            let device = try await store.createToken(opd: "pkm-a", expiresAt: nil)
            let staff = try await store.createStaffToken(name: "Budi", role: .viewer, expiresAt: nil)
            _ = try await store.authenticate(token: device.token)
            let listed = try await store.tokens()
            #expect(Set(listed.map(\.id)) == [device.id, staff.id])
            let deviceDocument = try #require(listed.first { $0.id == device.id })
            #expect(deviceDocument.kind == "device")
            #expect(deviceDocument.opd == "pkm-a")
            #expect(deviceDocument.lastUsedAt != nil, "the use is written before the list is read")
            let staffDocument = try #require(listed.first { $0.id == staff.id })
            #expect(staffDocument.kind == "staff")
            #expect(staffDocument.name == "Budi")
            #expect(staffDocument.opd == nil)
            #expect(staffDocument.lastUsedAt == nil)
            #expect(listed.map(\.createdAt) == listed.map(\.createdAt).sorted(by: >))
            let text = "\(listed)"
            for secret in [device.token, staff.token] { #expect(!text.contains(secret)) }
        }
    }

    @Test func aStaffAccountLogsInWithItsPasswordOnly() async throws {
        try await withStore { store in
            let password = "sate padang pedas sekali"
            let user = try await store.addUser(name: " Ani Lubis ", role: .reviewer, password: password)
            #expect(user.name == "Ani Lubis")
            #expect(try await store.users().map(\.name) == ["Ani Lubis"])
            let session = try #require(try await store.login(name: "Ani Lubis", password: password, minutes: 60))
            #expect(session.role == .reviewer)
            let credential = try #require(try await store.authenticate(token: session.token))
            #expect(credential.session)
            #expect(credential.role == .reviewer)
            #expect(credential.kind == "session")
            #expect(try await store.login(name: "Ani Lubis", password: "wrong " + password, minutes: 60) == nil)
            #expect(try await store.login(name: "Nobody", password: password, minutes: 60) == nil)
            let listed = try #require(try await store.tokens().first { $0.id == session.id })
            #expect(listed.kind == "session")
            #expect(listed.name == "Ani Lubis")
            // Only the scrypt hash is stored, with its parameters.
            let rows = try await store.client.query(
                "SELECT password_kdf, password_params, password_hash FROM kotasync.users"
            ).collect()
            let (kdf, parameters, hash) = try rows[0].decode((String, String, Data).self)
            #expect(kdf == "scrypt")
            #expect(parameters == PasswordHash.defaultParameters)
            #expect(hash.count == 32)
        }
    }

    @Test func aTakenNameAShortPasswordOrADeviceRoleIsRefused() async throws {
        try await withStore { store in
            _ = try await store.addUser(name: "Ani", role: .admin, password: "a long enough phrase")
            for (name, role, password) in [
                ("Ani", Device.Role.viewer, "another long phrase"), ("Budi", .viewer, "short"),
                ("Budi", .device, "a long enough phrase"), ("", .viewer, "a long enough phrase"),
            ] {
                await #expect {
                    _ = try await store.addUser(name: name, role: role, password: password)
                } throws: { ($0 as? SyncError)?.code == .badRequest }
            }
            #expect(try await store.users().map(\.name) == ["Ani"])
        }
    }

    @Test func removingAUserOrChangingThePasswordEndsItsSessions() async throws {
        try await withStore { store in
            let password = "sate padang pedas sekali"
            _ = try await store.addUser(name: "Ani", role: .reviewer, password: password)
            _ = try await store.addUser(name: "Budi", role: .viewer, password: password)
            let ani = try #require(try await store.login(name: "Ani", password: password, minutes: 60))
            let budi = try #require(try await store.login(name: "Budi", password: password, minutes: 60))
            try await store.setPassword(name: "Ani", password: "a new phrase for Ani")
            #expect(try await store.authenticate(token: ani.token) == nil)
            #expect(try await store.login(name: "Ani", password: password, minutes: 60) == nil)
            #expect(try await store.login(name: "Ani", password: "a new phrase for Ani", minutes: 60) != nil)
            try await store.removeUser(name: "Budi")
            #expect(try await store.authenticate(token: budi.token) == nil)
            #expect(try await store.login(name: "Budi", password: password, minutes: 60) == nil)
            #expect(try await store.users().map(\.name) == ["Ani"])
            for attempt in [
                { try await store.removeUser(name: "Budi") },
                { try await store.setPassword(name: "Nobody", password: password) },
            ] as [@Sendable () async throws -> Void] {
                await #expect { try await attempt() } throws: { ($0 as? SyncError)?.code == .notFound }
            }
        }
    }

    /// Two servers on one master: a login made through one is valid on the other, and a token
    /// revoked through one is refused by the other at once.
    @Test func aLoginOrRevocationThroughOneServerHoldsOnAnother() async throws {
        try await withStores(2) { stores in
            let (one, two) = (stores[0], stores[1])
            _ = try await one.addUser(name: "Ani", role: .admin, password: "sate padang pedas sekali")
            let session = try #require(
                try await one.login(name: "Ani", password: "sate padang pedas sekali", minutes: 60))
            #expect(try await two.authenticate(token: session.token)?.role == .admin)
            let device = try await two.createToken(opd: "pkm-a", expiresAt: nil)
            #expect(try await one.authenticate(token: device.token)?.opd == "pkm-a")
            _ = try await one.revokeToken(id: device.id)
            #expect(try await two.authenticate(token: device.token) == nil)
            // Uses noted by both servers are kept, the later one winning.
            try await one.flushAudit()
            try await two.flushAudit()
            let listed = try #require(try await two.tokens().first { $0.id == session.id })
            #expect(listed.lastUsedAt != nil)
        }
    }
}
