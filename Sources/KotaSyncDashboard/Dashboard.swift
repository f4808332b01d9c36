import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import KotaSyncCore
import KotaSyncServer
import Logging
import Mustache
import NIOCore

/// How the dashboard signs staff in and out; the server wires it to its user accounts.
public struct StaffSessions: Sendable {
    /// The outcome of a login attempt.
    public enum Outcome: Sendable {
        /// A session bearer token (it authenticates like a staff token).
        case session(String)
        case wrongCredentials
        /// Too many failures: try again after this many seconds.
        case limited(Int)
    }

    public var login: @Sendable (_ name: String, _ password: String, _ address: String?) async throws -> Outcome
    public var logout: @Sendable (_ token: String) async throws -> Void

    public init(
        login: @escaping @Sendable (String, String, String?) async throws -> Outcome,
        logout: @escaping @Sendable (String) async throws -> Void
    ) {
        self.login = login
        self.logout = logout
    }
}

extension StaffSessions {
    /// Sessions through the server's login service, shared with `POST /v1/login` so that failed
    /// attempts count together whichever door they come through.
    public init(_ logins: StaffLogins) {
        self.init(
            login: { name, password, address in
                switch try await logins.login(name: name, password: password, address: address) {
                case .session(let issued): .session(issued.token)
                case .wrongCredentials: .wrongCredentials
                case .limited(let seconds): .limited(seconds)
                }
            },
            logout: { token in _ = try await logins.logout(token: token) })
    }
}

/// The Command Center's web pages: server-rendered HTML under `/dashboard`, in Bahasa Indonesia
/// by default with an English switch, dates in the city's time zone (WIB).
///
/// Staff sign in with their account; the session is an HttpOnly, SameSite=Strict cookie holding
/// a short-lived session token. Every form carries a CSRF token derived from the session, every
/// action checks the role on the server, every value is HTML-escaped, and patient data never goes
/// into a URL (searches are POSTed).
public struct Dashboard: Sendable {
    /// What the dashboard reads and changes in the master: the overview and data browser, the
    /// review queue, tokens and accounts, the audit log.
    public typealias Store = OverviewStore & ReviewStore & CredentialStore & AuditStore

    let store: any Store
    let sessions: StaffSessions
    let logger: Logger
    let library: MustacheLibrary
    let timeZone: TimeZone
    /// Key for CSRF tokens: random per process (a restart invalidates open forms, not sessions).
    let csrfKey: [UInt8] = (0..<32).map { _ in UInt8.random(in: 0...255) }

    public init(store: any Store, sessions: StaffSessions, logger: Logger, timeZone: TimeZone? = nil) throws {
        self.store = store
        self.sessions = sessions
        self.logger = logger
        self.timeZone = timeZone ?? TimeZone(identifier: "Asia/Jakarta") ?? TimeZone(secondsFromGMT: 7 * 3600)!
        var library = MustacheLibrary()
        for (name, text) in Templates.all { try library.register(text, named: name) }
        self.library = library
    }

    static let sessionCookie = "ks_session"
    static let csrfCookie = "ks_csrf"
    static let languageCookie = "ks_lang"
    static let sessionMinutes = 8 * 60

    /// The staff member behind a request.
    struct Staff {
        var device: Device
        var token: String
        var name: String { device.name ?? device.tokenID }
        /// Whether their role opens what needs `role`: the access service's ranking, the same the
        /// HTTP API's staff routes ask.
        func may(_ role: Device.Role) -> Bool { AccessPolicy.grants(device.role, role) }
    }

