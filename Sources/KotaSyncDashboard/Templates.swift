/// The dashboard's pages, as Mustache templates (rendered on the server; no JavaScript).
/// Every `{{value}}` is HTML-escaped by Mustache; `t` holds the page's texts in its language.
enum Templates {
    static let all: [String: String] = [
        "layout": layout, "login": login, "overview": overview, "conflicts": conflicts, "conflict": conflict,
        "tables": tables, "table": table, "history": history, "audit": audit, "tokens": tokens, "users": users,
        "message": message, "tableState": tableState,
    ]

    /// The data browser's state, carried by each of its forms (searches are POSTed, never in URLs).
    static let tableState = """
        <input type="hidden" name="csrf" value="{{csrf}}"><input type="hidden" name="q" value="{{q}}">
        """

    static let layout = """
        <!doctype html>
        <html lang="{{lang}}">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>{{title}} · KotaSync</title>
        <style>
        body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2733;background:#f4f6f8}
        header{background:#12395b;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1.2rem;align-items:center;flex-wrap:wrap}
        header a{color:#fff;text-decoration:none;margin-right:.8rem}
        header a.active{border-bottom:2px solid #ffd54f}
        header .who{margin-left:auto;font-size:.9rem}
        header form{display:inline}
        main{padding:1.2rem;max-width:1300px}
        table{border-collapse:collapse;background:#fff;width:100%;font-size:.9rem}
        th,td{border:1px solid #d5dbe1;padding:.35rem .5rem;text-align:left;vertical-align:top}
        th{background:#e8edf2}
        .ok{background:#e3f4e6}.warn{background:#fff5d6}.bad{background:#fde2e1}
        .pill{display:inline-block;padding:.1rem .5rem;border-radius:1rem;font-size:.8rem;background:#e8edf2}
        .pill.auto{background:#e3f4e6}.pill.open{background:#fde2e1}.pill.held{background:#fff5d6}
        .cards{display:flex;gap:1rem;flex-wrap:wrap;margin-bottom:1rem}
        .card{background:#fff;border:1px solid #d5dbe1;padding:.7rem 1rem;min-width:9rem}
        .card b{display:block;font-size:1.4rem}
        form.inline{display:inline}
        fieldset{background:#fff;border:1px solid #d5dbe1;margin:1rem 0}
        .flash{background:#e3f4e6;padding:.5rem 1rem;border:1px solid #9ccc9f}
        .error{background:#fde2e1;padding:.5rem 1rem;border:1px solid #e69a97}
        button{background:#12395b;color:#fff;border:0;padding:.35rem .8rem;cursor:pointer}
        header button{background:#fff;color:#12395b}
        code{font-size:.85rem}
        </style>
        </head>
        <body>
        <header>
        <b>KotaSync · {{t.commandCenter}}</b>
        {{#user}}
        <nav>
        <a href="/dashboard" class="{{#nav.overview}}active{{/nav.overview}}">{{t.overview}}</a>
        <a href="/dashboard/conflicts" class="{{#nav.conflicts}}active{{/nav.conflicts}}">{{t.conflicts}}</a>
        <a href="/dashboard/data" class="{{#nav.data}}active{{/nav.data}}">{{t.data}}</a>
        <a href="/dashboard/audit" class="{{#nav.audit}}active{{/nav.audit}}">{{t.audit}}</a>
        {{#isAdmin}}<a href="/dashboard/tokens" class="{{#nav.tokens}}active{{/nav.tokens}}">{{t.tokens}}</a>
        <a href="/dashboard/users" class="{{#nav.users}}active{{/nav.users}}">{{t.users}}</a>{{/isAdmin}}
        </nav>
        {{/user}}
        <span class="who">
        <a href="/dashboard/lang/id" id="lang-id">ID</a> | <a href="/dashboard/lang/en" id="lang-en">EN</a>
        {{#user}} · {{name}} ({{role}})
        <form method="post" action="/dashboard/logout"><input type="hidden" name="csrf" value="{{csrf}}"><button id="logout">{{t.logout}}</button></form>
        {{/user}}
        </span>
        </header>
        <main>
        {{#flash}}<p class="flash" id="flash">{{flash}}</p>{{/flash}}
        {{#error}}<p class="error" id="error">{{error}}</p>{{/error}}
        {{$content}}{{/content}}
        </main>
        </body>
        </html>
        """

