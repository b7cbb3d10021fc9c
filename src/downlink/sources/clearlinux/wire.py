"""The Clear Linux telemetrics record: parsing and validation of both wire formats.

* v2 (client <= 2.3.x): one HTTP header per field, the payload as the raw body.
* v3 (client >= 2.4.x): the same fields and the payload as one JSON object of strings.

Checks run in the order of the original collector and stop at the first failure, with
its exact message (see ``shared/reference/clearlinux.md`` section 2.3). Where the
original answered 500 (NUL bytes, missing System-Name, out-of-range integers) this
module rejects with a clear message instead: a NUL character (or a lone surrogate) in
any field or the payload is refused naming the field, on every database
(:mod:`downlink.store.storable`). Values the 2.4.x client cuts at the first
space (``Intel(R)``) pass, as they must.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import msgspec

from downlink.ingest.shallow_json import JSONError, loads_shallow
from downlink.integers import INT32_MAX as _INT32_MAX
from downlink.integers import parse_int, parse_whole
from downlink.sources.base import SenderRule
from downlink.store.storable import text_problem

SOURCE = "clearlinux"

# Trust on first use of machine ids (docs/senders.md). The real client cannot be
# changed to keep a secret, so a record whose machine id does not match its binding is
# stored flagged and left out of the dashboards rather than refused (a refusal would
# make the unchanged client re-send it for ever). The Clear Linux Source declares it
# once it exists (``senders=SENDER_RULE``); until then app.py passes it to the guard.
SENDER_RULE = SenderRule(
    id_name="machine_id",
    on_mismatch="flag",
    rule="records of a machine id from another network (or without its secret or "
    "certificate) are stored flagged and left out of the dashboards",
)

# (field key, header name used in messages), in the order the client sends them.
FIELDS: tuple[tuple[str, str], ...] = (
    ("record_format_version", "Record-Format-Version"),
    ("classification", "Classification"),
    ("severity", "Severity"),
    ("machine_id", "Machine-Id"),
    ("creation_timestamp", "Creation-Timestamp"),
    ("arch", "Arch"),
    ("host_type", "Host-Type"),
    ("build", "Build"),
    ("kernel_version", "Kernel-Version"),
    ("payload_format_version", "Payload-Format-Version"),
    ("system_name", "System-Name"),
    ("board_name", "Board-Name"),
    ("cpu_model", "Cpu-Model"),
    ("bios_version", "Bios-Version"),
    ("event_id", "Event-Id"),
)
FIELD_KEYS = frozenset(key for key, _ in FIELDS)
TID_KEY = "x_telemetry_tid"
EXTERNAL_KEY = "x_clr_external"

_V1 = (
    "arch",
    "build",
    "creation_timestamp",
    "classification",
    "host_type",
    "kernel_version",
    "machine_id",
    "severity",
    "record_format_version",
)
_V2 = _V1 + ("payload_format_version", "system_name", TID_KEY)
_V3 = _V2 + ("board_name", "bios_version", "cpu_model")
_V4 = _V3 + ("event_id",)
REQUIRED: dict[int, tuple[str, ...]] = {1: _V1, 2: _V2, 3: _V3, 4: _V4}
_NAMES = dict(FIELDS) | {TID_KEY: "X-Telemetry-Tid"}

ARCHES = frozenset(
    ("armv7l", "armv6l", "aarch64", "amd64", "sparc64", "ppc64", "i686", "i386", "x86_64", "ppc")
)
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_SIGNED = re.compile(r"\s*[+-]?[0-9]+\s*", re.ASCII)
_ASCII_SPACE = " \t\n\r\x0b\x0c"
_EVENT_ID = re.compile(r"[0-9a-f]{32}", re.ASCII)
_CLEAR_BUILD = re.compile(r"[0-9]+", re.ASCII)
_OTHER_BUILD = re.compile(r"[-_a-zA-Z0-9.]+", re.ASCII)
_PRINTABLE_TEXT = re.compile("[" + re.escape(string.printable) + "]*")
# Largest capture time that still formats as a date (9999-12-31 23:59:59 UTC).
_TS_MAX = 253402300799
NOT_AVAILABLE = "N/A"


class RecordRejected(ValueError):
    """The record breaks a rule; ``message`` is what the client is told."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


