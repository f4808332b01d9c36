"""Reference encoder/decoder of the KotaSync changeset format, written from Protocol/changeset.md.

Python 3.8+, standard library only (zlib, struct, json, uuid). It is meant to be read: every
step follows a numbered rule of the specification, and every failure raises ChangesetError with
the stable error code the specification assigns to it.

    from kotasync_codec import *
    cs = Changeset(kind=PUSH, id=uuid.uuid4(), replica_id=my_replica, first_sequence=1,
                   last_sequence=3, tables=[Table("patients", ["id"], ["name", "phone"])],
                   rows=[Row(0, UPSERT, 0, stamp, [Value.text("p-1")],
                             [ColumnValue(0, Value.text("Siti")), ColumnValue(1, Value.null())])])
    body = encode(cs)            # bytes to POST to /v1/push
    page = decode(response_body) # a pull page

The JSON helpers (changeset_to_json, changeset_from_json, value_to_json, value_from_json) use the
format of Protocol/vectors/*.json, which is also how values appear in the HTTP API's JSON bodies.
"""

from __future__ import annotations

import json
import math
import struct
import uuid
import zlib
from dataclasses import dataclass, field
from typing import List, Optional

__all__ = [
    "PUSH", "PULL", "UPSERT", "UPDATE", "DELETE", "MAGIC", "FORMAT_VERSION", "HEADER_SIZE",
    "Limits", "Value", "Table", "ColumnValue", "Row", "Changeset", "ChangesetError",
    "encode", "encode_payload", "decode", "decode_header", "decode_payload",
    "value_to_json", "value_from_json", "changeset_to_json", "changeset_from_json",
    "hlc", "hlc_parts", "ZERO_UUID", "affinity", "accepts", "kept_value",
]

# --- Constants (changeset.md, "Envelope" and "Payload") ---------------------------------------

MAGIC = b"KSYN"
FORMAT_VERSION = 1
HEADER_SIZE = 68

PUSH = 1  # header kind
PULL = 2

UPSERT = 1  # row operation
UPDATE = 2  # push only
DELETE = 3

TAG_NULL, TAG_INTEGER, TAG_REAL, TAG_TEXT, TAG_BLOB = 0, 1, 2, 3, 4

MAX_TABLES = 10_000
MAX_KEY_COLUMNS = 64
MAX_COLUMNS = 2_000

ZERO_UUID = uuid.UUID(int=0)

_U64 = (1 << 64) - 1
_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1
_OPERATIONS = {UPSERT: "upsert", UPDATE: "update", DELETE: "delete"}
_KINDS = {PUSH: "push", PULL: "pull"}