    static let login = """
        {{<layout}}{{$content}}
        <h1>{{t.login}}</h1>
        <form method="post" action="/dashboard/login" id="login-form">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <p><label>{{t.name}}<br><input name="name" id="name" autocomplete="username" required></label></p>
        <p><label>{{t.password}}<br><input name="password" id="password" type="password" autocomplete="current-password" required></label></p>
        <p><button id="login">{{t.login}}</button></p>
        </form>
        {{/content}}{{/layout}}
        """

    static let overview = """
        {{<layout}}{{$content}}
        <h1>{{t.overview}}</h1>
        <h2>{{t.cityTotals}}</h2>
        <div class="cards">
        <div class="card">{{t.masterVersion}}<b>{{masterVersion}}</b></div>
        {{#totals}}<div class="card">{{label}}<b>{{count}}</b></div>{{/totals}}
        {{#records}}<div class="card">{{t.conflicts}}: {{status}}<b>{{count}}</b></div>{{/records}}
        </div>
        <h2>{{t.devices}}</h2>
        <table id="devices">
        <tr><th>{{t.health}}</th><th>{{t.opd}}</th><th>{{t.device}}</th><th>{{t.lastPush}}</th><th>{{t.lastPull}}</th><th>{{t.pending}}</th><th>{{t.refused}}</th><th>{{t.waiting}}</th><th>{{t.lag}}</th><th>{{t.version}}</th><th>{{t.lastError}}</th></tr>
        {{#devices}}<tr class="{{healthClass}}"><td>{{healthLabel}}</td><td>{{opd}}</td><td><code>{{replica}}</code></td><td>{{lastPush}}</td><td>{{lastPull}}</td><td>{{pending}}</td><td>{{refused}}</td><td>{{waiting}}</td><td>{{lag}}</td><td>{{client}}</td><td>{{lastError}}</td></tr>{{/devices}}
        </table>
        <h2>{{t.changesPerDay}}</h2>
        {{{changesChart}}}
        <h2>{{t.conflictsPerDay}}</h2>
        {{{conflictsChart}}}
        {{/content}}{{/layout}}
        """

    static let conflicts = """
        {{<layout}}{{$content}}
        <h1>{{t.conflicts}}</h1>
        {{#viewer}}<p>{{t.viewerNote}}</p>{{/viewer}}
        <form method="get" action="/dashboard/conflicts" id="filters">
        <select name="status">{{#statuses}}<option value="{{value}}" {{#selected}}selected{{/selected}}>{{label}}</option>{{/statuses}}</select>
        <select name="table">{{#tables}}<option value="{{value}}" {{#selected}}selected{{/selected}}>{{label}}</option>{{/tables}}</select>
        <select name="opd">{{#opds}}<option value="{{value}}" {{#selected}}selected{{/selected}}>{{label}}</option>{{/opds}}</select>
        <select name="age">{{#ages}}<option value="{{value}}" {{#selected}}selected{{/selected}}>{{label}}</option>{{/ages}}</select>
        <button id="filter">{{t.filter}}</button>
        </form>
        <br>
        <table id="queue">
        <tr><th>#</th><th>{{t.status}}</th><th>{{t.kind}}</th><th>{{t.table}}</th><th>{{t.column}}</th><th>{{t.policy}}</th><th>{{t.winner}}</th><th>{{t.loser}}</th><th>{{t.decided}}</th></tr>
        {{#records}}<tr><td><a href="/dashboard/conflicts/{{id}}" class="record-link">{{id}}</a></td><td><span class="pill {{status}}">{{status}}</span></td><td>{{kind}}</td><td>{{table}}</td><td>{{column}}</td><td>{{policy}}</td><td>{{winner}}</td><td>{{loser}}</td><td>{{decided}}</td></tr>{{/records}}
        </table>
        {{^records}}<p>{{t.noRecords}}</p>{{/records}}
        {{/content}}{{/layout}}
        """