def field_key(name: str) -> str:
    """Return the canonical key of a header name: lower case, ``-`` read as ``_``."""
    return name.strip().lower().replace("-", "_")


_WANTED = FIELD_KEYS | {TID_KEY, EXTERNAL_KEY}
# Raw header name -> field key ("" for headers that are not fields), learnt as names
# are seen; bounded so that a client inventing names cannot grow it.
_RAW_KEYS: dict[bytes, str] = {}
_RAW_KEYS_MAX = 4096
_JSON_KEYS: dict[str, str] = {}  # the same for the keys of JSON records


def _known_key(cache: dict[Any, str], name: bytes | str, allowed: frozenset[str]) -> str:
    """Return the field key of a header or JSON key name ("" if not in ``allowed``)."""
    key = cache.get(name)
    if key is None:
        key = field_key(name.decode("latin-1") if isinstance(name, bytes) else str(name))
        key = key if key in allowed else ""
        if len(cache) < _RAW_KEYS_MAX:
            cache[name] = key
    return key


def fields_from_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Collect the record fields (and TID, external flag) from v2 request headers."""
    out: dict[str, str] = {}
    for name, value in headers:
        key = field_key(name)
        if key in _WANTED and key not in out:
            out[key] = value
    return out


def fields_from_raw_headers(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """:func:`fields_from_headers` over ASGI's raw (bytes) headers, for the hot path."""
    out: dict[str, str] = {}
    for name, value in headers:
        key = _known_key(_RAW_KEYS, name, _WANTED)
        if key and key not in out:
            out[key] = value.decode("latin-1")
    return out


# Content-Type and Content-Length by their exact (ASGI: lower-case) names only.
CONTENT_TYPE = "\x00content-type"
CONTENT_LENGTH = "\x00content-length"
_HEAD_KEYS: dict[bytes, str] = {b"content-type": CONTENT_TYPE, b"content-length": CONTENT_LENGTH}


def head_from_raw_headers(
    headers: Iterable[tuple[bytes, bytes]], watch: bytes = b"",
) -> tuple[dict[str, str], str | None, str | None, bool]:
    """The record fields, Content-Type and Content-Length of a request, in one pass;
    and whether a header named ``watch`` (an ASGI lower-case name that is not a field,
    such as the sender secret's) came with it, so that no caller scans them again."""
    out: dict[str, str] = {}
    ctype = length = None
    watched = False
    for name, value in headers:
        key = _known_key(_HEAD_KEYS, name, _WANTED)
        if not key:
            if name == watch:
                watched = True
            continue
        if key == CONTENT_TYPE:
            if ctype is None:
                ctype = value.decode("latin-1")
        elif key == CONTENT_LENGTH:
            if length is None:
                length = value.decode("latin-1")
        elif key not in out:
            out[key] = value.decode("latin-1")
    return out, ctype, length, watched


# The v3 JSON record as the OpenAPI document describes it (collector and bulk).
JSON_RECORD_SCHEMA: dict[str, Any] = {
    "title": "ClearLinuxRecordV3",
    "type": "object",
    "description": "One record as the telemetrics-client 2.4.x sends it: the header "
    "fields (by record_format_version, as at /v2/collector) as strings, and the payload.",
    "properties": {
        **{key: {"type": ["string", "integer"]} for key, _ in FIELDS},
        "payload": {"type": "string"},
    },
    "required": ["record_format_version", "payload"],
}