    public func register(on router: Router<ServerRequestContext>) {
        router.get("/") { _, _ in Self.redirect("/dashboard") }
        router.get("/dashboard/login") { request, _ in
            try await loginPage(request, error: nil)
        }
        router.post("/dashboard/login") { request, context in
            let form = try await Self.form(request)
            guard let cookie = request.cookies[Self.csrfCookie]?.value, form["csrf"] == cookie else {
                return try await loginPage(request, error: text(request, "forbidden"), status: .forbidden)
            }
            let address = ClientAddress.of(
                peer: context.peer, forwardedFor: request.headers[.init("X-Forwarded-For")!],
                trusted: store.config.trustedProxies)
            switch try await sessions.login(form["name"] ?? "", form["password"] ?? "", address) {
            case .session(let token):
                var response = Self.redirect("/dashboard")
                response.setCookie(
                    Cookie(
                        name: Self.sessionCookie, value: token, maxAge: Self.sessionMinutes * 60, path: "/dashboard",
                        secure: Self.isSecure(request), httpOnly: true, sameSite: .strict))
                return response
            case .wrongCredentials:
                return try await loginPage(request, error: text(request, "loginFailed"), status: .unauthorized)
            case .limited:
                return try await loginPage(request, error: text(request, "loginLimited"), status: .tooManyRequests)
            }
        }
        router.post("/dashboard/logout") { request, _ in
            let staff = try await authorised(request, .viewer, form: Self.form(request))
            try await sessions.logout(staff.token)
            var response = Self.redirect("/dashboard/login")
            response.setCookie(
                Cookie(
                    name: Self.sessionCookie, value: "", maxAge: 0, path: "/dashboard", httpOnly: true,
                    sameSite: .strict))
            return response
        }
        router.get("/dashboard/lang/:lang") { request, context in
            let lang = Language(rawValue: context.parameters.get("lang") ?? "") ?? .id
            var response = Self.redirect("/dashboard")
            response.setCookie(
                Cookie(
                    name: Self.languageCookie, value: lang.rawValue, maxAge: 365 * 86_400, path: "/", httpOnly: true,
                    sameSite: .lax))
            return response
        }
        router.get("/dashboard") { request, _ in
            try await page(request) { staff in try await overview(request, staff) }
        }
        router.get("/dashboard/conflicts") { request, _ in
            try await page(request) { staff in try await conflicts(request, staff) }
        }
        router.get("/dashboard/conflicts/:id") { request, context in
            try await page(request) { staff in
                try await conflict(request, staff, id: try Self.id(context), flash: nil)
            }
        }
        router.post("/dashboard/conflicts/:id/resolve") { request, context in
            let form = try await Self.form(request)
            return try await page(request) { staff in
                let staff = try await authorised(request, .reviewer, form: form)
                let id = try Self.id(context)
                try await resolve(id, form: form, staff: staff)
                return try await conflict(request, staff, id: id, flash: text(request, "decisionSaved"))
            }
        }
        router.post("/dashboard/conflicts/:id/bulk") { request, context in
            let form = try await Self.form(request)
            return try await page(request) { staff in
                let staff = try await authorised(request, .reviewer, form: form)
                let id = try Self.id(context)
                let count = try await bulkResolve(id, form: form, staff: staff)
                return try await conflict(request, staff, id: id, flash: "\(text(request, "decisionSaved")) (\(count))")
            }
        }
        router.get("/dashboard/data") { request, _ in
            try await page(request) { staff in try await tables(request, staff) }
        }
        router.get("/dashboard/data/:table") { request, context in
            try await page(request) { staff in
                try await table(request, staff, name: context.parameters.get("table") ?? "", form: Form(""))
            }
        }
        router.post("/dashboard/data/:table") { request, context in
            let form = try await Self.form(request)
            return try await page(request) { staff in
                let staff = try await authorised(request, .viewer, form: form)
                return try await table(request, staff, name: context.parameters.get("table") ?? "", form: form)
            }
        }
        router.get("/dashboard/audit") { request, _ in
            try await page(request) { staff in try await audit(request, staff) }
        }
        router.get("/dashboard/tokens") { request, _ in
            try await page(request) { staff in try await tokens(request, staff, issued: nil) }
        }
        router.post("/dashboard/tokens") { request, _ in
            let form = try await Self.form(request)
            return try await page(request) { staff in
                let staff = try await authorised(request, .admin, form: form)
                let opd = form["opd"] ?? ""
                let issued = try await store.createToken(opd: opd, expiresAt: nil)
                audit(staff, "dashboard.token.create", ["token_id": issued.id, "opd": opd])
                return try await tokens(request, staff, issued: issued.token)
            }
        }
        router.post("/dashboard/tokens/:id/revoke") { request, context in
            let form = try await Self.form(request)
            return try await page(request) { staff in
                let staff = try await authorised(request, .admin, form: form)
                let id = context.parameters.get("id") ?? ""
                _ = try await store.revokeToken(id: id)
                audit(staff, "dashboard.token.revoke", ["token_id": id])
                return try await tokens(request, staff, issued: nil)
            }
        }
        router.get("/dashboard/users") { request, _ in
            try await page(request) { staff in try await users(request, staff) }
        }
        router.post("/dashboard/users") { request, _ in
            let form = try await Self.form(request)
            return try await page(request) { staff in
                let staff = try await authorised(request, .admin, form: form)
                guard let role = form["role"].flatMap(Device.Role.init(rawValue:)), role != .device else {
                    throw SyncError(.badRequest, "Choose viewer, reviewer or admin.")
                }
                let user = try await store.addUser(
                    name: form["name"] ?? "", role: role, password: form["password"] ?? "")
                audit(staff, "dashboard.user.add", ["user": user.name, "role": role.rawValue])
                return try await users(request, staff)
            }
        }
        router.post("/dashboard/users/remove") { request, _ in
            let form = try await Self.form(request)
            return try await page(request) { staff in
                let staff = try await authorised(request, .admin, form: form)
                let name = form["name"] ?? ""
                try await store.removeUser(name: name)
                audit(staff, "dashboard.user.remove", ["user": name])
                return try await users(request, staff)
            }
        }
        router.get("/dashboard/data/:table/row/:key") { request, context in
            try await page(request) { staff in
                try await history(
                    request, staff, table: context.parameters.get("table") ?? "",
                    hex: context.parameters.get("key") ?? "")
            }
        }
    }