class ChangesetError(Exception):
    """A changeset that cannot be decoded (or encoded). `code` is a stable protocol error code."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass
class Limits:
    """What a decoder accepts (changeset.md, "Limits"). The defaults are the codec's defaults;
    a server may configure lower ones (the sample server allows 200,000 rows)."""

    max_uncompressed_bytes: int = 64 << 20
    max_compression_ratio: int = 1000
    max_rows: int = 1_000_000


# --- Values ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Value:
    """A SQLite value with its storage class. Reals are kept as their 64-bit IEEE-754 pattern so
    that -0.0 and 0.0 stay different values and nothing is rounded. A NaN can be held here but is
    refused by encode() and decode() (changeset.md 2.1)."""

    type: str  # "null" | "integer" | "real" | "text" | "blob"
    data: object = None  # int (integer), int bit pattern (real), str (text), bytes (blob)

    @staticmethod
    def null() -> "Value":
        return Value("null")

    @staticmethod
    def integer(v: int) -> "Value":
        if not isinstance(v, int) or isinstance(v, bool) or not _I64_MIN <= v <= _I64_MAX:
            raise ValueError(f"not a 64-bit signed integer: {v!r}")
        return Value("integer", v)

    @staticmethod
    def real(v: float) -> "Value":
        return Value("real", struct.unpack(">Q", struct.pack(">d", float(v)))[0])

    @staticmethod
    def real_bits(bits: int) -> "Value":
        if not 0 <= bits <= _U64:
            raise ValueError("real bit pattern out of range")
        return Value("real", bits)

    @staticmethod
    def text(v: str) -> "Value":
        if not isinstance(v, str):
            raise ValueError("text must be str")
        return Value("text", v)

    @staticmethod
    def blob(v: bytes) -> "Value":
        return Value("blob", bytes(v))

    def as_python(self):
        """None, int, float, str or bytes (a real becomes a float: -0.0 survives)."""
        if self.type == "real":
            return struct.unpack(">d", struct.pack(">Q", self.data))[0]
        return self.data

    def __repr__(self) -> str:
        if self.type == "null":
            return "Value.null()"
        if self.type == "real":
            return f"Value.real({self.as_python()!r})"
        return f"Value.{self.type}({self.data!r})"


@dataclass
class Table:
    name: str
    primary_key: List[str]
    columns: List[str]


@dataclass
class ColumnValue:
    column: int  # index into Table.columns
    value: Value
    base_version: Optional[int] = None  # None: the row's version


@dataclass
class Row:
    table: int  # index into Changeset.tables
    operation: int  # UPSERT, UPDATE, DELETE
    version: int
    stamp: int  # 64-bit hybrid logical clock
    primary_key: List[Value]
    columns: List[ColumnValue] = field(default_factory=list)


@dataclass
class Changeset:
    kind: int
    id: uuid.UUID
    replica_id: uuid.UUID
    first_sequence: int
    last_sequence: int
    tables: List[Table] = field(default_factory=list)
    rows: List[Row] = field(default_factory=list)


# --- What a column keeps (changeset.md 2.2) ----------------------------------------------------


def affinity(declared_type: str) -> str:
    """SQLite's type affinity of a declared type: "integer", "text", "blob", "real" or "numeric"."""
    t = declared_type.upper()
    if "INT" in t:
        return "integer"
    if "CHAR" in t or "CLOB" in t or "TEXT" in t:
        return "text"
    if "BLOB" in t or t == "":
        return "blob"
    if "REAL" in t or "FLOA" in t or "DOUB" in t:
        return "real"
    return "numeric"


def accepts(aff: str, v: Value) -> bool:
    """Whether the server takes a value of v's storage class into a column of this affinity
    (http-api.md, GET /v1/schema); otherwise it refuses the push with type_mismatch."""
    if v.type == "null" or aff == "blob":
        return True
    return v.type in {"integer": ("integer",), "text": ("text",), "real": ("real",),
                      "numeric": ("integer", "real")}[aff]


def kept_value(aff: str, v: Value) -> Value:
    """The value a column of affinity `aff` keeps when v (a value it accepts) is written to it:
    a REAL column keeps -0.0 as 0.0; a NUMERIC column keeps a whole-number real strictly between
    -2^63 and 2^63 as that integer. Everything else is kept as written."""
    if v.type != "real":
        return v
    r = v.as_python()
    if aff == "real":
        return Value.real(0.0) if r == 0 else v
    if aff in ("numeric", "integer") and math.isfinite(r) and -(2.0 ** 63) < r < 2.0 ** 63 and r == int(r):
        return Value.integer(int(r))
    return v


def hlc(milliseconds: int, counter: int = 0) -> int:
    """An HLC stamp: 48 bits of Unix milliseconds, then a 16-bit counter."""
    if not 0 <= milliseconds < (1 << 48) or not 0 <= counter < (1 << 16):
        raise ValueError("HLC part out of range")
    return (milliseconds << 16) | counter


def hlc_parts(stamp: int):
    return stamp >> 16, stamp & 0xFFFF


# --- Primitive writers (changeset.md, "Primitive encodings") ---------------------------------


def _varint(v: int) -> bytes:
    if not 0 <= v <= _U64:
        raise ChangesetError("changeset_malformed", f"varint out of range: {v}")
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _zigzag(n: int) -> bytes:
    if not _I64_MIN <= n <= _I64_MAX:
        raise ChangesetError("changeset_malformed", f"zigzag value out of range: {n}")
    return _varint(((n << 1) ^ (n >> 63)) & _U64)


def _string(s: str) -> bytes:
    b = s.encode("utf-8")  # raises on lone surrogates: such a string has no UTF-8 form
    return _varint(len(b)) + b


def _is_nan(bits: int) -> bool:
    """Whether a binary64 bit pattern is a NaN (any sign, quiet or signalling, any payload)."""
    return bits & 0x7FF0000000000000 == 0x7FF0000000000000 and bits & 0x000FFFFFFFFFFFFF != 0


