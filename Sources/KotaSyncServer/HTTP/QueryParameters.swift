import Hummingbird
import KotaSyncCore

/// An integer query parameter, or `fallback` when it is absent; anything else is a bad request.
func integer<T: FixedWidthInteger>(_ request: Request, _ name: String, default fallback: T, minimum: T) throws -> T {
    guard let text = request.uri.queryParameters.get(name) else { return fallback }
    guard let value = T(text), value >= minimum else {
        throw SyncError(.badRequest, "`\(name)` must be an integer of at least \(minimum).")
    }
    return value
}
