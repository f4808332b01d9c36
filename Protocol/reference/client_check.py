"""Checks a running KotaSync server against this specification, using only the reference codec.

Run it against a *scratch* server (it writes to the master):

    kotasync-server token create --config samples/binjai/kotasync.yaml --db /tmp/check/master.sqlite \
        --opd pkm-binjai-kota > /tmp/check/token
    kotasync-server token create --config samples/binjai/kotasync.yaml --db /tmp/check/master.sqlite \
        --opd pkm-kebun-lada > /tmp/check/token2          # optional: a token of another OPD
    kotasync-server serve --config samples/binjai/kotasync.yaml --db /tmp/check/master.sqlite --port 0 &
    python3 Protocol/reference/client_check.py --server http://127.0.0.1:PORT --token "$(cat /tmp/check/token)" \
        --other-token "$(cat /tmp/check/token2)"

What it does, as a client written from Protocol/ would:
  1. GET /v1/health and GET /v1/schema: the schema's `limits`, 401 without a token or with another
     scheme, and the `Bearer` scheme word in any case.
  2. Builds a push changeset that inserts a `patients` row, POSTs it, then POSTs the same bytes again
     and expects the stored reply with `KotaSync-Replay: true`; then a different body with the same
     id that the schema would refuse, which must get the stored reply too (replay before
     validation), and the same bytes with the other OPD's token, which must get 403 forbidden.
  3. Pulls every page from cursor 0 in small pages, checks each page's header, cursor headers and
     order, re-encodes each payload and compares it with the server's, and checks that the pushed
     row comes back exactly (every value, its stamp and its version).
  4. Pushes an update of that row (based on the pulled version) and pulls it back; then checks that a
     new changeset over the same sequence numbers is refused with sequence_conflict.
  5. Sends a changeset truncated and with a flipped bit (changeset_truncated, changeset_corrupt),
     then the same bytes intact, which must be applied once: resending after transport damage is
     safe. Checks the published limits: a body above max_body_bytes is body_too_large, a row count
     above max_rows is changeset_too_large. A NULL in a NOT NULL column is constraint_violation.
  6. POSTs every file of vectors/invalid/ and expects the error code and HTTP status invalid.json
     names, and POSTs the valid vectors (which must decode on the server).
  7. Lists conflicts: first none, then a concurrent edit from a second replica makes one, listed for
     both replicas; 403 for another OPD's token; 400 for bad `after`/`limit` (also on /v1/pull).
     If PyYAML and openapi-schema-validator are installed, every JSON reply is also validated
     against openapi.yaml.
  8. With a server started from the config printed by --print-vector-config, it instead pushes
     vectors/storage_classes.bin and checks that every storage-class edge value comes back
     bit-exact in a pull.

Exit status 0 when every check passes. Only the standard library is required.
"""

import argparse
import json
import os
import struct
import sys
import time
import urllib.error
import urllib.request
import uuid
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from kotasync_codec import (  # noqa: E402
    PULL, PUSH, UPDATE, UPSERT, ZERO_UUID, Changeset, ColumnValue, Row, Table, Value, decode, encode,
    encode_payload, hlc, value_to_json,
)

VECTORS = os.path.normpath(os.path.join(HERE, "..", "vectors"))
MEDIA_TYPE = "application/vnd.kotasync.changeset"

VECTOR_CONFIG = """\
# A server config for client_check.py's storage-class round trip (vectors/storage_classes).
name: KotaSync vectors
opds:
  - id: test
    name: Test OPD
tables:
  - name: storage_classes
    ddl: CREATE TABLE storage_classes (id TEXT PRIMARY KEY, value)
  - name: keyed
    ddl: CREATE TABLE keyed (k1, k2, PRIMARY KEY (k1, k2))
"""


class Failure(Exception):
    pass