def _value(v: Value) -> bytes:
    if v.type == "null":
        return bytes([TAG_NULL])
    if v.type == "integer":
        return bytes([TAG_INTEGER]) + _zigzag(v.data)
    if v.type == "real":
        if _is_nan(v.data):  # changeset.md 2.1: NaN must not be sent; decoders refuse it
            raise ChangesetError("changeset_malformed", "NaN cannot be sent (SQLite has no NaN)")
        return bytes([TAG_REAL]) + struct.pack(">Q", v.data)
    if v.type == "text":
        return bytes([TAG_TEXT]) + _string(v.data)
    if v.type == "blob":
        return bytes([TAG_BLOB]) + _varint(len(v.data)) + v.data
    raise ChangesetError("changeset_malformed", f"unknown value type {v.type!r}")


def _to_int64(u: int) -> int:
    u &= _U64
    return u - (1 << 64) if u >= (1 << 63) else u


# --- Encoding --------------------------------------------------------------------------------


def encode_payload(cs: Changeset) -> bytes:
    """The uncompressed payload: the table dictionary, then the rows. Refuses what a decoder
    would refuse in the dictionary (a table twice, a column name twice or also a key column)."""
    out = bytearray(_varint(len(cs.tables)))
    names = [t.name for t in cs.tables]
    if len(set(names)) != len(names):
        raise ChangesetError("changeset_malformed", "a table is listed twice in the table dictionary")
    for t in cs.tables:
        if len(set(t.columns)) != len(t.columns) or set(t.columns) & set(t.primary_key):
            raise ChangesetError("changeset_malformed", f"table {t.name} lists a column twice")
        out += _string(t.name)
        out += _varint(len(t.primary_key))
        for name in t.primary_key:
            out += _string(name)
        out += _varint(len(t.columns))
        for name in t.columns:
            out += _string(name)
    out += _varint(len(cs.rows))
    previous = 0
    for row in cs.rows:
        has_bases = any(c.base_version is not None for c in row.columns)
        out += _varint(row.table)
        out.append(row.operation)
        out.append(1 if has_bases else 0)
        out += _varint(row.version)
        # The stamp as a signed 64-bit difference from the previous row's (wrapping).
        out += _zigzag(_to_int64(row.stamp - previous))
        previous = row.stamp & _U64
        for v in row.primary_key:
            out += _value(v)
        out += _varint(len(row.columns))
        for c in row.columns:
            out += _varint(c.column)
            if has_bases:
                out += _varint(row.version if c.base_version is None else c.base_version)
            out += _value(c.value)
    return bytes(out)


def encode(cs: Changeset, level: int = 6) -> bytes:
    """The complete changeset: the 68-byte envelope, then the zlib stream of the payload."""
    payload = encode_payload(cs)
    compressed = zlib.compress(payload, level)
    if len(payload) > 0xFFFFFFFF or len(compressed) > 0xFFFFFFFF:
        raise ChangesetError("changeset_too_large", "a payload must be smaller than 4 GiB")
    head = (
        MAGIC
        + struct.pack(">BBH", FORMAT_VERSION, cs.kind, 0)
        + cs.id.bytes
        + cs.replica_id.bytes
        + struct.pack(">QQII", cs.first_sequence, cs.last_sequence, len(payload), len(compressed))
    )
    assert len(head) == 64
    crc = zlib.crc32(compressed, zlib.crc32(head)) & 0xFFFFFFFF
    return head + struct.pack(">I", crc) + compressed


# --- Decoding --------------------------------------------------------------------------------


@dataclass
class Header:
    kind: int
    flags: int
    id: uuid.UUID
    replica_id: uuid.UUID
    first_sequence: int
    last_sequence: int
    uncompressed_length: int
    compressed_length: int
    checksum: int