    // MARK: - Pages

    private func overview(_ request: Request, _ staff: Staff) async throws -> Response {
        let o = try await store.overview(timeZone: timeZone)
        let now = Date()
        let devices: [[String: Any]] = o.devices.map { d in
            let lastContact = [d.lastPushAt, d.lastPullAt].compactMap { $0.flatMap(Timestamp.date) }.max()
            let age = lastContact.map { now.timeIntervalSince($0) } ?? .infinity
            let (cls, label): (String, String) =
                d.lastError != nil || age > 7 * 86_400 || d.refused > 0
                ? ("bad", "down")
                : (age > 86_400 || d.waiting > 0 || (d.pending ?? 0) > 0 ? ("warn", "attention") : ("ok", "healthy"))
            return [
                "healthClass": cls, "healthLabel": text(request, label), "opd": d.opd,
                "replica": String(d.replicaId.uuidString.prefix(8)),
                "lastPush": d.lastPushAt.map(wib) ?? text(request, "never"),
                "lastPull": d.lastPullAt.map(wib) ?? text(request, "never"),
                "pending": d.pending.map(String.init) ?? "–", "refused": d.refused,
                "waiting": d.waiting, "lag": d.lag.map(String.init) ?? "–", "client": d.clientVersion ?? "–",
                "lastError": d.lastError ?? "",
            ]
        }
        let days = Self.days(count: 14, until: now, timeZone: timeZone)
        let opds = Set(o.changesPerDay.values.flatMap(\.keys)).sorted()
        let changes = Charts.stackedBars(
            days: days, series: opds.map { opd in (opd, days.map { o.changesPerDay[$0]?[opd] ?? 0 }) },
            id: "changes-chart")
        let conflicts = Charts.stackedBars(
            days: days, series: [(text(request, "conflicts"), days.map { o.conflictsPerDay[$0] ?? 0 })],
            id: "conflicts-chart")
        return try render(
            "overview", request, staff, nav: "overview", title: text(request, "overview"),
            [
                "masterVersion": o.masterVersion,
                "totals": o.rows.sorted { $0.key < $1.key }.map { ["label": $0.key, "count": $0.value] },
                "records": o.records.sorted { $0.key < $1.key }.map { ["status": $0.key, "count": $0.value] },
                "devices": devices, "changesChart": changes, "conflictsChart": conflicts,
            ])
    }

