import ArgumentParser
import Foundation
import KotaSyncClient

/// How the commands that talk to the server treat the link.
struct LinkOptions: ParsableArguments {
    @Option(
        help: """
            Give a transfer up, and resume it, after this long without a byte moving either way \
            (e.g. 20s, 1m). A slow link that keeps moving is never cut.
            """)
    var idleTimeout: String = "20s"

    @Option(help: "The longest wait for a connection to the server to open (e.g. 10s).")
    var connectTimeout: String = "10s"

    @Flag(
        help: """
            Keep trying through any network failure (the server down included) until everything is \
            sent and received, or --deadline passes.
            """)
    var untilDone = false

    @Option(help: "With --until-done: how long to keep trying, e.g. 30m, 2h, 1d.")
    var deadline: String = "1h"

    func validate() throws {
        guard let idle = parseInterval(idleTimeout), idle >= 1, idle <= 3600 else {
            throw ValidationError("--idle-timeout must be a duration from 1s to 1h, such as 20s or 2m.")
        }
        guard let connect = parseInterval(connectTimeout), connect >= 1, connect <= 600 else {
            throw ValidationError("--connect-timeout must be a duration from 1s to 10m, such as 10s.")
        }
        guard let seconds = parseDeadline(deadline), seconds >= 1, seconds <= 30 * 86_400 else {
            throw ValidationError("--deadline must be a duration from 1s to 30d, such as 30m, 2h or 1d.")
        }
        if !untilDone, deadline != "1h" { throw ValidationError("--deadline goes with --until-done.") }
    }

    /// The transport's limits from the options.
    var timeouts: HTTPTransport.Timeouts {
        HTTPTransport.Timeouts(
            connect: .milliseconds(Int64((parseInterval(connectTimeout) ?? 10) * 1000)),
            idle: .milliseconds(Int64((parseInterval(idleTimeout) ?? 20) * 1000)))
    }

    /// With --until-done, the moment to stop trying; nil otherwise.
    var deadlineInstant: ContinuousClock.Instant? {
        guard untilDone else { return nil }
        return .now + .milliseconds(Int64((parseDeadline(deadline) ?? 3600) * 1000))
    }

    /// A duration that may also be given in days ("1d").
    private func parseDeadline(_ text: String) -> Double? {
        if text.hasSuffix("d") { return Double(text.dropLast()).map { $0 * 86_400 } }
        return parseInterval(text)
    }
}

/// Runs `body` with the process's one transport, made from `link`, and shuts the transport down
/// once afterwards, whether `body` returned or threw.
func withTransport<T>(_ link: LinkOptions, _ body: (HTTPTransport) async throws -> T) async throws -> T {
    let transport = HTTPTransport(timeouts: link.timeouts)
    let result: T
    do {
        result = try await body(transport)
    } catch {
        try? await transport.shutdown()
        throw error
    }
    try? await transport.shutdown()
    return result
}

/// The link's part of a command's result, on its own line, when the link failed on the way:
/// what was resumed and what it cost. Nothing when every request went through at once.
func linkLine(_ stats: LinkStats) -> String {
    guard stats.resumes > 0 else { return "" }
    return "\nLink: \(ProgressLine.size(Double(stats.bytesSent))) sent, "
        + "\(ProgressLine.size(Double(stats.bytesReceived))) received in \(stats.requests) request(s); "
        + "\(stats.resumes) transfer(s) resumed after a failure, \(ProgressLine.size(Double(stats.bytesResent))) moved again."
}

/// A command's JSON result with the link's figures beside its own fields (`"link": {...}`).
struct WithLink<Result: Encodable>: Encodable {
    var result: Result
    var link: LinkStats

    init(_ result: Result, link: LinkStats) {
        self.result = result
        self.link = link
    }

    private enum Keys: String, CodingKey { case link }

    func encode(to encoder: any Encoder) throws {
        try result.encode(to: encoder)
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(link, forKey: .link)
    }
}
