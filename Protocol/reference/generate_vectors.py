"""Writes the test vectors in Protocol/vectors/ with the reference codec.

    python3 Protocol/reference/generate_vectors.py            # (re)write Protocol/vectors/
    python3 Protocol/reference/generate_vectors.py --check    # fail if the files differ

Every valid vector NAME is written as NAME.bin (the complete changeset, zlib level 6) and NAME.json
(what it decodes to, plus the uncompressed payload as hex). The invalid inputs go to
vectors/invalid/ with invalid.json naming the error code each must give. The script is
deterministic: ids, stamps and "random" bytes are fixed, so running it again gives the same files.
"""

import calendar
import hashlib
import json
import os
import sqlite3
import struct
import sys
import uuid
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kotasync_codec import (  # noqa: E402
    DELETE, PULL, PUSH, UPDATE, UPSERT, ZERO_UUID, Changeset, ChangesetError, ColumnValue, Row, Table, Value,
    _varint, accepts, affinity, changeset_from_json, changeset_to_json, decode, encode, hlc, kept_value,
    value_from_json, value_to_json,
)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.normpath(os.path.join(HERE, "..", "vectors"))

REPLICA = uuid.UUID("5f0c6b9e-2d4a-4c39-9a51-7be1d0c3a2f4")
T0 = calendar.timegm((2026, 11, 28, 8, 0, 0)) * 1000  # 2026-11-28T08:00:00Z in Unix ms

PATIENTS = Table(
    "patients", ["id"], ["nik", "name", "birth_date", "sex", "village_code", "phone", "clinic_id", "updated_at"]
)
VISITS = Table(
    "visits", ["id"], ["patient_id", "clinic_id", "visit_date", "complaint", "weight_kg", "systolic", "diastolic", "notes"]
)
VILLAGES = Table("villages", ["code"], ["name", "district"])
DIAGNOSES = Table("diagnoses", ["visit_id", "line"], ["icd10", "description"])

t, i, r, n, b = Value.text, Value.integer, Value.real, Value.null, Value.blob


def all_columns(values):
    return [ColumnValue(c, v) for c, v in enumerate(values)]


def basic_push():
    # Applies cleanly to the sample server (samples/binjai) right after it is created: rows 2 and
    # 4 touch seeded patients, whose master versions there are 21 and 23.
    new_patient = "3c2b7c1e-8f4d-4d7a-b0a6-5e9f2c1d4b10"
    return Changeset(
        kind=PUSH, id=uuid.UUID("a3f1c2d4-5b6e-4f70-8a9b-0c1d2e3f4a5b"), replica_id=REPLICA,
        first_sequence=1, last_sequence=7, tables=[PATIENTS, VISITS],
        rows=[
            Row(0, UPSERT, 0, hlc(T0 + 5000, 0), [t(new_patient)], all_columns([
                t("1275014107990004"), t("Dewi Lestari"), t("1999-07-01"), t("P"), t("1275010003"),
                t("081298765432"), t("pkm-binjai-kota"), t("2026-11-28T08:00:05Z"),
            ])),
            # Captured earlier than row 0 was last touched, so its stamp delta is negative.
            Row(0, UPDATE, 21, hlc(T0, 3), [t("0b6f2a8e-4c1d-4e0a-9d3b-2f6c1a7e5b01")], [
                ColumnValue(5, t("081260009999")), ColumnValue(7, t("2026-11-28T08:00:00Z")),
            ]),
            Row(1, UPSERT, 0, hlc(T0 + 7000, 0), [t("9e8d7c6b-5a49-4b38-8c27-16f5e4d3c2b1")], all_columns([
                t(new_patient), t("pkm-binjai-kota"), t("2026-11-28"), t("Pusing"), r(61.25), i(118), i(76), n(),
            ])),
            Row(0, DELETE, 23, hlc(T0 + 7000, 1), [t("0b6f2a8e-4c1d-4e0a-9d3b-2f6c1a7e5b03")], []),
        ],
    )


