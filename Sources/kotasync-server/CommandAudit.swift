import Foundation
import KotaSyncServer

extension AuditStore {
    /// Records what an administration command changed, as `cli:<login name>`, and writes it now
    /// (the process is about to exit). Ids and names only: never a token or a password.
    func audit(_ action: String, _ detail: [String: String], status: Int = 0) async throws {
        let user = ProcessInfo.processInfo.userName
        recordAudit(
            AuditEntry(
                actor: "cli:\(user.isEmpty ? "unknown" : user)", actorKind: "cli", action: action, status: status,
                detail: detail.filter { !$0.value.isEmpty }))
        try await flushAudit()
    }
}
