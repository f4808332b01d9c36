import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The package root, found from this file's path (Sources/KotaSyncTesting/Programs.swift).
public let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// Where `swift build` put the executables: beside the test bundle.
public let binDirectory: URL = {
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
public struct ProgramResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

/// Runs `executable` with `arguments` and waits for it; `input` is its standard input.
@discardableResult
public func run(_ executable: String, _ arguments: [String], in directory: URL? = nil, input: String? = nil) throws
    -> ProgramResult
{
    let process = Process()
    process.executableURL =
        executable.hasPrefix("/") ? URL(fileURLWithPath: executable) : binDirectory.appendingPathComponent(executable)
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = directory }
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    let stdin = Pipe()
    process.standardInput = stdin
    try process.run()
    if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
    try stdin.fileHandleForWriting.close()
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
public final class DataBox: @unchecked Sendable {
    public var data = Data()
}

/// Runs `body`, which blocks (starts a program and waits for it, reads a pipe), on a thread of its
/// own and waits for it without holding a thread of Swift's cooperative pool: tests run in
/// parallel on a pool as wide as the machine has cores (two here), and a test blocking one of
/// them stalls every other test's awaits.
public func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}
