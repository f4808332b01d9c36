import ArgumentParser
import Foundation
import KotaSyncClient
import KotaSyncCore

func pushLine(_ s: PushSummary) -> String {
    guard s.changesets > 0 else { return "Nothing to push." }
    var line = "Pushed \(s.rows) row(s) in \(s.changesets) changeset(s): \(s.applied) applied"
    if !s.conflicts.isEmpty { line += ", \(s.conflicts.count) conflict(s) recorded (see `kotasync status`)" }
    if s.refused > 0 { line += ", \(s.refused) refused (see `kotasync status`)" }
    if s.replayed > 0 { line += ", \(s.replayed) already applied earlier" }
    return line + "."
}

func pullLine(_ s: PullSummary) -> String {
    var line = "Pulled \(s.rows) row(s) in \(s.pages) page(s); cursor \(s.cursor)"
    if s.keptLocal > 0 { line += "; \(s.keptLocal) row(s) kept local changes pending push" }
    return line + "."
}

func describe(_ c: ConflictReport, replica: UUID) -> String {
    let key = c.primaryKey.map(\.description).joined(separator: ", ")
    let what = c.column.map { "\(c.table).\($0)" } ?? c.table
    let mine = c.loser?.replicaId == replica ? "yours lost" : (c.winner?.replicaId == replica ? "yours won" : "")
    // Row-level records (delete_update, unique, foreign_key, queued) carry no value on a side.
    // A side the device is not told of (another OPD's row) shows as "another device".
    func side(_ s: ConflictReport.Side?) -> String {
        guard let s else { return "another device" }
        return "\(s.opd)" + (s.value.map { " \($0)" } ?? (c.column == nil ? "" : " (delete)"))
    }
    return
        "#\(c.id) \(c.kind.rawValue) on \(what) [\(key)], \(c.status): \(side(c.winner)) won over \(side(c.loser)) (\(c.policy)) \(mine)"
}

/// One record in full: the row, both sides with their values, and what it means for this replica.
func detail(_ c: ConflictReport, replica: UUID, outcome: ChangeOutcome?) -> String {
    let key = c.primaryKey.map(\.description).joined(separator: ", ")
    func side(_ label: String, _ s: ConflictReport.Side?) -> String {
        guard let s else { return "  \(label): another device's, not shown to this OPD" }
        let value = s.value?.description ?? (c.column == nil ? "" : "(delete)")
        let yours = s.replicaId == replica ? " (this replica)" : ""
        return "  \(label): \(value.isEmpty ? "" : value + " ")from \(s.opd)\(yours), stamp \(s.stamp)"
    }
    var lines = [
        "#\(c.id) \(c.kind.rawValue) on \(c.table)\(c.column.map { ".\($0)" } ?? "") [\(key)]: \(c.status) (\(c.policy)), \(c.decidedAt)",
        side("winner", c.winner),
        side("loser ", c.loser),
    ]
    if c.column != nil { lines.insert("  base:   \(c.base?.description ?? "(not kept)")", at: 1) }
    if let held = c.held {
        let values = held.values.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")
        lines.append("  held row (\(held.operation)): \(values)")
    }
    if let resolution = c.resolution {
        lines.append(
            "  resolved: take \(resolution.take.rawValue) by \(resolution.by) at \(resolution.at)"
                + (resolution.note.map { " — \($0)" } ?? ""))
    }
    if let outcome { lines.append("  your change: \(outcome.kind.rawValue): \(outcome.why)") }
    return lines.joined(separator: "\n")
}

/// Runs a command body, prints its result as JSON or text, records the outcome on the replica
/// for `status`, and turns errors into a message on stderr and the documented exit status.
///
/// A success clears the recorded error and counts as a sync unless `offline` (export, import):
/// those say nothing about the link, so an earlier network error stays in `status`.
func report<T: Encodable>(
    json: Bool, recordingOn db: String? = nil, offline: Bool = false, _ body: () async throws -> (T, String)
) async throws {
    do {
        let (value, text) = try await body()
        if let db, !offline { try? Replica(path: db).recordError(nil) }
        if json {
            let encoder = ProtocolJSON.encoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(value), as: UTF8.self))
        } else {
            print(text)
        }
    } catch let error as ReplicaError {
        if let db { try? Replica(path: db).recordError(error) }
        if json {
            let body = [
                "error": ["code": error.server?.code.rawValue ?? error.code.rawValue, "message": error.message]
            ]
            print(String(decoding: try ProtocolJSON.encoder().encode(body), as: UTF8.self))
        }
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode(error.code.exitCode)
    }
}

/// The records of `status`, by state, at most 20 of each with a count of the rest.
func recordLines(_ status: ReplicaStatus) -> [String] {
    var lines: [String] = []
    for state in RecordState.State.allCases {
        let total = status.recordCounts[state.rawValue] ?? 0
        guard total > 0 else { continue }
        let heading: String =
            switch state {
            case .pending: "Pending (captured, not sent)"
            case .sent: "Sent (in the outbox, awaiting acknowledgement)"
            case .acknowledged: "Recently acknowledged"
            case .conflicted: "Conflicted"
            case .rejected: "Rejected by the server"
            }
        lines.append("\(heading): \(total)")
        let shown = status.records.filter { $0.state == state }.prefix(20)
        for record in shown {
            let key = record.primaryKey.map(\.description).joined(separator: ", ")
            lines.append("  \(record.table) [\(key)]: \(record.detail)" + (record.at.map { " (\($0))" } ?? ""))
        }
        if total > shown.count {
            lines.append("  … and \(total - shown.count) more (`--json` lists up to \(ReplicaStatus.recordLimit))")
        }
    }
    return lines
}