class Client:
    def __init__(self, base, token, other_token=None):
        self.base = base.rstrip("/")
        self.token = token
        self.other_token = other_token
        self.checks = 0
        self.openapi = None
        try:  # optional: validate JSON replies against openapi.yaml
            import yaml
            from openapi_schema_validator import OAS30Validator

            doc = yaml.safe_load(open(os.path.join(HERE, "..", "openapi.yaml"), encoding="utf-8"))
            self.openapi = (doc, OAS30Validator)
        except Exception:
            pass

    def request(self, method, path, body=None, token=True, headers=None):
        """`token`: True for the main token, False for none, or a token string."""
        h = dict(headers or {})
        if token is True:
            h["Authorization"] = "Bearer " + self.token
        elif token:
            h["Authorization"] = "Bearer " + token
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def check(self, condition, what):
        self.checks += 1
        if not condition:
            raise Failure(what)

    def validate(self, obj, schema_name):
        if self.openapi is None:
            return
        doc, validator = self.openapi
        schema = {"$ref": "#/components/schemas/" + schema_name, "components": doc["components"]}
        errors = list(validator(schema).iter_errors(obj))
        self.check(not errors, f"{schema_name} does not match openapi.yaml: {errors[:1]}")

    def json_ok(self, status, headers, body, schema_name, what):
        self.check(status == 200, f"{what}: HTTP {status} {body[:300]!r}")
        self.check(headers.get("Content-Type", "").startswith("application/json"), f"{what}: not JSON")
        obj = json.loads(body)
        self.validate(obj, schema_name)
        return obj

    def error(self, status, headers, body, code, http_status, what):
        self.check(status == http_status, f"{what}: expected HTTP {http_status}, got {status} {body[:300]!r}")
        obj = json.loads(body)
        self.validate(obj, "ErrorBody")
        self.check(obj["error"]["code"] == code, f"{what}: expected {code}, got {obj['error']}")
        return obj

    def declare_body(self, length):
        """POST /v1/push with a Content-Length of `length` but no body sent: the server must refuse
        it from the header alone (a client that sent megabytes the server does not read would
        block)."""
        import http.client
        from urllib.parse import urlsplit

        u = urlsplit(self.base)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        try:
            conn.putrequest("POST", "/v1/push")
            conn.putheader("Authorization", "Bearer " + self.token)
            conn.putheader("Content-Type", MEDIA_TYPE)
            conn.putheader("Content-Length", str(length))
            conn.endheaders()
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read()
        finally:
            conn.close()

    def push(self, data, token=True):
        return self.request("POST", "/v1/push", data, token=token, headers={"Content-Type": MEDIA_TYPE})

    def pull_all(self, after=0, limit=None):
        """All pages after `after`, checked as http-api.md describes them. Returns (rows, cursor)."""
        rows = []
        schema_tables = None
        while True:
            q = f"/v1/pull?after={after}" + (f"&limit={limit}" if limit else "")
            status, headers, body = self.request("GET", q)
            self.check(status == 200, f"pull: HTTP {status} {body[:300]!r}")
            self.check(headers.get("Content-Type") == MEDIA_TYPE, "pull: wrong content type")
            page = decode(body)
            nxt = int(headers["KotaSync-Next-Cursor"])
            more = headers["KotaSync-Has-More"]
            self.check(more in ("true", "false"), "pull: KotaSync-Has-More is not true/false")
            self.check(page.kind == PULL, "pull: page is not kind 2")
            self.check(page.replica_id == ZERO_UUID, "pull: replica id is not zero")
            self.check(page.first_sequence == after, "pull: first_sequence is not the cursor")
            self.check(page.last_sequence == nxt, "pull: last_sequence differs from KotaSync-Next-Cursor")
            if limit:
                self.check(len(page.rows) <= limit, "pull: more rows than the limit")
            # The payload re-encodes to the server's bytes (the reference encoder matches Swift's).
            self.check(encode_payload(page) == zlib.decompress(body[68:]), "pull: payload does not re-encode")
            if schema_tables is None:
                schema_tables = page.tables
            previous = after
            for r in page.rows:
                self.check(r.version > previous, "pull: rows not in ascending version order")
                self.check(r.operation in (UPSERT, 3), "pull: update row in a pull page")
                if r.operation == UPSERT:
                    self.check(
                        [c.column for c in r.columns] == list(range(len(page.tables[r.table].columns))),
                        "pull: an upsert does not carry every column in order",
                    )
                previous = r.version
                rows.append((page.tables[r.table], r))
            # Rows of tables no longer replicated are passed over but move the cursor, so the cursor
            # may be above the last row sent (and a page may be empty yet move it).
            self.check(nxt >= previous, "pull: next cursor below the last row's version")
            if more == "true":
                self.check(nxt > after, "pull: KotaSync-Has-More is true but the cursor did not move")
            after = nxt
            if more != "true":
                return rows, after


