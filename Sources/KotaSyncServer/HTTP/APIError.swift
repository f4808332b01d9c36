import Foundation
import HTTPTypes
import Hummingbird
import KotaSyncCore
import Logging
import NIOCore
import NIOHTTP1

/// A ``SyncError`` rendered as the protocol's JSON error body with its HTTP status.
struct APIError: HTTPResponseError {
    let error: SyncError

    var status: HTTPResponse.Status { HTTPResponse.Status(code: error.code.httpStatus) }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        let body = (try? ProtocolJSON.encoder().encode(ErrorBody(error))) ?? Data()
        var headers: HTTPFields = [.contentType: "application/json"]
        if let seconds = error.retryAfterSeconds { headers[.retryAfter] = String(seconds) }
        return Response(
            status: status, headers: headers,
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }
}

/// Turns every failure of a route into the protocol's error body, so that a client always gets
/// a stable code: ``SyncError``s as they are, framework errors and the PostgreSQL master's
/// failures (``PostgresFailure``) mapped, anything else logged and answered as `internal_error`
/// without its details.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        do {
            return try await next(request, context)
        } catch let error as SyncError {
            if error.code == .internalError { logger.error("request failed", metadata: ["error": "\(error)"]) }
            throw APIError(error: error)
        } catch is NIOTooManyBytesError {
            throw APIError(error: SyncError(.bodyTooLarge, "The request body is larger than this server accepts."))
        } catch let error as HTTPParserError {
            // The request's bytes are not HTTP/1.1 (a chunk size that is not hex, a chunk
            // without its CRLF, ...): found while its body is read, so after the route began.
            // The client's fault, not the server's.
            throw APIError(
                error: SyncError(
                    .badRequest, "The request is not valid HTTP/1.1 (\(error)); its body could not be read."))
        } catch let error as HTTPError {
            let code: SyncError.Code =
                switch error.status.code {
                case 404: .notFound
                case 401: .unauthorized
                case 413: .bodyTooLarge
                case 400..<500: .badRequest
                default: .internalError
                }
            throw APIError(error: SyncError(code, error.body ?? error.status.reasonPhrase))
        } catch let error as APIError {
            throw error
        } catch let error as ConfigError {
            throw APIError(error: SyncError(.badRequest, error.message))
        } catch {
            if let failure = PostgresFailure.syncError(error) {
                // The SQLSTATE, never PostgreSQL's message: a data error's text may quote a value.
                logger.error("request failed", metadata: ["error": "\(PostgresFailure.logSummary(error) ?? "")"])
                throw APIError(error: failure)
            }
            logger.error("request failed", metadata: ["error": "\(error)"])
            throw APIError(
                error: SyncError(.internalError, "The server failed to handle the request; try again later."))
        }
    }
}
