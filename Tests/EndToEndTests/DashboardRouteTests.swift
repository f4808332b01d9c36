import Foundation
import GRDB
import KotaSyncClient
import KotaSyncCore
import KotaSyncDashboard
import KotaSyncServer
import Logging
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// A browser-like HTTP client for the dashboard: keeps cookies, does not follow redirects.
final class Browser: NSObject, URLSessionTaskDelegate, @unchecked Sendable {
    struct Page {
        var status: Int
        var location: String?
        var setCookies: [String]
        var html: String
    }

    let base: URL
    var cookies: [String: String] = [:]
    lazy var session = URLSession(configuration: .ephemeral, delegate: self, delegateQueue: nil)

    init(_ base: URL) { self.base = base }

    func urlSession(
        _ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
        newRequest request: URLRequest, completionHandler: @escaping @Sendable (URLRequest?) -> Void
    ) { completionHandler(nil) }

    func get(_ path: String) async throws -> Page { try await send("GET", path, form: nil) }

    func post(_ path: String, _ form: [String: String]) async throws -> Page {
        try await send("POST", path, form: form)
    }

    func send(_ method: String, _ path: String, form: [String: String]?) async throws -> Page {
        var request = URLRequest(url: URL(string: base.absoluteString + path)!)
        request.httpMethod = method
        request.httpShouldHandleCookies = false
        if !cookies.isEmpty {
            request.setValue(
                cookies.map { "\($0.key)=\($0.value)" }.joined(separator: "; "), forHTTPHeaderField: "Cookie")
        }
        if let form {
            var allowed = CharacterSet.alphanumerics
            allowed.insert(charactersIn: "-._~")
            request.httpBody = Data(
                form.map {
                    "\($0.key.addingPercentEncoding(withAllowedCharacters: allowed)!)=\($0.value.addingPercentEncoding(withAllowedCharacters: allowed)!)"
                }.joined(separator: "&").utf8)
            request.setValue("application/x-www-form-urlencoded", forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await session.data(for: request)
        let http = response as! HTTPURLResponse
        var setCookies: [String] = []
        for (name, value) in http.allHeaderFields where "\(name)".lowercased() == "set-cookie" {
            setCookies += "\(value)".components(separatedBy: ", ks_").enumerated().map {
                $0.offset == 0 ? $0.element : "ks_" + $0.element
            }
        }
        for line in setCookies {
            let pair = line.split(separator: ";")[0].split(separator: "=", maxSplits: 1).map(String.init)
            guard pair.count == 2 else { continue }
            if pair[1].isEmpty { cookies[pair[0]] = nil } else { cookies[pair[0]] = pair[1] }
        }
        return Page(
            status: http.statusCode, location: http.value(forHTTPHeaderField: "Location"), setCookies: setCookies,
            html: String(decoding: data, as: UTF8.self))
    }

    /// The value of the hidden `csrf` field of the last page's forms.
    static func csrf(_ html: String) -> String? {
        guard let range = html.range(of: "name=\"csrf\" value=\"") else { return nil }
        return String(html[range.upperBound...].prefix { $0 != "\"" })
    }
}

/// The dashboard's routes on a real server: sign-in, roles, CSRF, escaping, language, and the
/// pages over records made by real pushes.
@Suite(.serialized)
struct DashboardRouteTests {
    static let accounts: [String: (password: String, role: Device.Role)] = [
        "rina": ("sandi-rina-123", .reviewer), "budi": ("sandi-budi-123", .viewer),
    ]

    static func withDashboard(_ body: (URL, SQLiteMasterStore, URL) async throws -> Void) async throws {
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        try await InProcessServerTests.withServer(
            routes: { store in
                let dashboard = try Dashboard(
                    store: store, sessions: StaffSessions(StaffLogins(store: store, limits: store.config.limits)),
                    logger: logger)
                return { router in dashboard.register(on: router) }
            },
            { url, store, dir in
                for (name, account) in Self.accounts {
                    _ = try await store.addUser(name: name, role: account.role, password: account.password)
                }
                try await body(url, store, dir)
            })
    }

    static func login(_ browser: Browser, _ name: String) async throws {
        let page = try await browser.get("/dashboard/login")
        let csrf = try #require(Browser.csrf(page.html))
        let response = try await browser.post(
            "/dashboard/login", ["name": name, "password": accounts[name]!.password, "csrf": csrf])
        try #require(response.status == 303, "login: \(response.status) \(response.html)")
    }

    @Test func signInIsRequiredAndTheSessionCookieIsHttpOnlyAndStrict() async throws {
        try await Self.withDashboard { url, _, _ in
            let browser = Browser(url)
            let anonymous = try await browser.get("/dashboard")
            #expect(anonymous.status == 303)
            #expect(anonymous.location == "/dashboard/login")
            let page = try await browser.get("/dashboard/login")
            #expect(page.html.contains("Kata sandi"), "Bahasa Indonesia by default")
            let csrf = try #require(Browser.csrf(page.html))
            let wrong = try await browser.post("/dashboard/login", ["name": "rina", "password": "salah", "csrf": csrf])
            #expect(wrong.status == 401)
            #expect(wrong.html.contains("Nama atau kata sandi salah."))
            let forged = try await browser.post(
                "/dashboard/login", ["name": "rina", "password": Self.accounts["rina"]!.password, "csrf": "forged"])
            #expect(forged.status == 403, "a login form from elsewhere is refused")
            let ok = try await browser.post(
                "/dashboard/login", ["name": "rina", "password": Self.accounts["rina"]!.password, "csrf": csrf])
            #expect(ok.status == 303)
            let cookie = try #require(ok.setCookies.first { $0.hasPrefix("ks_session=") })
            #expect(cookie.contains("HttpOnly"))
            #expect(cookie.contains("SameSite=Strict"))
            let overview = try await browser.get("/dashboard")
            #expect(overview.status == 200)
            #expect(overview.html.contains("id=\"devices\""))
            #expect(overview.html.contains("<svg id=\"changes-chart\""))
        }
    }

    @Test func aReviewerResolvesWithTheFormsCSRFTokenAndAViewerCannot() async throws {
        try await Self.withDashboard { url, store, dir in
            _ = try await ConflictScenario.make(url: url, store: store, dir: dir)
            let record = try #require(
                try await store.reviewConflicts(ReviewFilter(table: "patients")).conflicts.first {
                    $0.column == "phone"
                })
            let reviewer = Browser(url)
            try await Self.login(reviewer, "rina")
            let queue = try await reviewer.get("/dashboard/conflicts?table=patients")
            #expect(queue.html.contains("/dashboard/conflicts/\(record.id)"))
            let page = try await reviewer.get("/dashboard/conflicts/\(record.id)")
            #expect(page.html.contains("id=\"three-way\""))
            #expect(page.html.contains("0811-1111") && page.html.contains("0822-2222"))
            let csrf = try #require(Browser.csrf(page.html))

            let noToken = try await reviewer.post("/dashboard/conflicts/\(record.id)/resolve", ["take": "remote"])
            #expect(noToken.status == 403)
            #expect(try await store.reviewConflict(id: record.id).status != "resolved")

            let viewer = Browser(url)
            try await Self.login(viewer, "budi")
            let viewerPage = try await viewer.get("/dashboard/conflicts/\(record.id)")
            #expect(!viewerPage.html.contains("id=\"resolve-form\""), "a viewer is offered no resolve form")
            let viewerPost = try await viewer.post(
                "/dashboard/conflicts/\(record.id)/resolve",
                ["take": "remote", "csrf": try #require(Browser.csrf(viewerPage.html))])
            #expect(viewerPost.status == 403)
            #expect(try await store.reviewConflict(id: record.id).status != "resolved")

            let done = try await reviewer.post(
                "/dashboard/conflicts/\(record.id)/resolve",
                ["take": "remote", "note": "<b>ditelepon</b>", "csrf": csrf])
            #expect(done.status == 200)
            #expect(done.html.contains("Keputusan disimpan."))
            #expect(done.html.contains("&lt;b&gt;ditelepon&lt;/b&gt;"), "output is escaped")
            let resolved = try await store.reviewConflict(id: record.id)
            #expect(resolved.status == "resolved")
            #expect(resolved.resolution?.by == "rina")
            let row = try await store.browseRow(table: "patients", key: [.text(ConflictScenario.siti)])
            #expect(row?.contains((resolved.loser?.value)!) == true, "the master took the OPD's value")
        }
    }

    @Test func theDataBrowserSearchesByPostAndShowsARowsHistory() async throws {
        try await Self.withDashboard { url, store, dir in
            _ = try await ConflictScenario.make(url: url, store: store, dir: dir)
            let browser = Browser(url)
            try await Self.login(browser, "budi")
            // The replicas told the server who they are on each request: the overview shows it.
            var overview = ""
            for _ in 0..<50 where !overview.contains(kotaSyncClientVersion) {
                overview = try await browser.get("/dashboard").html
                if !overview.contains(kotaSyncClientVersion) { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(overview.contains(kotaSyncClientVersion), "each device's client version")
            #expect(overview.contains("pkm-kebun-lada"))
            let tables = try await browser.get("/dashboard/data")
            #expect(tables.html.contains("/dashboard/data/patients"))
            let page = try await browser.get("/dashboard/data/patients")
            let csrf = try #require(Browser.csrf(page.html))
            let found = try await browser.post("/dashboard/data/patients", ["q": "Budi", "csrf": csrf])
            #expect(found.status == 200)
            #expect(found.html.contains("Budi Santoso"))
            #expect(!found.html.contains("Rina Br Ginting"), "only matching rows")
            let link = try #require(
                found.html.range(of: "href=\"/dashboard/data/patients/row/").map { r in
                    "/dashboard/data/patients/row/" + found.html[r.upperBound...].prefix { $0 != "\"" }
                })
            let history = try await browser.get(link)
            #expect(history.status == 200)
            #expect(history.html.contains("id=\"versions\""))
            // The Siti row changed on two replicas: its history names them.
            let siti = try await browser.get(
                "/dashboard/data/patients/row/"
                    + PrimaryKeyCoding.encode([.text(ConflictScenario.siti)]).map { String(format: "%02x", $0) }
                    .joined())
            #expect(siti.html.contains("pkm-binjai-kota") && siti.html.contains("pkm-kebun-lada"))
        }
    }

    @Test func adminsManageTokensAndUsersAndEveryoneReadsTheAuditLog() async throws {
        try await Self.withDashboard { url, store, _ in
            _ = try await store.addUser(name: "ani", role: .admin, password: "sandi-ani-1234")
            let admin = Browser(url)
            let login = try await admin.get("/dashboard/login")
            _ = try await admin.post(
                "/dashboard/login",
                ["name": "ani", "password": "sandi-ani-1234", "csrf": try #require(Browser.csrf(login.html))])
            let page = try await admin.get("/dashboard/tokens")
            #expect(page.status == 200)
            let created = try await admin.post(
                "/dashboard/tokens", ["opd": "pkm-kebun-lada", "csrf": try #require(Browser.csrf(page.html))])
            let token = try #require(
                created.html.range(of: "id=\"issued-token\">").map { r in
                    String(created.html[r.upperBound...].prefix { $0 != "<" })
                })
            #expect(try await store.authenticate(token: token)?.opd == "pkm-kebun-lada")
            let id = try #require(try await store.tokens().first { $0.opd == "pkm-kebun-lada" }?.id)
            _ = try await admin.post(
                "/dashboard/tokens/\(id)/revoke", ["csrf": try #require(Browser.csrf(created.html))])
            #expect(try await store.authenticate(token: token) == nil, "revoked from the dashboard")
            let users = try await admin.get("/dashboard/users")
            #expect(users.html.contains("rina") && users.html.contains("budi"))

            let viewer = Browser(url)
            try await Self.login(viewer, "budi")
            #expect(try await viewer.get("/dashboard/tokens").status == 403, "tokens are for admins")
            try await store.flushAudit()
            let audit = try await viewer.get("/dashboard/audit")
            #expect(audit.status == 200)
            #expect(audit.html.contains("dashboard.token.revoke"), "the admin's actions are audited")
            #expect(!audit.html.contains(token), "never a token in the audit log")
        }
    }

    @Test func theLanguageSwitchesToEnglish() async throws {
        try await Self.withDashboard { url, _, _ in
            let browser = Browser(url)
            try await Self.login(browser, "budi")
            #expect(try await browser.get("/dashboard").html.contains("Perangkat"))
            let switched = try await browser.get("/dashboard/lang/en")
            #expect(switched.status == 303)
            let english = try await browser.get("/dashboard")
            #expect(english.html.contains("Devices"))
            #expect(english.html.contains("<html lang=\"en\">"))
        }
    }
}