    static let conflict = """
        {{<layout}}{{$content}}
        <h1>#{{id}} · {{kind}} · {{table}}{{#column}}.{{column}}{{/column}}</h1>
        <p><span class="pill {{status}}" id="status">{{status}}</span> {{t.policy}}: <b>{{policy}}</b> · {{t.decided}}: {{decided}} · {{t.key}}: <code>{{key}}</code>
        · <a href="{{historyLink}}" id="row-history">{{t.history}}</a></p>
        {{#reason}}<p>{{t.why}}: {{reason}}</p>{{/reason}}
        <table id="three-way">
        <tr><th>{{t.column}}</th><th>{{t.base}}</th><th>{{t.loser}} — {{loserOPD}}</th><th>{{t.winner}} — {{winnerOPD}}</th></tr>
        {{#fields}}<tr class="{{#differs}}warn{{/differs}}"><td>{{name}}</td><td>{{base}}</td><td>{{remote}}</td><td>{{local}}</td></tr>{{/fields}}
        </table>
        {{#related}}<p>{{t.related}}: {{related}}</p>{{/related}}
        {{#resolution}}<p id="resolution">{{t.resolved}} {{t.by}} {{by}}, {{at}}: {{take}} {{values}} {{#note}}— {{note}}{{/note}}</p>{{/resolution}}
        {{#canResolve}}
        <fieldset><legend>{{t.resolve}}</legend>
        <form method="post" action="/dashboard/conflicts/{{id}}/resolve" id="resolve-form">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <p><label><input type="radio" name="take" value="local" id="take-local"> {{t.takeLocal}}</label>
        <label><input type="radio" name="take" value="remote" id="take-remote" checked> {{t.takeRemote}}</label>
        <label><input type="radio" name="take" value="merged" id="take-merged"> {{t.takeMerged}}</label></p>
        {{#settable}}<p>{{#fields}}<label>{{name}} <input name="set.{{name}}" id="set-{{name}}" placeholder="{{t.value}}"></label> {{/fields}}</p>{{/settable}}
        <p><label>{{t.note}} <input name="note" id="note" size="50"></label></p>
        <p><button id="resolve">{{t.resolve}}</button></p>
        </form>
        {{#identical}}
        <form method="post" action="/dashboard/conflicts/{{id}}/bulk" id="bulk-form">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <p>{{identical}} {{t.identical}}:
        <select name="take"><option value="local">{{t.takeLocal}}</option><option value="remote">{{t.takeRemote}}</option></select>
        <button id="bulk">{{t.bulkResolve}}</button></p>
        </form>
        {{/identical}}
        </fieldset>
        {{/canResolve}}
        {{/content}}{{/layout}}
        """

    static let tables = """
        {{<layout}}{{$content}}
        <h1>{{t.data}}</h1>
        <table id="tables"><tr><th>{{t.table}}</th><th>{{t.rowsIn}}</th></tr>
        {{#tables}}<tr><td><a href="/dashboard/data/{{name}}" class="table-link">{{name}}</a></td><td>{{rows}}</td></tr>{{/tables}}
        </table>
        {{/content}}{{/layout}}
        """

    static let table = """
        {{<layout}}{{$content}}
        <h1>{{t.data}}: {{table}}</h1>
        <form method="post" action="/dashboard/data/{{table}}" id="search-form">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <input name="q" id="q" value="{{q}}" placeholder="{{t.search}}">
        <input type="hidden" name="sort" value="{{sort}}"><input type="hidden" name="desc" value="{{desc}}">
        <input type="hidden" name="page" value="0">
        <button id="search">{{t.search}}</button>
        </form>
        <p>{{total}} · {{t.page}} {{pageNumber}} {{t.of}} {{pages}}</p>
        <table id="rows">
        <tr>{{#columns}}<th><form method="post" action="/dashboard/data/{{table}}" class="inline">{{>tableState}}<input type="hidden" name="sort" value="{{name}}"><input type="hidden" name="desc" value="{{nextDesc}}"><button class="sort">{{name}}</button></form></th>{{/columns}}<th>{{t.lastChangedBy}}</th><th>{{t.history}}</th></tr>
        {{#rows}}<tr>{{#cells}}<td>{{.}}</td>{{/cells}}<td>{{lastChangedBy}}</td><td><a href="{{historyLink}}" class="history-link">{{t.history}}</a></td></tr>{{/rows}}
        </table>
        <p>
        {{#previousPage}}<form method="post" action="/dashboard/data/{{table}}" class="inline">{{>tableState}}<input type="hidden" name="sort" value="{{sort}}"><input type="hidden" name="desc" value="{{desc}}"><input type="hidden" name="page" value="{{previousPage}}"><button id="previous">{{t.previous}}</button></form>{{/previousPage}}
        {{#nextPage}}<form method="post" action="/dashboard/data/{{table}}" class="inline">{{>tableState}}<input type="hidden" name="sort" value="{{sort}}"><input type="hidden" name="desc" value="{{desc}}"><input type="hidden" name="page" value="{{nextPage}}"><button id="next">{{t.next}}</button></form>{{/nextPage}}
        </p>
        {{/content}}{{/layout}}
        """