    private func conflicts(_ request: Request, _ staff: Staff) async throws -> Response {
        let query = request.uri.queryParameters
        let status = query.get("status").flatMap { $0.isEmpty ? nil : $0 }
        let tableName = query.get("table").flatMap { $0.isEmpty ? nil : $0 }
        let opd = query.get("opd").flatMap { $0.isEmpty ? nil : $0 }
        let age = query.get("age") ?? ""
        let list = try await store.reviewConflicts(
            ReviewFilter(status: status, table: tableName, opd: opd, limit: 1000))
        let now = Date()
        let records = list.conflicts.filter { r in
            guard let decided = Timestamp.date(r.decidedAt) else { return true }
            switch age {
            case "day": return now.timeIntervalSince(decided) <= 86_400
            case "week": return now.timeIntervalSince(decided) <= 7 * 86_400
            case "older": return now.timeIntervalSince(decided) > 7 * 86_400
            default: return true
            }
        }
        func options(_ values: [String], selected: String?, any: String) -> [[String: Any]] {
            [["value": "", "label": text(request, any), "selected": selected == nil]]
                + values.map { ["value": $0, "label": $0, "selected": $0 == selected] }
        }
        let config = store.config
        return try render(
            "conflicts", request, staff, nav: "conflicts", title: text(request, "conflicts"),
            [
                "viewer": !staff.may(.reviewer),
                "statuses": options(ConflictReport.Status.allCases.map(\.rawValue), selected: status, any: "anyStatus"),
                "tables": options(config.tables.map(\.name), selected: tableName, any: "anyTable"),
                "opds": options(config.opds.map(\.id) + ["master"], selected: opd, any: "anyOPD"),
                "ages": [
                    ["value": "", "label": text(request, "anyAge"), "selected": age.isEmpty],
                    ["value": "day", "label": text(request, "lastDay"), "selected": age == "day"],
                    ["value": "week", "label": text(request, "lastWeek"), "selected": age == "week"],
                    ["value": "older", "label": text(request, "olderWeek"), "selected": age == "older"],
                ],
                "records": records.map { r -> [String: Any] in
                    [
                        "id": r.id, "status": r.status, "kind": r.kind.rawValue, "table": r.table,
                        "column": r.column ?? "",
                        "policy": r.policy, "winner": "\(r.winner?.opd ?? "-") \(Self.show(r.winner?.value))",
                        "loser": "\(r.loser?.opd ?? "-") \(Self.show(r.loser?.value))", "decided": wib(r.decidedAt),
                    ]
                },
            ])
    }

    private func conflict(_ request: Request, _ staff: Staff, id: Int64, flash: String?) async throws -> Response {
        let r = try await store.reviewConflict(id: id)
        guard let table = store.config.table(named: r.table) else {
            throw SyncError(.notFound, "Table \(r.table) no longer replicates.")
        }
        var fields: [[String: Any]] = []
        if let column = r.column {
            fields.append([
                "name": column, "base": Self.show(r.base), "remote": Self.show(r.loser?.value),
                "local": Self.show(r.winner?.value), "differs": r.loser?.value != r.winner?.value,
            ])
        } else if let held = r.held {
            // A row kept out of the master: every column, the incoming row against the master's.
            let related = r.related.flatMap { ref in ref.table == r.table ? ref.primaryKey : nil } ?? r.primaryKey
            let current = try await store.browseRow(table: r.table, key: related)
            for (c, name) in (table.primaryKey.map(\.name) + table.columns.map(\.name)).enumerated() {
                let local = current?[c]
                fields.append([
                    "name": name, "base": "", "remote": Self.show(held.values[name]), "local": Self.show(local),
                    "differs": held.values[name] != local,
                ])
            }
        }
        let identical = try await identicalCases(r).count
        return try render(
            "conflict", request, staff, nav: "conflicts", title: "#\(id)",
            [
                "id": r.id, "kind": r.kind.rawValue, "table": r.table, "column": r.column ?? "", "status": r.status,
                "policy": r.policy, "decided": wib(r.decidedAt),
                "key": r.primaryKey.map(\.description).joined(separator: ", "),
                "historyLink": "/dashboard/data/\(r.table)/row/\(Self.hex(r.primaryKey))",
                "reason": r.reason ?? explanation(request, policy: r.policy) ?? false,
                "loserOPD": r.loser?.opd ?? "-", "winnerOPD": r.winner?.opd ?? "-", "fields": fields,
                "related": r.related.map { "\($0.table) \($0.primaryKey.map(\.description).joined(separator: ", "))" }
                    ?? "",
                "resolution": r.resolution.map { res -> [String: Any] in
                    [
                        "by": res.by, "at": wib(res.at), "take": res.take.rawValue, "note": res.note ?? "",
                        "values": (res.values ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key) = \($0.value)" }
                            .joined(separator: ", "),
                    ]
                } ?? false,
                "canResolve": staff.may(.reviewer) && ["open", "auto", "held"].contains(r.status),
                "settable": r.column != nil || r.held != nil,
                "identical": identical > 1 ? identical : false, "flash": flash ?? false,
            ])
    }