def decode_header(data: bytes, limits: Limits = Limits()) -> Header:
    """Steps 1-8 of "Decoding": everything that can be checked without inflating."""
    data = bytes(data)
    if len(data) < HEADER_SIZE:
        if len(data) >= 4 and data[:4] != MAGIC:
            raise ChangesetError("unsupported_version", 'not a KotaSync changeset (no "KSYN" magic)')
        raise ChangesetError("changeset_truncated", f"a changeset has a 68-byte header; only {len(data)} bytes")
    if data[:4] != MAGIC:
        raise ChangesetError("unsupported_version", 'not a KotaSync changeset (no "KSYN" magic)')
    version, kind, flags = struct.unpack_from(">BBH", data, 4)
    if version != FORMAT_VERSION:
        raise ChangesetError("unsupported_version", f"format version {version} is not supported")
    if kind not in _KINDS:
        raise ChangesetError("changeset_malformed", f"unknown changeset kind {kind}")
    if flags != 0:
        raise ChangesetError("changeset_malformed", f"header flags are {flags}; version 1 defines none (must be 0)")
    cid = uuid.UUID(bytes=data[8:24])
    rid = uuid.UUID(bytes=data[24:40])
    first, last, ulen, clen, crc = struct.unpack_from(">QQIII", data, 40)
    actual = len(data) - HEADER_SIZE
    if actual < clen:
        raise ChangesetError("changeset_truncated", f"header declares {clen} payload bytes; {actual} follow")
    if actual > clen:
        raise ChangesetError("changeset_malformed", f"{actual - clen} unexpected bytes follow the payload")
    if ulen > limits.max_uncompressed_bytes:
        raise ChangesetError("changeset_too_large", f"payload would inflate to {ulen} bytes")
    if ulen > max(clen, 1) * limits.max_compression_ratio:
        raise ChangesetError("changeset_too_large", "compression ratio above the limit")
    _check_storable(first, "first sequence")
    _check_storable(last, "last sequence")
    return Header(kind, flags, cid, rid, first, last, ulen, clen, crc)


# Sequence numbers and versions are kept as SQLite integers (signed 64-bit): a changeset carrying
# one above 2^63 - 1 is malformed, although the wire has room for 2^64 - 1.
MAX_STORABLE = (1 << 63) - 1


def _check_storable(v: int, what: str) -> None:
    if v > MAX_STORABLE:
        raise ChangesetError("changeset_malformed", f"{what} is {v}, above {MAX_STORABLE}")


def _inflate(body: bytes, expected: int) -> bytes:
    """Inflates exactly `expected` bytes and refuses any other outcome, never producing more than
    expected + 1 bytes."""
    d = zlib.decompressobj()
    try:
        out = d.decompress(body, expected + 1) if expected >= 0 else b""
        if len(out) > expected:
            raise ChangesetError("changeset_corrupt", "payload inflates to more than its declared length")
        if not d.eof:
            # Either the stream is cut short or it would produce more output than declared.
            extra = d.decompress(d.unconsumed_tail, 1)
            if extra:
                raise ChangesetError("changeset_corrupt", "payload inflates to more than its declared length")
            raise ChangesetError("changeset_corrupt", "payload is not a complete zlib stream")
    except zlib.error as e:
        raise ChangesetError("changeset_corrupt", f"payload is not a valid zlib stream ({e})") from None
    if len(out) != expected:
        raise ChangesetError("changeset_corrupt", f"payload inflates to {len(out)} bytes, header says {expected}")
    if d.unused_data:
        raise ChangesetError("changeset_corrupt", "bytes follow the end of the zlib stream")
    return out


def decode(data: bytes, limits: Limits = Limits()) -> Changeset:
    """Decodes and checks a complete changeset (all steps of "Decoding")."""
    data = bytes(data)
    h = decode_header(data, limits)
    body = data[HEADER_SIZE:]
    if zlib.crc32(body, zlib.crc32(data[:64])) & 0xFFFFFFFF != h.checksum:
        raise ChangesetError("changeset_corrupt", "CRC-32 mismatch")
    payload = _inflate(body, h.uncompressed_length)
    tables, rows = decode_payload(payload, h.kind, limits)
    return Changeset(h.kind, h.id, h.replica_id, h.first_sequence, h.last_sequence, tables, rows)