STORAGE = Table("storage_classes", ["id"], ["value"])
KEYED = Table("keyed", ["k1", "k2"], [])


def storage_classes():
    cases = [
        ("null", n()),
        ("int-min", i(-9223372036854775808)),
        ("int-max", i(9223372036854775807)),
        ("int-zero", i(0)),
        ("int-minus-one", i(-1)),
        ("int-300", i(300)),
        ("real-zero", r(0.0)),
        ("real-negative-zero", r(-0.0)),
        ("real-one", r(1.0)),
        ("real-1e308", r(1e308)),
        ("real-subnormal", r(5e-324)),
        ("real-third", r(1.0 / 3.0)),
        ("text-007", t("007")),
        ("text-1e3", t("1e3")),
        ("text-empty", t("")),
        ("text-indonesian", t("Pemeriksaan ibu hamil di Puskesmas Binjai Kota — jam 08.00")),
        ("text-emoji", t("Sehat selalu 🏥👩‍⚕️💉")),
        ("blob-empty", b(b"")),
        ("blob-zeros", b(b"\x00\x00\x00")),
        ("blob-bytes", b(bytes([0x00, 0x31, 0x7F, 0x80, 0xFF]))),
    ]
    rows = [
        Row(0, UPSERT, 0, hlc(T0 + k, 0), [t(name)], [ColumnValue(0, value)])
        for k, (name, value) in enumerate(cases)
    ]
    # A composite key of a blob and an integer, in a table with no non-key columns.
    rows.append(Row(1, UPSERT, 0, hlc(T0 + len(cases), 0), [b(b"\x00\xff"), i(-1)], []))
    rows.append(Row(1, UPSERT, 0, hlc(T0 + len(cases), 1), [t("x"), r(2.5)], []))
    return Changeset(
        kind=PUSH, id=uuid.UUID("b7e2d3c4-6a5f-4e81-9b0c-1d2e3f4a5b6c"), replica_id=REPLICA,
        first_sequence=1, last_sequence=len(rows), tables=[STORAGE, KEYED], rows=rows,
    )


def column_bases():
    # The replica edited phone and name while it knew version 21 of the row, then pulled version
    # 30 (another column changed elsewhere) before pushing: those columns carry base 21, the
    # rest of the row is based on 30. The second row has no overrides, so its flags byte is 0.
    return Changeset(
        kind=PUSH, id=uuid.UUID("c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f"), replica_id=REPLICA,
        first_sequence=8, last_sequence=11, tables=[PATIENTS],
        rows=[
            Row(0, UPDATE, 30, hlc(T0 + 60_000, 0), [t("0b6f2a8e-4c1d-4e0a-9d3b-2f6c1a7e5b01")], [
                ColumnValue(1, t("Siti Aminah Lubis"), base_version=21),
                ColumnValue(5, t("081260001234"), base_version=21),
                ColumnValue(7, t("2026-11-28T08:01:00Z")),
            ]),
            Row(0, UPDATE, 22, hlc(T0 + 61_000, 0), [t("0b6f2a8e-4c1d-4e0a-9d3b-2f6c1a7e5b02")], [
                ColumnValue(5, t("081370009876")),
            ]),
        ],
    )


def pull_page():
    stamp = hlc(T0 + 90_000, 2)
    return Changeset(
        kind=PULL, id=uuid.UUID("d4e5f6a7-b8c9-4dae-8f01-23456789abcd"), replica_id=ZERO_UUID,
        first_sequence=40, last_sequence=44, tables=[VILLAGES, PATIENTS, VISITS, DIAGNOSES],
        rows=[
            Row(0, UPSERT, 41, hlc(T0 - 86_400_000, 0), [t("1275010001")], all_columns([t("Kartini"), t("Binjai Kota")])),
            Row(1, UPSERT, 42, stamp, [t("0b6f2a8e-4c1d-4e0a-9d3b-2f6c1a7e5b02")], all_columns([
                t("1275021207750002"), t("Budi Santoso"), t("1975-07-12"), t("L"), t("1275020003"), n(),
                t("pkm-kebun-lada"), t("2026-11-28T08:01:30Z"),
            ])),
            Row(3, UPSERT, 43, hlc(T0 + 95_000, 0), [t("7d1e9c40-1f2b-4a55-8c66-0e3f5b2a9c01"), i(2)],
                all_columns([t("I10"), t("Hipertensi esensial")])),
            Row(1, DELETE, 44, hlc(T0 + 96_000, 0), [t("0b6f2a8e-4c1d-4e0a-9d3b-2f6c1a7e5b03")], []),
        ],
    )


