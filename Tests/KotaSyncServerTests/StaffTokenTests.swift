import Foundation
import KotaSyncCore
import Testing

@testable import KotaSyncServer

/// Tokens carry who holds them: a device of an OPD, or a named member of the staff with a role.
struct StaffTokenTests {
    @Test(arguments: [Device.Role.viewer, .reviewer, .admin])
    func aStaffTokenAuthenticatesWithItsRoleAndNameAndNoOPD(_ role: Device.Role) async throws {
        let store = try SQLiteMasterStoreTests.makeStore("staff\(role.rawValue)")
        let issued = try await store.createStaffToken(name: "  Ani Lubis ", role: role, expiresAt: nil)
        #expect(issued.role == role)
        #expect(issued.name == "Ani Lubis")
        let credential = try #require(try await store.authenticate(token: issued.token))
        #expect(credential == Device(tokenID: issued.id, opd: "", role: role, name: "Ani Lubis"))
    }

    @Test func aDeviceTokenAuthenticatesAsADeviceOfItsOPD() async throws {
        let store = try SQLiteMasterStoreTests.makeStore()
        let issued = try await store.createToken(opd: "pkm-a", expiresAt: nil)
        let credential = try #require(try await store.authenticate(token: issued.token))
        #expect(credential == Device(tokenID: issued.id, opd: "pkm-a", role: .device, name: nil))
    }

    @Test func anExpiredStaffTokenIsRefused() async throws {
        let store = try SQLiteMasterStoreTests.makeStore()
        let issued = try await store.createStaffToken(
            name: "Ani", role: .admin, expiresAt: Date().addingTimeInterval(-1))
        #expect(try await store.authenticate(token: issued.token) == nil)
    }

    @Test(arguments: [("", Device.Role.viewer), ("   ", .reviewer), ("Ani\u{7}", .viewer), ("Ani", .device)])
    func aStaffTokenNeedsANameAndAStaffRole(_ name: String, _ role: Device.Role) async throws {
        let store = try SQLiteMasterStoreTests.makeStore("badstaff\(name.count)\(role.rawValue)")
        await #expect {
            _ = try await store.createStaffToken(name: name, role: role, expiresAt: nil)
        } throws: { ($0 as? SyncError)?.code == .badRequest }
    }
}