    static let history = """
        {{<layout}}{{$content}}
        <h1>{{t.history}}: {{table}} <code>{{key}}</code></h1>
        <table id="versions">
        <tr><th>v</th><th>{{t.when}}</th><th>{{t.who}}</th><th>{{t.operation}}</th><th>{{t.replaced}}</th><th>{{t.rowAfter}}</th></tr>
        {{#versions}}<tr><td>{{version}}</td><td>{{when}}</td><td>{{opd}}</td><td>{{operation}}</td><td>{{replaced}}</td><td>{{after}}</td></tr>{{/versions}}
        </table>
        {{^versions}}<p>{{t.noRecords}}</p>{{/versions}}
        {{/content}}{{/layout}}
        """

    static let audit = """
        {{<layout}}{{$content}}
        <h1>{{t.audit}}</h1>
        <form method="get" action="/dashboard/audit" id="audit-filters">
        <select name="opd">{{#opds}}<option value="{{value}}" {{#selected}}selected{{/selected}}>{{label}}</option>{{/opds}}</select>
        <select name="age">{{#ages}}<option value="{{value}}" {{#selected}}selected{{/selected}}>{{label}}</option>{{/ages}}</select>
        <button>{{t.filter}}</button>
        </form><br>
        <table id="audit">
        <tr><th>#</th><th>{{t.when}}</th><th>{{t.who}}</th><th>{{t.opd}}</th><th>{{t.action}}</th><th>{{t.outcome}}</th></tr>
        {{#entries}}<tr><td>{{id}}</td><td>{{when}}</td><td>{{who}}</td><td>{{opd}}</td><td>{{action}}</td><td>{{outcome}}</td></tr>{{/entries}}
        </table>
        {{^entries}}<p>{{t.noRecords}}</p>{{/entries}}
        {{/content}}{{/layout}}
        """

    static let tokens = """
        {{<layout}}{{$content}}
        <h1>{{t.tokens}}</h1>
        {{#issued}}<p class="flash">{{t.tokenShownOnce}} <code id="issued-token">{{issued}}</code></p>{{/issued}}
        <table id="token-list">
        <tr><th>id</th><th>{{t.role}}</th><th>{{t.opd}} / {{t.name}}</th><th>{{t.created}}</th><th>{{t.expires}}</th><th></th></tr>
        {{#tokens}}<tr><td><code>{{id}}</code></td><td>{{role}}</td><td>{{owner}}</td><td>{{created}}</td><td>{{expires}}</td><td>{{#revoked}}{{revoked}}{{/revoked}}{{^revoked}}<form method="post" action="/dashboard/tokens/{{id}}/revoke" class="inline"><input type="hidden" name="csrf" value="{{csrf}}"><button class="revoke">{{t.revoke}}</button></form>{{/revoked}}</td></tr>{{/tokens}}
        </table>
        <fieldset><legend>{{t.create}}</legend>
        <form method="post" action="/dashboard/tokens" id="token-form">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <select name="opd">{{#opds}}<option value="{{value}}">{{label}}</option>{{/opds}}</select>
        <button id="create-token">{{t.create}}</button>
        </form></fieldset>
        {{/content}}{{/layout}}
        """

    static let users = """
        {{<layout}}{{$content}}
        <h1>{{t.users}}</h1>
        <table id="user-list"><tr><th>{{t.name}}</th><th>{{t.role}}</th><th>{{t.created}}</th><th></th></tr>
        {{#users}}<tr><td>{{name}}</td><td>{{role}}</td><td>{{created}}</td><td><form method="post" action="/dashboard/users/remove" class="inline"><input type="hidden" name="csrf" value="{{csrf}}"><input type="hidden" name="name" value="{{name}}"><button class="remove">{{t.remove}}</button></form></td></tr>{{/users}}
        </table>
        <fieldset><legend>{{t.add}}</legend>
        <form method="post" action="/dashboard/users" id="user-form">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <input name="name" placeholder="{{t.name}}" required> <input name="password" type="password" placeholder="{{t.password}}" required>
        <select name="role"><option>viewer</option><option>reviewer</option><option>admin</option></select>
        <button>{{t.add}}</button>
        </form></fieldset>
        {{/content}}{{/layout}}
        """

    static let message = """
        {{<layout}}{{$content}}
        <h1>{{heading}}</h1>
        <p>{{text}}</p>
        {{/content}}{{/layout}}
        """
}