def same_values(a, b):
    return [value_to_json(v) for v in a] == [value_to_json(v) for v in b]


def raw_changeset(payload, cid, replica, first, last, kind=PUSH):
    """A correct envelope (lengths, CRC) around an arbitrary payload, for limits the codec's own
    encoder would not produce."""
    body = zlib.compress(payload, 6)
    head = (b"KSYN" + struct.pack(">BBH", 1, kind, 0) + cid.bytes + replica.bytes
            + struct.pack(">QQII", first, last, len(payload), len(body)))
    return head + struct.pack(">I", zlib.crc32(body, zlib.crc32(head)) & 0xFFFFFFFF) + body


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def run(c: Client):
    # 1. health, auth, schema
    status, headers, body = c.request("GET", "/v1/health", token=False)
    health = c.json_ok(status, headers, body, "Health", "health")
    c.check(health["status"] == "ok", "health: status is not ok")
    c.error(*c.request("GET", "/v1/schema", token=False), "unauthorized", 401, "schema without a token")
    c.error(*c.request("GET", "/v1/schema", token=False, headers={"Authorization": "Basic " + c.token}),
            "unauthorized", 401, "schema with the Basic scheme")
    c.error(*c.request("GET", "/v1/schema", token="kst_00000000_not-a-real-token"), "unauthorized", 401,
            "schema with an unknown token")
    schema = c.json_ok(*c.request("GET", "/v1/schema"), "SchemaDocument", "schema")
    for scheme in ("bearer", "BEARER", "bEaReR"):  # the scheme word is case-insensitive
        again = c.json_ok(*c.request("GET", "/v1/schema", token=False,
                                     headers={"Authorization": f"{scheme} {c.token}"}),
                          "SchemaDocument", f"schema with scheme word {scheme!r}")
        c.check(again["opd"] == schema["opd"], f"schema with {scheme!r}: another OPD")
    c.check(schema["protocol_version"] == 1, "schema: protocol_version is not 1")
    limits = schema.get("limits")
    c.check(isinstance(limits, dict), "schema: no limits")
    for name in ("max_body_bytes", "max_uncompressed_bytes", "max_rows"):
        c.check(isinstance(limits.get(name), int) and limits[name] > 0, f"schema: limits.{name} missing or not positive")
    print(f"limits: {limits}")
    tables = {t["name"]: t for t in schema["tables"]}
    print(f"server {schema['server']!r}, OPD {schema['opd']!r}, tables {list(tables)}")

    if "storage_classes" in tables:
        storage_round_trip(c)
        return

    c.check("patients" in tables, "schema: no patients table (use the samples/binjai config)")
    pt = tables["patients"]
    table = Table("patients", [k["name"] for k in pt["primary_key"]], [col["name"] for col in pt["columns"]])
    c.check(table.primary_key == ["id"], "patients is not keyed by id")

    # 2. push an insert, then replay it
    replica = uuid.uuid4()
    key = str(uuid.uuid4())
    values = {
        "nik": Value.text("1275016502010005"), "name": Value.text("Nur Aisyah Siregar"),
        "birth_date": Value.text("2001-02-25"), "sex": Value.text("P"), "village_code": Value.text("1275010002"),
        "phone": Value.null(), "clinic_id": Value.text("pkm-binjai-kota"), "updated_at": Value.text("2026-11-29T10:00:00Z"),
    }
    stamp = hlc(int(time.time() * 1000), 0)
    row = Row(0, UPSERT, 0, stamp, [Value.text(key)],
              [ColumnValue(i, values.get(name, Value.null())) for i, name in enumerate(table.columns)])
    cs = Changeset(PUSH, uuid.uuid4(), replica, 1, 1, [table], [row])
    data = encode(cs)
    status, headers, body = c.push(data)
    reply = c.json_ok(status, headers, body, "PushReply", "push")
    c.check(headers.get("KotaSync-Replay") is None, "push: first delivery marked as a replay")
    c.check(uuid.UUID(reply["changeset_id"]) == cs.id, "push: changeset_id differs")
    c.check(uuid.UUID(reply["replica_id"]) == replica, "push: replica_id differs")
    c.check((reply["rows"], reply["applied"], reply["clamped_stamps"], reply["conflicts"]) == (1, 1, 0, []),
            f"push: unexpected reply {reply}")
    version = reply["master_sequence"]
    status2, headers2, body2 = c.push(data)
    c.check(status2 == 200 and headers2.get("KotaSync-Replay") == "true", "replay: no KotaSync-Replay: true")
    c.check(body2 == body, "replay: the stored reply differs from the first reply")
    # The id is looked up before the schema checks: a body with the same id that the schema would
    # refuse (unknown table) still gets the stored reply.
    odd = Changeset(PUSH, cs.id, replica, 1, 1, [Table("no_such_table", ["id"], [])],
                    [Row(0, UPSERT, 0, stamp, [Value.text(key)], [])])
    status3, headers3, body3 = c.push(encode(odd))
    c.check(status3 == 200 and headers3.get("KotaSync-Replay") == "true" and body3 == body,
            f"replay before validation: expected the stored reply, got HTTP {status3} {body3[:300]!r}")
    if c.other_token:
        c.error(*c.push(data, token=c.other_token), "forbidden", 403, "replay with another OPD's token")
    print(f"pushed patient {key} as version {version}; replay returned the stored reply"
          + (", also before validation; 403 to another OPD" if c.other_token else ", also before validation"))

    # 3. pull everything in small pages and find the row
    rows, cursor = c.pull_all(0, limit=7)
    found = [r for t, r in rows if t.name == "patients" and same_values(r.primary_key, [Value.text(key)])]
    c.check(len(found) == 1, f"pull: the pushed row came back {len(found)} times")
    got = found[0]
    c.check(got.operation == UPSERT and got.version == version, "pull: wrong operation or version")
    c.check(got.stamp == stamp, "pull: the stamp differs")
    page_table = next(t for t, r in rows if r is got)
    pulled = {page_table.columns[cv.column]: cv.value for cv in got.columns}
    for name in table.columns:
        c.check(value_to_json(pulled[name]) == value_to_json(values.get(name, Value.null())), f"pull: column {name} differs")
    c.check(cursor >= version, "pull: cursor below the pushed version")
    print(f"pulled {len(rows)} rows up to cursor {cursor}; the pushed row came back exactly")

    # 4. an update based on the pulled version, and sequence_conflict
    phone = table.columns.index("phone")
    upd = Changeset(PUSH, uuid.uuid4(), replica, 2, 3, [table],
                    [Row(0, UPDATE, got.version, stamp + 1, [Value.text(key)], [ColumnValue(phone, Value.text("081299990000"))])])
    reply = c.json_ok(*c.push(encode(upd)), "PushReply", "update push")
    c.check(reply["applied"] == 1 and reply["conflicts"] == [], f"update: unexpected reply {reply}")
    more, cursor2 = c.pull_all(cursor)
    mine = [r for t, r in more if same_values(r.primary_key, [Value.text(key)])]
    c.check(len(mine) == 1 and mine[0].version == reply["master_sequence"], "update: row not pulled again")
    t2 = next(t for t, r in more if r is mine[0])
    phone_back = {t2.columns[cv.column]: cv.value for cv in mine[0].columns}["phone"]
    c.check(value_to_json(phone_back) == {"type": "text", "value": "081299990000"}, "update: phone differs")
    again = Changeset(PUSH, uuid.uuid4(), replica, 3, 3, [table], [])
    c.error(*c.push(encode(again)), "sequence_conflict", 409, "overlapping sequence numbers")
    print("update applied and pulled; overlapping sequence refused with sequence_conflict")

    # 5. transport damage is retryable with the same bytes; published limits; constraint errors
    fix = Changeset(PUSH, uuid.uuid4(), replica, 4, 4, [table],
                    [Row(0, UPDATE, mine[0].version, stamp + 2, [Value.text(key)],
                         [ColumnValue(phone, Value.text("081299990001"))])])
    good = encode(fix)
    c.error(*c.push(good[: len(good) - 3]), "changeset_truncated", 400, "truncated changeset")
    flipped = bytearray(good)
    flipped[-5] ^= 0x10
    c.error(*c.push(bytes(flipped)), "changeset_corrupt", 400, "changeset with a flipped bit")
    status, headers, body = c.push(good)
    reply = c.json_ok(status, headers, body, "PushReply", "resend after transport damage")
    c.check(headers.get("KotaSync-Replay") is None and reply["applied"] == 1,
            f"resend after transport damage: not a first delivery that applied ({reply})")
    c.error(*c.push(bytes(flipped)), "changeset_corrupt", 400, "damaged copy of an applied changeset")
    status, headers, body2 = c.push(good)
    c.check(status == 200 and headers.get("KotaSync-Replay") == "true" and body2 == body,
            "resend of an applied changeset after transport damage: not the stored reply")
    print("changeset_truncated / changeset_corrupt, then the same bytes: applied once, then replayed")

    too_many = raw_changeset(b"\x00" + varint(limits["max_rows"] + 1), uuid.uuid4(), replica, 5, 5)
    c.error(*c.push(too_many), "changeset_too_large", 413, "row count above limits.max_rows")
    c.error(*c.declare_body(limits["max_body_bytes"] + 1), "body_too_large", 413,
            "Content-Length above limits.max_body_bytes")
    not_null = [col["name"] for col in pt["columns"] if col["not_null"]]
    if not_null:
        bad_values = dict(values)
        bad_values[not_null[0]] = Value.null()
        bad = Changeset(PUSH, uuid.uuid4(), uuid.uuid4(), 1, 1, [table],
                        [Row(0, UPSERT, 0, stamp, [Value.text(str(uuid.uuid4()))],
                             [ColumnValue(i, bad_values.get(name, Value.null())) for i, name in enumerate(table.columns)])])
        err = c.error(*c.push(encode(bad)), "constraint_violation", 422, f"NULL in NOT NULL column {not_null[0]}")
        c.check("Row 0" in err["error"]["message"], "constraint_violation: the message does not name the row")
    print("limits enforced as published (changeset_too_large, body_too_large); NOT NULL is constraint_violation")

    # 6. vectors
    with open(os.path.join(VECTORS, "invalid", "invalid.json"), encoding="utf-8") as f:
        invalid = json.load(f)
    status_of = {"changeset_too_large": 413}
    for entry in invalid:
        with open(os.path.join(VECTORS, "invalid", entry["file"]), "rb") as f:
            bad = f.read()
        c.error(*c.push(bad), entry["error"], status_of.get(entry["error"], 400), "invalid vector " + entry["file"])
    print(f"{len(invalid)} invalid vectors refused with the expected codes and statuses")
    expected = {
        # basic_push and column_bases apply to the sample server's seed rows (200; a replay on a rerun).
        "basic_push": (200, None), "column_bases": (200, None), "empty_push": (200, None),
        "storage_classes": (422, "unknown_table"),  # decodes; its tables are not in the sample schema
        "pull_page": (400, "changeset_malformed"),  # decodes; only kind 1 may be pushed
    }
    for name, (want, code) in expected.items():
        with open(os.path.join(VECTORS, name + ".bin"), "rb") as f:
            status, headers, body = c.push(f.read())
        if want == 200:
            c.json_ok(status, headers, body, "PushReply", "vector " + name)
        else:
            err = c.error(status, headers, body, code, want, "vector " + name)
            if name == "pull_page":
                c.check("kind 1" in err["error"]["message"], "pull_page: refused by the decoder, not by the kind rule")
    print("valid vectors decode on the server")

    # 7. conflicts
    lst = c.json_ok(*c.request("GET", f"/v1/conflicts?replica={replica}&after=0"), "ConflictList", "conflicts")
    c.check(lst["conflicts"] == [] and "next" not in lst, "conflicts: expected an empty list")
    # A second replica of the same OPD edits the phone based on the first pulled version, without
    # having seen the two later phone edits: a concurrent edit, decided by stamps and recorded.
    other = uuid.uuid4()
    late = Changeset(PUSH, uuid.uuid4(), other, 1, 1, [table],
                     [Row(0, UPDATE, got.version, stamp + 1, [Value.text(key)], [ColumnValue(phone, Value.text("081311112222"))])])
    reply = c.json_ok(*c.push(encode(late)), "PushReply", "concurrent push")
    c.check(len(reply["conflicts"]) == 1 and reply["conflicts"][0]["kind"] == "update_update",
            f"concurrent push: expected one update_update conflict, got {reply['conflicts']}")
    record = reply["conflicts"][0]
    for r in (replica, other):
        lst = c.json_ok(*c.request("GET", f"/v1/conflicts?replica={str(r).upper()}&after=0&limit=1000"),
                        "ConflictList", "conflicts after a concurrent edit")
        c.check([x["id"] for x in lst["conflicts"]] == [record["id"]], f"conflicts of {r}: {lst}")
    lst = c.json_ok(*c.request("GET", f"/v1/conflicts?replica={replica}&after={record['id']}"), "ConflictList",
                    "conflicts after the last id")
    c.check(lst["conflicts"] == [], "conflicts: `after` does not skip earlier records")
    if c.other_token:
        c.error(*c.request("GET", f"/v1/conflicts?replica={replica}", token=c.other_token), "forbidden", 403,
                "conflicts of a replica of another OPD")
        lst = c.json_ok(*c.request("GET", f"/v1/conflicts?replica={uuid.uuid4()}", token=c.other_token),
                        "ConflictList", "conflicts of an unknown replica")
        c.check(lst["conflicts"] == [], "conflicts of an unknown replica: not empty")
        c.error(*c.push(encode(Changeset(PUSH, uuid.uuid4(), replica, 10, 10, [table], [])), token=c.other_token),
                "forbidden", 403, "push for a replica of another OPD")
    c.error(*c.request("GET", "/v1/conflicts"), "bad_request", 400, "conflicts without replica")
    c.error(*c.request("GET", "/v1/conflicts?replica=not-a-uuid"), "bad_request", 400, "conflicts with a bad replica")
    for query in ("after=-1", "after=abc", "after=", "limit=0", "limit=-5", "limit=ten"):
        c.error(*c.request("GET", f"/v1/conflicts?replica={replica}&{query}"), "bad_request", 400,
                f"conflicts with {query}")
        c.error(*c.request("GET", f"/v1/pull?{query}"), "bad_request", 400, f"pull with {query}")
    c.error(*c.request("GET", "/v1/nowhere"), "not_found", 404, "unknown path")
    status, _, body = c.request("POST", "/v1/pull")
    c.check(status in (404, 405), f"POST /v1/pull: expected 404 or 405, got {status}")
    print("conflicts listed for both replicas" + (", 403 for another OPD" if c.other_token else "")
          + "; bad after/limit refused with 400")