    /// Why a policy decided as it did, in the page's language.
    func explanation(_ request: Request, policy: String) -> String? {
        let key = policy.hasPrefix("authority:") ? "policy.authority" : "policy.\(policy)"
        guard Strings.table[key] != nil else { return nil }
        return text(request, key).replacingOccurrences(of: "%@", with: String(policy.dropFirst("authority:".count)))
    }

    private func tables(_ request: Request, _ staff: Staff) async throws -> Response {
        let o = try await store.overview(days: 1, timeZone: timeZone)
        return try render(
            "tables", request, staff, nav: "data", title: text(request, "data"),
            ["tables": store.config.tables.map { ["name": $0.name, "rows": o.rows[$0.name] ?? 0] }])
    }

    /// The data browser's page number: 0 … 2^31 − 1 (a hundred billion rows at 50 a page), so
    /// that neither its offset nor the next page's number can overflow.
    static let pageField = IntegerField("page", 0...Int64(Int32.max))

    private func table(_ request: Request, _ staff: Staff, name: String, form: Form) async throws -> Response {
        let q = form["q"] ?? ""
        let sort = form["sort"] ?? ""
        let desc = form["desc"] == "1"
        let pageIndex = Int(try Self.pageField.parse(form["page"], default: 0))
        let size = 50
        let page = try await store.browse(
            table: name, search: q.isEmpty ? nil : q, sort: sort.isEmpty ? nil : sort, descending: desc,
            page: pageIndex,
            pageSize: size)
        let pages = max(1, (page.total + size - 1) / size)
        let keyCount =
            page.columns.count - (page.rows.first?.values.count ?? store.config.table(named: name)!.columns.count)
        return try render(
            "table", request, staff, nav: "data", title: name,
            [
                "table": name, "q": q, "sort": sort, "desc": desc ? "1" : "0", "total": page.total,
                "pageNumber": pageIndex + 1, "pages": pages,
                "columns": page.columns.map { ["name": $0, "nextDesc": ($0 == sort && !desc) ? "1" : "0"] },
                "rows": page.rows.map { row -> [String: Any] in
                    [
                        "cells": (row.key + row.values).map(Self.show), "lastChangedBy": row.lastChangedBy ?? "–",
                        "historyLink": "/dashboard/data/\(name)/row/\(Self.hex(row.key))",
                    ]
                },
                "previousPage": pageIndex > 0 ? String(pageIndex - 1) : false,
                "nextPage": pageIndex + 1 < pages ? String(pageIndex + 1) : false, "keyCount": keyCount,
            ])
    }

    private func history(_ request: Request, _ staff: Staff, table: String, hex: String) async throws -> Response {
        guard let bytes = Self.unhex(hex), let key = try? PrimaryKeyCoding.decode(bytes) else {
            throw SyncError(.badRequest, "Not a row key.")
        }
        let versions = try await store.history(table: table, key: key)
        func list(_ values: [String: SQLValue]?) -> String {
            guard let values else { return text(request, "deleted") }
            return values.sorted { $0.key < $1.key }.map { "\($0.key) = \($0.value)" }.joined(separator: ", ")
        }
        return try render(
            "history", request, staff, nav: "data", title: text(request, "history"),
            [
                "table": table, "key": key.map(\.description).joined(separator: ", "),
                "versions": versions.map { v -> [String: Any] in
                    let when = UInt64(v.stamp).map { Date(timeIntervalSince1970: Double($0 >> 16) / 1000) }
                    return [
                        "version": v.version, "when": when.map { wib(Timestamp.string($0)) } ?? v.stamp, "opd": v.opd,
                        "operation": v.operation, "replaced": list(v.replaced), "after": list(v.values),
                    ]
                },
            ])
    }