# A record as the 2.4.x client sends it: one flat object of strings. Decoding that shape
# in msgspec's C code is about 5x cheaper than the shallow decoder's value by value;
# anything else (a number, a nested value, a syntax error, a lone surrogate) fails it
# at once and takes the general path, with its messages.
_FLAT_RECORD = msgspec.json.Decoder(dict[str, str])


def flat_record(data: bytes | memoryview | msgspec.Raw) -> dict[str, str] | None:
    """The record decoded when it is a flat object of strings, else None."""
    try:
        return _FLAT_RECORD.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def fields_from_json(body: bytes | memoryview) -> tuple[dict[str, str], bytes]:
    """Split a v3 JSON body into its record fields and its payload bytes."""
    doc: Any = flat_record(body)
    if doc is None:
        try:
            doc = loads_shallow(body)  # linear time, however deeply the body nests
        except JSONError as exc:
            raise RecordRejected(f"Request body is not valid JSON: {exc}", "json") from None
    return fields_from_object(doc)


def fields_from_object(doc: Any) -> tuple[dict[str, str], bytes]:
    """Split a decoded v3 record (a JSON object) into its fields and payload bytes."""
    if not isinstance(doc, dict):
        raise RecordRejected("Request body must be a JSON object", "json")
    out: dict[str, str] = {}
    for raw_key, value in doc.items():
        key = _known_key(_JSON_KEYS, raw_key, FIELD_KEYS)
        if not key:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise RecordRejected(f"{_NAMES[key]} must be a string", key)
        out[key] = str(value)
    payload = doc.get("payload")
    if payload is None:
        # The 2.4.x client always sends it; a record without one is not a record.
        raise RecordRejected("payload is missing", "missing")
    if not isinstance(payload, str):
        raise RecordRejected("payload must be a string", "payload")
    return out, payload.encode("utf-8", "surrogatepass")


def decode_payload(body: bytes) -> str:
    """Decode a payload as UTF-8, falling back to Latin-1; NUL bytes are refused."""
    if b"\x00" in body:
        raise RecordRejected("Payload contains NUL bytes, which cannot be stored", "unstorable")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return body.decode("latin-1")


def _strip_quotes(value: str) -> str:
    return value.replace('"', "").replace("'", "")


def _printable(value: str) -> bool:
    return len(value) < 200 and _PRINTABLE_TEXT.fullmatch(value) is not None