def storage_round_trip(c: Client):
    with open(os.path.join(VECTORS, "storage_classes.bin"), "rb") as f:
        data = f.read()
    sent = decode(data)
    reply = c.json_ok(*c.push(data), "PushReply", "push storage_classes")
    c.check(reply["rows"] == len(sent.rows), "storage_classes: row count differs")
    rows, _ = c.pull_all(0)
    got = {(t.name, json.dumps([value_to_json(v) for v in r.primary_key])): r for t, r in rows}
    for r in sent.rows:
        t = sent.tables[r.table]
        back = got.get((t.name, json.dumps([value_to_json(v) for v in r.primary_key])))
        c.check(back is not None, f"storage_classes: row {r.primary_key} not pulled")
        c.check(same_values([cv.value for cv in r.columns], [cv.value for cv in back.columns]),
                f"storage_classes: {r.primary_key} came back as {back.columns}")
        if t.columns:  # a table without non-key columns keeps no stamp (README.md, known deviations)
            c.check(back.stamp == r.stamp, f"storage_classes: stamp of {r.primary_key} differs")
    print(f"all {len(sent.rows)} storage_classes rows came back bit-exact")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", help="base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--token", default=os.environ.get("KOTASYNC_TOKEN"), help="device token (or $KOTASYNC_TOKEN)")
    p.add_argument("--other-token", default=os.environ.get("KOTASYNC_OTHER_TOKEN"),
                   help="optional: a device token of another OPD, for the 403 checks (or $KOTASYNC_OTHER_TOKEN)")
    p.add_argument("--print-vector-config", action="store_true", help="print the config for the storage-class check")
    a = p.parse_args()
    if a.print_vector_config:
        print(VECTOR_CONFIG, end="")
        return
    if not a.server or not a.token:
        p.error("--server and --token are required")
    c = Client(a.server, a.token, a.other_token)
    try:
        run(c)
    except Failure as e:
        print(f"FAIL after {c.checks} checks: {e}")
        sys.exit(1)
    extra = " (JSON validated against openapi.yaml)" if c.openapi else ""
    if not c.other_token:
        extra += " (no --other-token: the 403 checks were skipped)"
    print(f"PASS: {c.checks} checks{extra}")


if __name__ == "__main__":
    main()
