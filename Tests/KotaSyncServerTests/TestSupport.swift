import Foundation
import Testing

@testable import KotaSyncCore
@testable import KotaSyncServer

// MARK: - Seeded randomness

extension RandomNumberGenerator {
    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &self) < p }

    mutating func uuid() -> UUID { UUID(bytes: (0..<16).map { _ in UInt8.random(in: 0...255, using: &self) }) }
}

// MARK: - Writers and heads

/// Replicas whose ids order A < B < C (the tie-break compares ids, not numbers).
enum W {
    static let a = Writer(number: 1, id: UUID(uuidString: "00000000-0000-0000-0000-00000000000A")!)
    static let b = Writer(number: 2, id: UUID(uuidString: "00000000-0000-0000-0000-00000000000B")!)
    static let c = Writer(number: 3, id: UUID(uuidString: "00000000-0000-0000-0000-00000000000C")!)
    /// Has the highest number but the lowest id: numbers must never decide.
    static let z = Writer(number: 99, id: UUID(uuidString: "00000000-0000-0000-0000-000000000001")!)
    static let all = [Writer.master, a, b, c, z]

    static func byNumber(_ n: Int64) -> Writer { all.first { $0.number == n }! }
}

/// A head: a write (or, with `delete`, a delete) by `writer` merged at `version`.
func head(
    _ version: UInt64, _ stamp: UInt64, _ writer: Writer, insert: Bool = false, delete: Bool = false
) -> Head {
    Head(writer: writer, version: version, stamp: HLC(rawValue: stamp), isInsert: insert, isDelete: delete)
}

/// The master's insert of the seeded row, at version 1.
let seedInsert = head(1, 10, .master, insert: true)

/// A live row at version 5 whose three columns the master wrote at versions 1, 3 and 5; its only
/// existence head is the master's insert. Every replica's snapshot is version 5.
func seededRow() -> RowClocks {
    RowClocks(version: 5, columns: [seedInsert, head(3, 20, .master), head(5, 30, .master)], existence: [seedInsert])
}

func change(
    _ op: Changeset.Operation, by writer: Writer, stamp: UInt64, base: UInt64, columns: [Int] = [],
    bases: [Int: UInt64] = [:]
) -> IncomingChange {
    IncomingChange(
        operation: op, writer: writer, stamp: HLC(rawValue: stamp), rowBase: base, columns: columns, columnBases: bases)
}

// MARK: - Schema

func column(_ name: String, _ type: String, notNull: Bool = false) -> ColumnSchema {
    ColumnSchema(name: name, declaredType: type, notNull: notNull)
}

// MARK: - Expectations

/// Expects `body` to throw a ``SyncError`` with `code`.
@discardableResult
func expectSyncError<T>(
    _ code: SyncError.Code, _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws(SyncError) -> T
) -> SyncError? {
    do {
        _ = try body()
        Issue.record(
            "Expected \(code) but it succeeded\(comment.map { " — \($0)" } ?? "")", sourceLocation: sourceLocation)
        return nil
    } catch {
        #expect(error.code == code, "\(error)\(comment.map { " — \($0)" } ?? "")", sourceLocation: sourceLocation)
        return error
    }
}