def empty_push():
    return Changeset(
        kind=PUSH, id=uuid.UUID("e5f6a7b8-c9d0-4e1f-8a2b-3c4d5e6f7a8b"), replica_id=REPLICA,
        first_sequence=12, last_sequence=12, tables=[], rows=[],
    )


VALID = {
    "basic_push": basic_push,
    "storage_classes": storage_classes,
    "column_bases": column_bases,
    "pull_page": pull_page,
    "empty_push": empty_push,
}


def reseal(head64: bytes, body: bytes) -> bytes:
    """A header with its CRC recomputed over the given bytes (for inputs that must pass the CRC)."""
    return head64 + struct.pack(">I", zlib.crc32(body, zlib.crc32(head64)) & 0xFFFFFFFF) + body


def with_payload(kind: int, payload: bytes, declared=None, sequences=(1, 1)) -> bytes:
    """A well-formed envelope (valid CRC) around an arbitrary payload."""
    body = zlib.compress(payload, 6)
    head = (
        b"KSYN" + struct.pack(">BBH", 1, kind, 0) + uuid.UUID("0badc0de-0000-4000-8000-000000000001").bytes
        + REPLICA.bytes + struct.pack(">QQII", *sequences, len(payload) if declared is None else declared, len(body))
    )
    return reseal(head, body)


