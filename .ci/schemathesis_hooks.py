"""Schemathesis hooks for .ci/schemathesis.

Two things the OpenAPI description cannot say for itself:

* The body of POST /v1/push is a binary changeset (Protocol/changeset.md), which random bytes
  almost never get past the first check of. Here it is built from the committed vectors
  (Protocol/vectors): the valid ones as they are and re-encoded with a fresh id, replica and
  sequence range (so they merge rather than replay), the invalid ones, and valid ones mutated —
  a payload byte changed and the envelope re-sealed (lengths and CRC-32 right, so the decoder's
  payload rules are reached), a header byte changed, or the bytes cut short. Every choice comes
  from Hypothesis, so the run's seed fixes it.
* The run's own tokens must survive POST /v1/admin/tokens/{id}/revoke: their ids (in
  KOTASYNC_PROTECTED_TOKEN_IDS) are never generated for it, and a case that still names one is
  pointed at an id no token has before it is sent.
"""

import os
import struct
import sys
import uuid
import zlib

import schemathesis
from hypothesis import strategies as st

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
VECTORS = os.path.join(ROOT, "Protocol", "vectors")
sys.path.insert(0, os.path.join(ROOT, "Protocol", "reference"))
import kotasync_codec as codec  # noqa: E402

# Both binary bodies are sent as their bytes, as application/octet-stream would be.
schemathesis.serializer.alias("application/vnd.kotasync.changeset", "application/octet-stream")
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")

PROTECTED = {t for t in os.environ.get("KOTASYNC_PROTECTED_TOKEN_IDS", "").split(",") if t}
UNUSED_TOKEN_ID = "00000000"


def _read(path):
    with open(path, "rb") as f:
        return f.read()


VALID = [
    _read(os.path.join(VECTORS, name))
    for name in sorted(os.listdir(VECTORS))
    if name.endswith(".bin") and not name.startswith("pull_page")
]
INVALID = [
    _read(os.path.join(VECTORS, "invalid", name))
    for name in sorted(os.listdir(os.path.join(VECTORS, "invalid")))
    if name.endswith(".bin")
]


def _reseal(head64, body):
    return head64 + struct.pack(">I", zlib.crc32(body, zlib.crc32(head64)) & 0xFFFFFFFF) + body


def fresh(data, id_bits, replica_bits, first, span):
    """A valid vector re-encoded as a new changeset of another replica."""
    cs = codec.decode(data)
    cs.id = uuid.UUID(int=id_bits, version=4)
    cs.replica_id = uuid.UUID(int=replica_bits | 1, version=4)
    cs.first_sequence = first
    cs.last_sequence = first + span
    return codec.encode(cs, 6)


def payload_mutation(data, position, value):
    """A valid vector with one payload byte set to `value`, sealed again (lengths and CRC right)."""
    payload = bytearray(zlib.decompress(data[68:]))
    if not payload:
        return data
    payload[position % len(payload)] = value
    body = zlib.compress(bytes(payload), 6)
    head = bytearray(data[:64])
    struct.pack_into(">II", head, 56, len(payload), len(body))
    return _reseal(bytes(head), body)


def header_mutation(data, position, value):
    """A valid vector with one envelope byte changed (the CRC then no longer matches, or the
    change is to the CRC itself)."""
    out = bytearray(data)
    out[position % 68] = value
    return bytes(out)


def truncation(data, length):
    return data[: length % len(data)]


CHANGESETS = st.one_of(
    st.sampled_from(VALID),
    st.sampled_from(INVALID),
    st.builds(
        fresh,
        st.sampled_from(VALID),
        st.integers(0, 2**128 - 1),
        st.integers(0, 2**128 - 1),
        st.integers(1, 2**40),
        st.integers(0, 100),
    ),
    st.builds(payload_mutation, st.sampled_from(VALID), st.integers(0, 10_000), st.integers(0, 255)),
    st.builds(header_mutation, st.sampled_from(VALID), st.integers(0, 67), st.integers(0, 255)),
    st.builds(truncation, st.sampled_from(VALID), st.integers(0, 10_000)),
)


def _is(context, method, path):
    operation = getattr(context, "operation", None)
    return operation is not None and operation.method.upper() == method and operation.path == path


@schemathesis.hook
def before_generate_body(context, strategy):
    if _is(context, "POST", "/v1/push"):
        return CHANGESETS
    return strategy


@schemathesis.hook
def filter_path_parameters(context, path_parameters):
    if _is(context, "POST", "/v1/admin/tokens/{id}/revoke"):
        return (path_parameters or {}).get("id") not in PROTECTED
    return True


@schemathesis.hook
def before_call(context, case, kwargs):
    # Whatever produced the case (an example, a link, a mutation), never revoke the run's tokens.
    if case.operation.method.upper() == "POST" and case.operation.path == "/v1/admin/tokens/{id}/revoke":
        if case.path_parameters and case.path_parameters.get("id") in PROTECTED:
            case.path_parameters["id"] = UNUSED_TOKEN_ID
