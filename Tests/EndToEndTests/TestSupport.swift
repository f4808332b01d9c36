import Foundation
import GRDB
import KotaSyncCore
import KotaSyncSQLite
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// A fresh temporary directory, removed when the value is deinitialised... by the OS: tests keep
/// their files for inspection after a failure.
func makeTemporaryDirectory(_ name: String = #function) throws -> URL {
    let safe = name.filter { $0.isLetter || $0.isNumber }
    let url = FileManager.default.temporaryDirectory.appendingPathComponent(
        "kotasync-e2e-\(safe)-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// The package root, found from this file's path.
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// Where `swift build` put the executables: beside the test bundle.
let binDirectory: URL = {
    if let dir = ProcessInfo.processInfo.environment["KOTASYNC_BIN_DIR"] { return URL(fileURLWithPath: dir) }
    var url = Bundle.main.bundleURL
    for _ in 0..<4 {
        if FileManager.default.isExecutableFile(atPath: url.appendingPathComponent("kotasync-server").path) {
            return url
        }
        url = url.deletingLastPathComponent()
    }
    return packageRoot.appendingPathComponent(".build/debug")
}()

/// The result of running a program to completion.
struct ProgramResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs `executable` with `arguments` and waits for it.
@discardableResult
func run(_ executable: String, _ arguments: [String], in directory: URL? = nil) throws -> ProgramResult {
    let process = Process()
    process.executableURL =
        executable.hasPrefix("/") ? URL(fileURLWithPath: executable) : binDirectory.appendingPathComponent(executable)
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = directory }
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    // Drain stderr on another thread while reading stdout, so a chatty program cannot fill one
    // pipe and stall.
    let errBox = DataBox()
    let group = DispatchGroup()
    DispatchQueue.global().async(group: group) { errBox.data = err.fileHandleForReading.readDataToEndOfFile() }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    let errBytes = errBox.data
    process.waitUntilExit()
    return ProgramResult(
        status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
        stderr: String(decoding: errBytes, as: UTF8.self))
}

/// Holds bytes read on another thread; the DispatchGroup wait orders the write before the read.
final class DataBox: @unchecked Sendable {
    var data = Data()
}

/// A `kotasync-server` process on a free port, stopped by ``stop()``.
final class ServerProcess: @unchecked Sendable {
    // Mutated only during init (before the object is shared) and in stop(); tests call stop() once.
    let process = Process()
    let url: URL
    let directory: URL
    let config: URL
    let database: URL

    /// Starts the server on `config` with a master database in `directory`, and waits until it
    /// prints the port it listens on.
    init(config: URL, directory: URL) throws {
        self.directory = directory
        self.config = config
        self.database = directory.appendingPathComponent("master.sqlite")
        process.executableURL = binDirectory.appendingPathComponent("kotasync-server")
        process.arguments = [
            "serve", "--config", config.path, "--db", database.path, "--port", "0", "--log-level", "warning",
        ]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.standardError
        try process.run()
        var buffer = ""
        let handle = out.fileHandleForReading
        while !buffer.contains("\n") {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            buffer += String(decoding: chunk, as: UTF8.self)
        }
        guard let line = buffer.split(separator: "\n").first, let range = line.range(of: "http://") else {
            process.terminate()
            throw TestFailure("kotasync-server did not report its address; it printed: \(buffer)")
        }
        url = URL(string: String(line[range.lowerBound...]))!
    }

    /// A new device token for `opd`.
    func token(opd: String) throws -> String {
        let result = try run(
            "kotasync-server", ["token", "create", "--config", config.path, "--db", database.path, "--opd", opd])
        guard result.status == 0 else { throw TestFailure("token create failed: \(result.stderr)") }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    deinit { stop() }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Copies the Binjai sample configuration (and its seed) into `directory`, optionally adding
/// tables, and returns the config's path.
func sampleConfig(in directory: URL, extraTables: String = "") throws -> URL {
    let sample = packageRoot.appendingPathComponent("samples/binjai")
    try FileManager.default.copyItem(
        at: sample.appendingPathComponent("seed.sql"), to: directory.appendingPathComponent("seed.sql"))
    let text = try String(contentsOf: sample.appendingPathComponent("kotasync.yaml"), encoding: .utf8) + extraTables
    let url = directory.appendingPathComponent("kotasync.yaml")
    try text.write(to: url, atomically: true, encoding: .utf8)
    return url
}

/// Every row of every table named, as exact values (storage class and bits), in key order,
/// for comparing databases bit for bit.
func snapshot(_ path: String, tables: [String]) throws -> [String: [[SQLValue]]] {
    var configuration = Configuration()
    configuration.readonly = true
    let queue = try DatabaseQueue(path: path, configuration: configuration)
    return try queue.read { db in
        var out: [String: [[SQLValue]]] = [:]
        for table in tables {
            let rows = try Row.fetchAll(db, sql: "SELECT * FROM \"\(table)\"")
            out[table] = rows.map { row in row.databaseValues.map(SQLValue.init) }
                .sorted { $0.map(\.description).joined(separator: "|") < $1.map(\.description).joined(separator: "|") }
        }
        return out
    }
}

/// A raw HTTP request to the server.
func http(
    _ method: String, _ url: URL, token: String? = nil, body: [UInt8]? = nil
) async throws -> (status: Int, headers: [String: String], body: Data) {
    var request = URLRequest(url: url)
    request.httpMethod = method
    if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
    if let body {
        request.httpBody = Data(body)
        request.setValue(changesetMediaType, forHTTPHeaderField: "Content-Type")
    }
    let (data, response) = try await URLSession.shared.data(for: request)
    let http = response as! HTTPURLResponse
    var headers: [String: String] = [:]
    for (k, v) in http.allHeaderFields { headers["\(k)".lowercased()] = "\(v)" }
    return (http.statusCode, headers, data)
}