    private func audit(_ request: Request, _ staff: Staff) async throws -> Response {
        let query = request.uri.queryParameters
        let opd = query.get("opd").flatMap { $0.isEmpty ? nil : $0 }
        let age = query.get("age") ?? "week"
        let since: Date? =
            switch age {
            case "day": Date().addingTimeInterval(-86_400)
            case "week": Date().addingTimeInterval(-7 * 86_400)
            default: nil
            }
        let entries = try await store.auditEntries(since: since, opd: opd, after: 0, limit: 500)
        return try render(
            "audit", request, staff, nav: "audit", title: text(request, "audit"),
            [
                "opds": [["value": "", "label": text(request, "anyOPD"), "selected": opd == nil]]
                    + store.config.opds.map { ["value": $0.id, "label": $0.id, "selected": $0.id == opd] },
                "ages": [
                    ["value": "day", "label": text(request, "lastDay"), "selected": age == "day"],
                    ["value": "week", "label": text(request, "lastWeek"), "selected": age == "week"],
                    ["value": "all", "label": text(request, "anyAge"), "selected": age == "all"],
                ],
                "entries": entries.reversed().map { e -> [String: Any] in
                    [
                        "id": e.id, "when": wib(e.at), "who": "\(e.actor) (\(e.actorKind))", "opd": e.opd ?? "",
                        "action": e.action, "outcome": "\(e.status)\(e.code.map { " \($0)" } ?? "")",
                    ]
                },
            ])
    }

    private func tokens(_ request: Request, _ staff: Staff, issued: String?) async throws -> Response {
        guard staff.may(.admin) else { throw SyncError(.forbidden, text(request, "forbidden")) }
        let list = try await store.tokens()
        return try render(
            "tokens", request, staff, nav: "tokens", title: text(request, "tokens"),
            [
                "issued": issued ?? false,
                "tokens": list.map { t -> [String: Any] in
                    [
                        "id": t.id, "role": t.role, "owner": t.opd ?? t.name ?? "", "created": wib(t.createdAt),
                        "expires": t.expiresAt.map(wib) ?? "–", "revoked": t.revokedAt.map(wib) ?? false,
                    ]
                },
                "opds": store.config.opds.map { ["value": $0.id, "label": "\($0.id) — \($0.name)"] },
            ])
    }

    private func users(_ request: Request, _ staff: Staff) async throws -> Response {
        guard staff.may(.admin) else { throw SyncError(.forbidden, text(request, "forbidden")) }
        let list = try await store.users()
        return try render(
            "users", request, staff, nav: "users", title: text(request, "users"),
            ["users": list.map { ["name": $0.name, "role": $0.role, "created": wib($0.createdAt)] }])
    }

    // MARK: - Actions

    /// Records a staff member's action in the audit log (never values, only ids).
    private func audit(_ staff: Staff, _ action: String, _ detail: [String: String]) {
        store.recordAudit(
            AuditEntry(actor: staff.name, actorKind: "dashboard", action: action, status: 200, detail: detail))
    }

    private func resolve(_ id: Int64, form: Form, staff: Staff) async throws {
        guard let take = form["take"].flatMap(ResolutionChoice.init(rawValue:)) else {
            throw SyncError(.badRequest, "Choose local, remote or merged.")
        }
        let record = try await store.reviewConflict(id: id)
        var set: [String: SQLValue] = [:]
        if let table = store.config.table(named: record.table) {
            for column in table.columns {
                guard let text = form["set.\(column.name)"], !text.isEmpty else { continue }
                set[column.name] = try column.value(fromLiteral: text)
            }
        }
        let note = form["note"].flatMap { $0.isEmpty ? nil : $0 }
        _ = try await store.resolveConflict(
            id: id, ResolveRequest(take: take, set: set.isEmpty ? nil : set, note: note), by: staff.name)
        logger.info(
            "conflict resolved from the dashboard", metadata: ["conflict_id": "\(id)", "take": "\(take.rawValue)"])
    }