def validate(
    fields: Mapping[str, str],
    payload: bytes,
    *,
    allowed_tids: Collection[str] = (),
    any_tid: bool = False,
    received_at: float,
) -> dict[str, Any]:
    """Check one record and return the row to store, or raise RecordRejected."""
    tid = fields.get(TID_KEY)
    if not any_tid and (tid is None or tid not in allowed_tids):
        raise RecordRejected("Telemetry ID mismatch", "tid")
    joined = "".join(fields.values())
    if not joined.isascii() or "\x00" in joined:  # one look at every value at once
        for key, value in fields.items():
            problem = text_problem(value)
            if problem is not None:
                # Not a rule of the original (it answered 500): one rule on both databases.
                raise RecordRejected(
                    f"{_NAMES.get(key, key)} contains {problem}, which cannot be stored",
                    "unstorable",
                )

    rfv_text = fields.get("record_format_version", "")
    rfv = parse_whole(rfv_text, max(REQUIRED))
    if rfv not in REQUIRED:
        raise RecordRejected("Record-Format-Version is invalid", "record_format_version")
    for key in REQUIRED[rfv]:
        if key == TID_KEY and any_tid:
            continue
        if key not in fields:
            raise RecordRejected(
                f"Record-Format-Version headers are invalid, {_NAMES[key]} missing", "missing"
            )

    severity = parse_whole(fields["severity"], 4)
    if severity is None or severity < 1:
        raise RecordRejected("severity value is out of range", "severity")

    classification = fields["classification"]
    if len(classification.split("/")) != 3:
        raise RecordRejected("Classification value is invalid", "classification")

    machine_id = fields["machine_id"]
    if len(machine_id) > 32:
        raise RecordRejected("Machine id value is invalid", "machine_id")

    ts_text = fields["creation_timestamp"]
    ts_capture = parse_whole(ts_text, _TS_MAX)
    if ts_capture is None:
        raise RecordRejected("timestamp is invalid", "creation_timestamp")

    arch = fields["arch"]
    if arch not in ARCHES:
        raise RecordRejected("architecture is invalid", "arch")

    host_type = fields["host_type"]
    if len(host_type) >= 250:
        raise RecordRejected("host type is invalid", "host_type")

    kernel = fields["kernel_version"]
    parts = kernel.split(".", 2)
    if len(parts) != 3 or not _DIGITS.fullmatch(parts[0]) or not _DIGITS.fullmatch(parts[1]):
        raise RecordRejected("kernel version is invalid", "kernel_version")

    board = cpu = bios = event_id = NOT_AVAILABLE
    if rfv >= 3:
        for key, message in (
            ("board_name", "board name is invalid"),
            ("cpu_model", "cpu model is invalid"),
            ("bios_version", "BIOS version is invalid"),
        ):
            if not _printable(fields[key]):
                raise RecordRejected(message, key)
        board, cpu, bios = fields["board_name"], fields["cpu_model"], fields["bios_version"]
    if rfv >= 4:
        event_id = fields["event_id"]
        if not _EVENT_ID.fullmatch(event_id):
            raise RecordRejected("Event id is invalid", "event_id")

    if "system_name" not in fields:
        raise RecordRejected(
            "Record-Format-Version headers are invalid, System-Name missing", "missing"
        )
    system_name = _strip_quotes(fields["system_name"])

    build = _strip_quotes(fields["build"])
    if system_name == "clear-linux-os":
        if not _CLEAR_BUILD.fullmatch(build):
            raise RecordRejected("Clear Linux OS build version has invalid characters", "build")
    elif not _OTHER_BUILD.fullmatch(build):
        raise RecordRejected("Build version has invalid characters", "build")

    pfv_text = fields.get("payload_format_version")
    if pfv_text is None:
        raise RecordRejected(
            "Record-Format-Version headers are invalid, Payload-Format-Version missing",
            "missing",
        )
    if not _SIGNED.fullmatch(pfv_text):
        raise RecordRejected(
            "Error parsing payload_format_version, invalid literal for int() with base 10: "
            f"{pfv_text!r}",
            "payload_format_version",
        )
    pfv = parse_int(pfv_text.strip(_ASCII_SPACE), -_INT32_MAX, _INT32_MAX - 1)
    if pfv is None:
        raise RecordRejected(
            "Payload format version outside of range supported", "payload_format_version"
        )

    text = decode_payload(payload)
    return {
        "source": SOURCE,
        "record_version": rfv,
        "classification": classification,
        "severity": severity,
        "machine_id": machine_id,
        "ts_capture": float(ts_capture),
        "ts_reception": received_at,
        "arch": arch,
        "host_type": host_type,
        "build": build,
        "kernel_version": kernel,
        "payload_version": pfv,
        "system_name": system_name,
        "board_name": board,
        "cpu_model": cpu,
        "bios_version": bios,
        "event_id": event_id,
        "external": fields.get(EXTERNAL_KEY) == "true",
        "tid": tid or "",
        "payload": text,
        "attrs": None,
        "dedup_key": dedup_key(machine_id, event_id, ts_text, classification, payload)
        if rfv >= 4
        else None,
    }


def dedup_key(machine_id: str, event_id: str, ts: str, classification: str, body: bytes) -> str:
    """Return the key shared by byte-identical retransmissions of one record."""
    head = f"{machine_id}\x00{event_id}\x00{ts}\x00{classification}\x00"
    h = hashlib.sha256(head.encode("utf-8", "surrogatepass"))
    h.update(body)
    return h.hexdigest()