def invalid_inputs(good: bytes):
    out = []

    def add(name, data, code, what):
        out.append((name, data, code, what))

    add("truncated", good[: 68 + (len(good) - 68) // 2], "changeset_truncated",
        "basic_push cut in the middle of its compressed payload")
    flipped = bytearray(good)
    flipped[68 + (len(good) - 68) // 2] ^= 0x01
    add("bad_crc", bytes(flipped), "changeset_corrupt", "basic_push with one bit of one payload byte flipped")
    wrong = bytearray(good)
    wrong[4] = 2
    add("wrong_version", bytes(wrong), "unsupported_version", "basic_push with format version byte 2")
    noise = b""
    while len(noise) < 96:
        noise += hashlib.sha256(b"kotasync not a changeset %d" % len(noise)).digest()
    add("not_kotasync", noise[:96], "unsupported_version", "96 pseudo-random bytes (no KSYN magic)")
    add("short_header", good[:40], "changeset_truncated", "the first 40 bytes of basic_push (header incomplete)")

    # Declares 2^31 uncompressed bytes; its lengths and CRC are otherwise right.
    body = zlib.compress(b"\x00" * 4096, 9)
    head = bytearray(good[:64])
    struct.pack_into(">II", head, 56, 1 << 31, len(body))
    add("bomb", reseal(bytes(head), body), "changeset_too_large",
        "declares an uncompressed length of 2^31 bytes (limit 64 MiB)")
    head = bytearray(good[:64])
    struct.pack_into(">II", head, 56, 2_000_000, len(body))
    add("ratio", reseal(bytes(head), body), "changeset_too_large",
        f"declares 2,000,000 uncompressed bytes for a {len(body)}-byte zlib body (ratio limit 1000)")

    add("trailing_bytes", good + b"\x00\x00\x00\x00", "changeset_malformed",
        "basic_push followed by 4 extra bytes that the header does not count")
    bad_kind = bytearray(good)
    bad_kind[5] = 3
    add("bad_kind", bytes(bad_kind), "changeset_malformed", "basic_push with kind byte 3")

    payload = zlib.decompress(good[68:])
    head = bytearray(good[:64])
    struct.pack_into(">I", head, 56, len(payload) + 1)
    add("length_mismatch", reseal(bytes(head), good[68:]), "changeset_corrupt",
        "declared uncompressed length one more than the payload inflates to (CRC valid)")
    add("zlib_garbage", reseal(good[:56] + struct.pack(">II", 100, 8), b"\x78\x9c\xff\xff\xff\xff\xff\xff"),
        "changeset_corrupt", "a body that is not a zlib stream (CRC valid)")

    add("payload_trailing", with_payload(1, b"\x00\x00\x00"), "changeset_malformed",
        "payload 00 00 00: no tables, no rows, then one byte too many")
    add("payload_short", with_payload(1, b"\x00"), "changeset_malformed", "payload 00: the row count is missing")
    table = b"\x01\x01t\x01\x02id\x01\x01v"  # one table t (id) [v]
    add("no_primary_key", with_payload(1, b"\x01\x01t\x00\x00\x00"), "changeset_malformed",
        "a table declared with no primary-key column")
    add("bad_utf8", with_payload(1, b"\x01\x01\xff\x01\x02id\x00\x00"), "changeset_malformed",
        "a table name that is not UTF-8 (byte ff)")
    row = b"\x00\x02\x00\x05\x02" + b"\x03\x01k" + b"\x01\x00\x01\x02"  # update t('k') set v = 1
    add("update_in_pull", with_payload(2, table + b"\x01" + row), "changeset_malformed",
        "a pull page (kind 2) holding an update row (operation 2)")
    add("bad_table_index", with_payload(1, table + b"\x01" + b"\x01" + row[1:]), "changeset_malformed",
        "a row whose table index (1) is not declared")
    add("bad_operation", with_payload(1, table + b"\x01" + b"\x00\x04" + row[2:]), "changeset_malformed",
        "a row with operation 4")
    add("bad_row_flags", with_payload(1, table + b"\x01" + b"\x00\x02\x02" + row[3:]), "changeset_malformed",
        "a row with flags 2 (only bit 0 is defined)")
    add("bad_value_tag", with_payload(1, table + b"\x01" + row[:-2] + b"\x05\x02"), "changeset_malformed",
        "a column value with tag 5")
    add("column_out_of_range", with_payload(1, table + b"\x01" + row[:-4] + b"\x01\x01\x01\x02"),
        "changeset_malformed", "a row setting column index 1 of a one-column table")
    add("delete_with_columns", with_payload(1, table + b"\x01" + b"\x00\x03" + row[2:]), "changeset_malformed",
        "a delete row that carries a column value")
    two = b"\x01\x01t\x01\x02id\x02\x01v\x01w"
    add("duplicate_column", with_payload(1, two + b"\x01" + b"\x00\x02\x00\x05\x02\x03\x01k\x02\x00\x00\x00\x00"),
        "changeset_malformed", "a row setting column index 0 twice")
    add("varint_overflow", with_payload(1, b"\xff" * 9 + b"\x02" + b"\x00"), "changeset_malformed",
        "a table count whose 10-byte varint exceeds 64 bits")
    add("varint_overlong", with_payload(1, b"\x80\x00" + b"\x00"), "changeset_malformed",
        "a table count of 0 written in two bytes (80 00): only the shortest form of a varint is valid")
    add("varint_overlong_row", with_payload(1, table + b"\x01" + row[:3] + b"\x85\x00" + row[4:]),
        "changeset_malformed", "a row version of 5 written in two bytes (85 00) instead of one (05)")

    flagged = bytearray(good[:64])
    flagged[7] = 0x01
    add("header_flags", reseal(bytes(flagged), good[68:]), "changeset_malformed",
        "basic_push with header flags 0x0001 (version 1 defines none; CRC valid)")
    add("nan_value", with_payload(1, table + b"\x01" + row[:-2] + b"\x02" + struct.pack(">Q", 0x7FF8000000000000)),
        "changeset_malformed", "a column value that is a real NaN (bits 7ff8000000000000)")
    add("nan_key", with_payload(1, table + b"\x01" + row[:5] + b"\x02" + struct.pack(">Q", 0xFFF0000000000001)
                                + row[8:]),
        "changeset_malformed", "a primary-key value that is a real NaN (bits fff0000000000001, negative, signalling)")
    add("duplicate_table", with_payload(1, b"\x02" + table[1:] * 2 + b"\x00"), "changeset_malformed",
        "a table dictionary listing table t twice")
    add("duplicate_column_name", with_payload(1, b"\x01\x01t\x01\x02id\x02\x01v\x01v\x00"), "changeset_malformed",
        "table t listing non-key column v twice")
    add("key_as_column", with_payload(1, b"\x01\x01t\x01\x02id\x01\x02id\x00"), "changeset_malformed",
        "table t listing its key column id again as a non-key column")
    add("too_many_rows", with_payload(1, b"\x00" + bytes([0xC1, 0x84, 0x3D])), "changeset_too_large",
        "a row count of 1,000,001 (above the default max_rows of 1,000,000 and the sample server's 200,000)")
    # Sequence numbers and versions above 2^63 - 1 (they fit the wire, not a SQLite integer).
    add("sequence_above_int64", with_payload(1, table + b"\x01" + row, sequences=(1 << 63, 1 << 63)),
        "changeset_malformed", "a push whose first and last sequence are 2^63")
    add("last_sequence_max", with_payload(1, table + b"\x01" + row, sequences=(1, (1 << 64) - 1)),
        "changeset_malformed", "a push whose last sequence is 2^64 - 1")
    add("version_above_int64", with_payload(1, table + b"\x01" + row[:3] + _varint(1 << 63) + row[4:]),
        "changeset_malformed", "an update row whose version is 2^63 (varint 80 80 80 80 80 80 80 80 80 01)")
    add("base_version_above_int64",
        with_payload(1, table + b"\x01" + b"\x00\x02\x01" + row[3:-3] + b"\x00" + _varint((1 << 64) - 1) + row[-2:]),
        "changeset_malformed", "an update row with per-column bases whose column base version is 2^64 - 1")
    return out


# What a column keeps of a value (changeset.md 2.2): declared type, value written, value kept.
AFFINITY_CASES = [
    ("REAL", r(-0.0), "a negative zero loses its sign"),
    ("REAL", r(0.0), ""),
    ("REAL", r(3.0), "a whole-number real stays a real"),
    ("REAL", r(-2.5), ""),
    ("REAL", r(5e-324), "the smallest subnormal"),
    ("REAL", r(float("-inf")), ""),
    ("REAL", r(2.0 ** 63), ""),
    ("DOUBLE PRECISION", r(-0.0), "REAL affinity by its DOUB"),
    ("FLOAT", r(61.25), ""),
    ("NUMERIC", r(3.0), "a whole-number real becomes an integer"),
    ("NUMERIC", r(-0.0), "both zeros become the integer 0"),
    ("NUMERIC", r(0.0), ""),
    ("NUMERIC", r(-7.0), ""),
    ("NUMERIC", r(0.5), "a real with a fraction stays a real"),
    ("NUMERIC", r(2.0 ** 53 + 2), "whole reals beyond 2^53 convert too"),
    ("NUMERIC", r(2.0 ** 63 - 1024), "the largest real below 2^63"),
    ("NUMERIC", r(-(2.0 ** 63) + 1024), "the smallest real above -2^63"),
    ("NUMERIC", r(2.0 ** 63), "2^63 does not fit: stays a real"),
    ("NUMERIC", r(-(2.0 ** 63)), "-2^63 is the smallest integer: stays a real (SQLite's rule)"),
    ("NUMERIC", r(float("inf")), ""),
    ("NUMERIC", i(3), ""),
    ("NUMERIC", i(-9223372036854775808), ""),
    ("DECIMAL(10,2)", r(12.0), "NUMERIC affinity (no INT, CHAR, CLOB, TEXT, BLOB, REAL, FLOA, DOUB)"),
    ("DECIMAL(10,2)", r(12.5), ""),
    ("BOOLEAN", r(1.0), "NUMERIC affinity"),
    ("DATE", r(20261128.0), "NUMERIC affinity"),
    ("INTEGER", i(9223372036854775807), ""),
    ("INTEGER", i(-1), ""),
    ("TEXT", t("007"), "text that looks like a number stays text"),
    ("TEXT", t("1e3"), ""),
    ("VARCHAR(20)", t("-0.0"), ""),
    ("BLOB", r(-0.0), "BLOB affinity keeps every value bit for bit"),
    ("BLOB", r(3.0), ""),
    ("BLOB", b(b""), "an empty blob is not NULL"),
    ("BLOB", t(""), ""),
    ("BLOB", i(3), ""),
    ("", r(-0.0), "no declared type: BLOB affinity"),
    ("", r(3.0), ""),
    ("", b(b""), ""),
    ("", t("3.0"), ""),
]


def affinity_cases():
    """affinity.json, each case checked against this machine's SQLite (Python's sqlite3)."""
    db = sqlite3.connect(":memory:")
    cases = []
    for n, (declared, written, note) in enumerate(AFFINITY_CASES):
        aff = affinity(declared)
        assert accepts(aff, written), (declared, written)
        kept = kept_value(aff, written)
        db.execute(f"CREATE TABLE t{n} (v {declared})")
        db.execute(f"INSERT INTO t{n} VALUES (?)", (written.as_python(),))
        (stored,) = db.execute(f"SELECT v FROM t{n}").fetchone()
        actual = {int: Value.integer, float: Value.real, str: Value.text, bytes: Value.blob}[type(stored)](stored)
        assert actual == kept, (declared, written, actual, kept)
        case = {"declared_type": declared, "affinity": aff, "written": value_to_json(written),
                "kept": value_to_json(kept)}
        if note:
            case["note"] = note
        cases.append(case)
        assert value_from_json(case["kept"]) == kept
    return {
        "description": "What a column keeps of a value written to it, by its declared type (changeset.md 2.2). "
                       "The generator checks every case against the SQLite of the machine it runs on.",
        "cases": cases,
    }


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def build():
    files = {}
    for name, make in VALID.items():
        cs = make()
        data = encode(cs, 6)
        doc = changeset_to_json(cs)
        # Self-checks: the bytes decode to the same document, and the document encodes back.
        assert changeset_to_json(decode(data)) == doc, name
        assert encode(changeset_from_json(doc), 6) == data, name
        files[name + ".bin"] = data
        files[name + ".json"] = (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    index = []
    for name, data, code, what in invalid_inputs(files["basic_push.bin"]):
        try:
            decode(data)
        except ChangesetError as e:
            assert e.code == code, (name, e.code, code)
        else:
            raise AssertionError(f"{name} decodes")
        files["invalid/" + name + ".bin"] = data
        index.append({"file": name + ".bin", "error": code, "description": what})
    files["invalid/invalid.json"] = (json.dumps(index, indent=2) + "\n").encode("utf-8")
    files["affinity.json"] = (json.dumps(affinity_cases(), indent=2) + "\n").encode("utf-8")
    return files


def main():
    check = "--check" in sys.argv[1:]
    files = build()
    os.makedirs(os.path.join(OUT, "invalid"), exist_ok=True)
    stale = []
    for rel, data in sorted(files.items()):
        path = os.path.join(OUT, rel)
        if check:
            try:
                with open(path, "rb") as f:
                    if f.read() != data:
                        stale.append(rel)
            except FileNotFoundError:
                stale.append(rel)
        else:
            write(path, data)
    if check:
        if stale:
            print("out of date: " + ", ".join(stale))
            sys.exit(1)
        print(f"{len(files)} files up to date")
    else:
        print(f"wrote {len(files)} files to {OUT}")


if __name__ == "__main__":
    main()