class _Reader:
    def __init__(self, b: bytes):
        self.b = b
        self.i = 0

    @property
    def remaining(self) -> int:
        return len(self.b) - self.i

    def fail(self, what: str) -> ChangesetError:
        return ChangesetError("changeset_malformed", f"payload ends or is invalid at byte {self.i} reading {what}")

    def u8(self, what: str) -> int:
        if self.i >= len(self.b):
            raise self.fail(what)
        self.i += 1
        return self.b[self.i - 1]

    def take(self, n: int, what: str) -> bytes:
        if n > self.remaining:
            raise self.fail(what)
        self.i += n
        return self.b[self.i - n:self.i]

    def varint(self, what: str) -> int:
        result, shift = 0, 0
        while True:
            if self.i >= len(self.b) or shift >= 64:
                raise self.fail(what)
            byte = self.b[self.i]
            self.i += 1
            if shift == 63 and byte > 1:  # the tenth byte may only hold bit 63
                raise self.fail(what)
            result |= (byte & 0x7F) << shift
            if byte & 0x80 == 0:
                if byte == 0 and shift > 0:  # over-long: only the shortest form is valid
                    raise self.fail(what)
                return result
            shift += 7

    def count(self, what: str, limit: int) -> int:
        v = self.varint(what)
        if v > limit:
            raise ChangesetError("changeset_malformed", f"{what} is {v}, more than the {limit} allowed")
        return v

    def zigzag(self, what: str) -> int:
        v = self.varint(what)
        return _to_int64((v >> 1) ^ -(v & 1))

    def string(self, what: str) -> str:
        n = self.count(what + " length", self.remaining)
        raw = self.take(n, what)
        try:
            return raw.decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            raise ChangesetError("changeset_malformed", f"{what} is not valid UTF-8") from None

    def value(self, what: str) -> Value:
        tag = self.u8(what + " tag")
        if tag == TAG_NULL:
            return Value.null()
        if tag == TAG_INTEGER:
            return Value("integer", self.zigzag(what))
        if tag == TAG_REAL:
            bits = struct.unpack(">Q", self.take(8, what))[0]
            if _is_nan(bits):
                raise ChangesetError("changeset_malformed", f"{what} is a NaN")
            return Value("real", bits)
        if tag == TAG_TEXT:
            return Value("text", self.string(what))
        if tag == TAG_BLOB:
            n = self.count(what + " length", self.remaining)
            return Value("blob", self.take(n, what))
        raise ChangesetError("changeset_malformed", f"unknown value tag {tag} in {what}")


def decode_payload(payload: bytes, kind: int, limits: Limits = Limits()):
    """Parses an inflated payload; returns (tables, rows)."""
    r = _Reader(bytes(payload))
    tables: List[Table] = []
    for _ in range(r.count("table count", MAX_TABLES)):
        name = r.string("table name")
        if any(t.name == name for t in tables):
            raise ChangesetError("changeset_malformed", f"table {name} is declared twice")
        pk_count = r.count("primary-key column count", MAX_KEY_COLUMNS)
        if pk_count == 0:
            raise ChangesetError("changeset_malformed", f"table {name} has no primary-key column")
        pk = [r.string("primary-key column name") for _ in range(pk_count)]
        columns: List[str] = []
        for _ in range(r.count("column count", MAX_COLUMNS)):
            column = r.string("column name")
            if column in columns or column in pk:
                raise ChangesetError("changeset_malformed", f"column {column} of table {name} is declared twice")
            columns.append(column)
        tables.append(Table(name, pk, columns))
    # A count no signed 64-bit integer holds is malformed; one above max_rows is too large.
    row_count = r.count("row count", _I64_MAX)
    if row_count > limits.max_rows:
        raise ChangesetError("changeset_too_large", f"{row_count} rows; the limit is {limits.max_rows}")
    if row_count > r.remaining // 6 + 1:  # optional early check: a row takes at least 6 bytes
        raise ChangesetError("changeset_malformed", "row count larger than the payload can hold")
    rows: List[Row] = []
    previous = 0
    for index in range(row_count):
        t = r.varint(f"row {index} table index")
        if t >= len(tables):
            raise ChangesetError("changeset_malformed", f"row {index} refers to table {t}, which is not declared")
        table = tables[t]
        op = r.u8(f"row {index} operation")
        if op not in _OPERATIONS or (kind == PULL and op == UPDATE):
            raise ChangesetError("changeset_malformed", f"row {index} has an invalid operation {op}")
        flags = r.u8(f"row {index} flags")
        if flags & ~1:
            raise ChangesetError("changeset_malformed", f"row {index} has unknown flags {flags}")
        version = r.varint(f"row {index} version")
        _check_storable(version, f"row {index} version")
        stamp = (previous + r.zigzag(f"row {index} stamp")) & _U64
        previous = stamp
        pk = [r.value(f"row {index} primary key") for _ in table.primary_key]
        n = r.count(f"row {index} column count", len(table.columns))
        if op == DELETE and n != 0:
            raise ChangesetError("changeset_malformed", f"row {index} is a delete but carries {n} columns")
        seen = set()
        columns: List[ColumnValue] = []
        for _ in range(n):
            c = r.varint(f"row {index} column index")
            if c >= len(table.columns) or c in seen:
                raise ChangesetError("changeset_malformed", f"row {index} sets column {c} twice or out of range")
            seen.add(c)
            base = r.varint(f"row {index} column base version") if flags & 1 else None
            if base is not None:
                _check_storable(base, f"row {index} column base version")
            value = r.value(f"row {index} column {table.columns[c]}")
            columns.append(ColumnValue(c, value, None if base == version else base))
        rows.append(Row(t, op, version, stamp, pk, columns))
    if r.remaining:
        raise ChangesetError("changeset_malformed", f"{r.remaining} unexpected bytes follow the last row")
    return tables, rows