    /// Records standing like this one: same table, column, kind and policy, same values on both sides.
    private func identicalCases(_ r: ConflictReport) async throws -> [ConflictReport] {
        guard ["open", "auto"].contains(r.status), r.column != nil else { return [] }
        var out: [ConflictReport] = []
        for status in ["open", "auto"] {
            var after: Int64 = 0
            while true {
                let list = try await store.reviewConflicts(
                    ReviewFilter(status: status, table: r.table, after: after, limit: 1000))
                out += list.conflicts.filter {
                    $0.column == r.column && $0.kind == r.kind && $0.policy == r.policy
                        && $0.loser?.value == r.loser?.value && $0.winner?.value == r.winner?.value
                }
                guard let next = list.next else { break }
                after = next
            }
        }
        return out
    }

    private func bulkResolve(_ id: Int64, form: Form, staff: Staff) async throws -> Int {
        guard let take = form["take"].flatMap(ResolutionChoice.init(rawValue:)), take != .merged else {
            throw SyncError(.badRequest, "Choose local or remote.")
        }
        var count = 0
        for record in try await identicalCases(try await store.reviewConflict(id: id)) {
            _ = try await store.resolveConflict(
                id: record.id, ResolveRequest(take: take, note: "bulk: identical to #\(id)"), by: staff.name)
            audit(staff, "dashboard.conflict.resolve", ["conflict_id": String(record.id), "take": take.rawValue])
            count += 1
        }
        return count
    }

    // MARK: - Plumbing

    /// Runs a page for a signed-in staff member; sends others to the login page, and turns
    /// errors into a page with the error's message.
    func page(_ request: Request, _ body: (Staff) async throws -> Response) async throws -> Response {
        guard let staff = try await staff(request) else { return Self.redirect("/dashboard/login") }
        do {
            return try await body(staff)
        } catch let error as SyncError {
            let status: HTTPResponse.Status = .init(code: error.code.httpStatus)
            return try render(
                "message", request, staff, nav: "", title: error.code.rawValue,
                [
                    "heading": error.code == .forbidden ? text(request, "forbidden") : error.code.rawValue,
                    "text": error.message,
                ],
                status: status)
        }
    }

    func staff(_ request: Request) async throws -> Staff? {
        guard let token = request.cookies[Self.sessionCookie]?.value, !token.isEmpty,
            let device = try await store.authenticate(token: token), !AccessPolicy.isDevice(device.role)
        else { return nil }
        return Staff(device: device, token: token)
    }

    /// The staff member, if signed in with `role` or above and the form carries their CSRF token.
    func authorised(_ request: Request, _ role: Device.Role, form: Form) async throws -> Staff {
        guard let staff = try await staff(request) else {
            throw SyncError(.unauthorized, "Sign in again.")
        }
        guard let csrf = form["csrf"], csrf == self.csrf(for: staff.token) else {
            throw SyncError(.forbidden, "The form expired or did not come from this dashboard; reload the page.")
        }
        guard staff.may(role) else {
            throw SyncError(.forbidden, "Your role (\(staff.device.role.rawValue)) may not do this.")
        }
        return staff
    }

    func csrf(for token: String) -> String {
        HMAC<SHA256>.authenticationCode(for: Data(token.utf8), using: SymmetricKey(data: csrfKey))
            .map { String(format: "%02x", $0) }.joined()
    }

    private func loginPage(_ request: Request, error: String?, status: HTTPResponse.Status = .ok) async throws
        -> Response
    {
        let csrf = request.cookies[Self.csrfCookie]?.value ?? UUID().uuidString
        var response = try render(
            "login", request, nil, nav: "", title: text(request, "login"), ["csrf": csrf, "error": error ?? false],
            status: status)
        response.setCookie(
            Cookie(
                name: Self.csrfCookie, value: csrf, path: "/dashboard", secure: Self.isSecure(request), httpOnly: true,
                sameSite: .strict))
        return response
    }

    func language(_ request: Request) -> Language {
        request.cookies[Self.languageCookie].flatMap { Language(rawValue: $0.value) } ?? .id
    }

    func text(_ request: Request, _ key: String) -> String {
        let entry = Strings.table[key]
        return language(request) == .id ? entry?.id ?? key : entry?.en ?? key
    }

    func render(
        _ template: String, _ request: Request, _ staff: Staff?, nav: String, title: String, _ values: [String: Any],
        status: HTTPResponse.Status = .ok
    ) throws -> Response {
        var context = values
        context["t"] = Strings.texts(language(request))
        context["lang"] = language(request).rawValue
        context["title"] = title
        context["nav"] = [nav: true]
        if let staff {
            context["user"] = ["name": staff.name, "role": staff.device.role.rawValue, "csrf": csrf(for: staff.token)]
            context["csrf"] = csrf(for: staff.token)
            context["isAdmin"] = staff.may(.admin)
        }
        guard let html = library.render(context, withTemplate: template) else {
            throw SyncError(.internalError, "The page \(template) could not be rendered.")
        }
        return Response(
            status: status,
            headers: [
                .contentType: "text/html; charset=utf-8", .cacheControl: "no-store",
                .init("X-Frame-Options")!: "DENY", .init("Referrer-Policy")!: "no-referrer",
                .contentSecurityPolicy: "default-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:",
            ],
            body: ResponseBody(byteBuffer: ByteBuffer(string: html)))
    }

    static func redirect(_ location: String) -> Response {
        Response(status: .seeOther, headers: [.location: location, .cacheControl: "no-store"])
    }

    static func form(_ request: Request) async throws -> Form {
        let buffer = try await request.body.collect(upTo: 1 << 20)
        return Form(String(buffer: buffer))
    }

    static func id(_ context: ServerRequestContext) throws -> Int64 {
        guard let id = context.parameters.get("id").flatMap(Int64.init) else {
            throw SyncError(.badRequest, "Not a record id.")
        }
        return id
    }

    static func isSecure(_ request: Request) -> Bool {
        request.uri.scheme?.rawValue == "https" || request.headers[.init("X-Forwarded-Proto")!] == "https"
    }

    static func show(_ value: SQLValue?) -> String {
        guard let value else { return "–" }
        switch value {
        case .null: return "NULL"
        case .text(let s): return s
        default: return value.description
        }
    }

    static func hex(_ key: [SQLValue]) -> String {
        PrimaryKeyCoding.encode(key).map { String(format: "%02x", $0) }.joined()
    }

    static func unhex(_ text: String) -> [UInt8]? {
        guard text.count % 2 == 0, text.count <= 4096 else { return nil }
        var out: [UInt8] = []
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(index, offsetBy: 2)
            guard let byte = UInt8(text[index..<next], radix: 16) else { return nil }
            out.append(byte)
            index = next
        }
        return out
    }

    /// The last `count` days up to `until`, as `YYYY-MM-DD` in `timeZone`.
    static func days(count: Int, until: Date, timeZone: TimeZone) -> [String] {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        return (0..<count).reversed().map { back in
            let day = calendar.date(byAdding: .day, value: -back, to: until)!
            let c = calendar.dateComponents([.year, .month, .day], from: day)
            return String(format: "%04d-%02d-%02d", c.year!, c.month!, c.day!)
        }
    }

    /// An ISO 8601 time as the city reads it: `29-11-2026 19:25 WIB`.
    func wib(_ iso: String) -> String {
        guard let date = Timestamp.date(iso) else { return iso }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute], from: date)
        let zone = timeZone.secondsFromGMT(for: date) == 7 * 3600 ? "WIB" : timeZone.abbreviation(for: date) ?? ""
        return String(format: "%02d-%02d-%04d %02d:%02d ", c.day!, c.month!, c.year!, c.hour!, c.minute!) + zone
    }
}