# --- JSON (Protocol/vectors/*.json; values as in the HTTP API) ---------------------------------


def value_to_json(v: Value) -> dict:
    if v.type == "null":
        return {"type": "null"}
    if v.type == "integer":
        return {"type": "integer", "value": str(v.data)}
    if v.type == "real":
        out = {"type": "real", "bits": f"{v.data:016x}"}
        f = v.as_python()
        if math.isfinite(f):
            out["value"] = f
        return out
    if v.type == "text":
        return {"type": "text", "value": v.data}
    if v.type == "blob":
        return {"type": "blob", "hex": v.data.hex()}
    raise ValueError(v.type)


def value_from_json(o: dict) -> Value:
    t = o["type"]
    if t == "null":
        return Value.null()
    if t == "integer":
        return Value.integer(int(o["value"], 10))
    if t == "real":
        bits = o["bits"]
        if len(bits) != 16:
            raise ValueError(f"real bits must be 16 hex digits: {bits!r}")
        return Value.real_bits(int(bits, 16))  # `value` is informative only
    if t == "text":
        return Value.text(o["value"])
    if t == "blob":
        return Value.blob(bytes.fromhex(o["hex"]))
    raise ValueError(f"unknown value type {t!r}")


def changeset_to_json(cs: Changeset) -> dict:
    return {
        "kind": _KINDS[cs.kind],
        "id": str(cs.id),
        "replica_id": str(cs.replica_id),
        "first_sequence": cs.first_sequence,
        "last_sequence": cs.last_sequence,
        "tables": [{"name": t.name, "primary_key": list(t.primary_key), "columns": list(t.columns)} for t in cs.tables],
        "rows": [
            {
                "table": r.table,
                "operation": _OPERATIONS[r.operation],
                "version": r.version,
                "stamp": str(r.stamp),
                "primary_key": [value_to_json(v) for v in r.primary_key],
                "columns": [
                    dict(
                        {"column": c.column, "value": value_to_json(c.value)},
                        **({"base_version": c.base_version} if c.base_version is not None else {}),
                    )
                    for c in r.columns
                ],
            }
            for r in cs.rows
        ],
        "payload_hex": encode_payload(cs).hex(),
    }


def changeset_from_json(o: dict) -> Changeset:
    kinds = {v: k for k, v in _KINDS.items()}
    ops = {v: k for k, v in _OPERATIONS.items()}
    return Changeset(
        kind=kinds[o["kind"]],
        id=uuid.UUID(o["id"]),
        replica_id=uuid.UUID(o["replica_id"]),
        first_sequence=int(o["first_sequence"]),
        last_sequence=int(o["last_sequence"]),
        tables=[Table(t["name"], list(t["primary_key"]), list(t["columns"])) for t in o["tables"]],
        rows=[
            Row(
                table=r["table"],
                operation=ops[r["operation"]],
                version=int(r["version"]),
                stamp=int(r["stamp"], 10),
                primary_key=[value_from_json(v) for v in r["primary_key"]],
                columns=[ColumnValue(c["column"], value_from_json(c["value"]), c.get("base_version")) for c in r["columns"]],
            )
            for r in o["rows"]
        ],
    )


if __name__ == "__main__":  # python3 kotasync_codec.py FILE.bin  -> prints the JSON form
    import sys

    for path in sys.argv[1:]:
        with open(path, "rb") as f:
            try:
                print(json.dumps(changeset_to_json(decode(f.read())), indent=2, ensure_ascii=False))
            except ChangesetError as e:
                print(f"{path}: {e.code}: {e.message}", file=sys.stderr)
                sys.exit(1)
