"""Substrate/tetcore node telemetry messages: parse both envelopes, find identity, make rows.

A node streams one JSON object per websocket message, in one of two envelopes
(``shared/reference/substrate-analytics.md`` section 1.4):

* V1 (substrate 2019-2020): flat, ``{"msg": ..., "ts": ..., ...fields}``.
* V2 (substrate since ~2021, every tetcore): ``{"id": n, "ts": ..., "payload": {"msg": ...}}``;
  ``id`` tells apart several nodes of one process sharing one socket.

Both are accepted. V1 frames belong to node ``"0"``. A message must carry an RFC 3339
``ts`` (the node's clock); the server's own reception time is stored next to it.
Identity (the libp2p peer id) comes from ``system.connected`` (``network_id``), else from
``system.network_state`` (``state.peerId``) or an old ``system.interval``
(``network_state.peerId``), looked for in the message body of either envelope, which
fixes the reference implementation never identifying V2 nodes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from downlink.store.storable import find_problem

SOURCE = "substrate"
CLASS_PREFIX = "substrate/"
UNKNOWN_MSG = "unknown"
# A frame carrying this key is a Downlink control request, not telemetry (docs/nodes.md).
FLUSH_KEY = "downlink_flush"
_MSG_MAX = 128
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})",
    re.ASCII,
)
# Fields of ``system.connected`` kept as columns of ``node_connections``.
_IDENTITY_TEXT = ("name", "chain", "version", "implementation", "genesis_hash")
_IDENTITY_SKIP = frozenset(("msg", "ts", "id", "level", "network_id", "authority", "startup_time"))

Row = dict[str, Any]


class MessageRejected(ValueError):
    """A frame that cannot be stored; ``reason`` labels the metric."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


@dataclass(frozen=True)
class NodeMessage:
    """One parsed telemetry message."""

    envelope: int
    node: str
    msg: str
    ts_raw: str
    ts: float
    body: dict[str, Any]
    body_text: str


@dataclass(frozen=True)
class FlushRequest:
    """A client's request to be told once everything it sent before is committed."""

    token: Any


@dataclass(frozen=True)
class Identity:
    """What a node says about itself; only ``peer_id`` is always set."""

    peer_id: str
    announced: bool = False
    name: str | None = None
    chain: str | None = None
    version: str | None = None
    implementation: str | None = None
    genesis_hash: str | None = None
    authority: bool | None = None
    startup_time: int | None = None
    info: dict[str, Any] | None = None

    def columns(self) -> dict[str, Any]:
        """Return the ``node_connections`` columns this identity fills."""
        out: dict[str, Any] = {"peer_id": self.peer_id}
        if self.announced:
            out |= {
                "name": self.name,
                "chain": self.chain,
                "version": self.version,
                "implementation": self.implementation,
                "genesis_hash": self.genesis_hash,
                "authority": self.authority,
                "startup_time": self.startup_time,
                "info": self.info,
            }
        return out


def parse_ts(value: object) -> float:
    """Return epoch seconds of an RFC 3339 timestamp (nanoseconds and offsets allowed)."""
    if not isinstance(value, str):
        raise MessageRejected("message has no string `ts`", "missing_ts")
    if not _RFC3339.fullmatch(value):
        raise MessageRejected(f"`ts` is not an RFC 3339 time: {value[:64]!r}", "bad_ts")
    text = value.replace("z", "+00:00").replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise MessageRejected(f"`ts` is not a valid time: {value[:64]!r}", "bad_ts") from None


def _decode(data: bytes | str) -> tuple[Any, str]:
    if isinstance(data, str):
        text = data
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise MessageRejected("frame is not UTF-8", "invalid_utf8") from None
    try:
        return orjson.loads(text), text
    except orjson.JSONDecodeError:
        raise MessageRejected("frame is not valid JSON", "invalid_json") from None


def _node_key(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise MessageRejected("V2 `id` must be an integer", "bad_id")
    key = str(value)
    if not key or len(key) > 24:
        raise MessageRejected("V2 `id` is empty or too long", "bad_id")
    return key


def parse_frame(data: bytes | str) -> NodeMessage | FlushRequest:
    """Parse one websocket message of either envelope, or raise MessageRejected."""
    doc, text = _decode(data)
    if not isinstance(doc, dict):
        raise MessageRejected("frame is not a JSON object", "not_object")
    # One rule for every source (downlink.store.storable): PostgreSQL cannot store a NUL.
    # JSON can only spell it as an escape (orjson refuses raw control characters and
    # lone surrogates), so only a frame containing one is walked.
    unstorable = find_problem(doc, "message") if "\\u0000" in text else None
    if unstorable is not None:
        where, problem = unstorable
        raise MessageRejected(f"{where} contains {problem}, which cannot be stored",
                              "unstorable")
    if FLUSH_KEY in doc:
        return FlushRequest(doc[FLUSH_KEY])
    ts = parse_ts(doc.get("ts"))
    payload = doc.get("payload")
    if isinstance(payload, dict) and "id" in doc:
        envelope, node, body = 2, _node_key(doc["id"]), payload
        body_text = orjson.dumps(body).decode("utf-8")
    else:
        envelope, node, body, body_text = 1, "0", doc, text
    msg = body.get("msg")
    if not isinstance(msg, str) or not msg or len(msg) > _MSG_MAX or not msg.isprintable():
        msg = UNKNOWN_MSG
    return NodeMessage(envelope, node, msg, doc["ts"], ts, body, body_text)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _startup_time(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19:
        return int(value)
    return None


def identify(message: NodeMessage) -> Identity | None:
    """Return the identity a message announces, if it carries one."""
    return identity_of(message.msg, message.body)


def identity_of(msg: str, body: Mapping[str, Any]) -> Identity | None:
    """Return the identity a message of type ``msg`` with ``body`` carries, if any
    (also what the connections consumer re-reads from a stored record's payload)."""
    if msg == "system.connected":
        peer = _text(body.get("network_id"))
        if peer:
            authority = body.get("authority")
            info = {k: v for k, v in body.items() if k not in _IDENTITY_SKIP}
            for key in _IDENTITY_TEXT:
                info.pop(key, None)
            texts = {key: _text(body.get(key)) for key in _IDENTITY_TEXT}
            return Identity(
                peer_id=peer,
                announced=True,
                authority=authority if isinstance(authority, bool) else None,
                startup_time=_startup_time(body.get("startup_time")),
                info=info or None,
                **texts,
            )
    for holder in ("state", "network_state"):
        inner = body.get(holder)
        if isinstance(inner, dict):
            peer = _text(inner.get("peerId"))
            if peer:
                return Identity(peer_id=peer)
    return None


def to_row(
    message: NodeMessage,
    *,
    connection: str,
    seq: int,
    peer_id: str | None,
    ip: str,
    audit: bool,
    received_at: float,
    connected_at: float | None = None,
    announced: bool = False,
) -> Row:
    """Return the ``records`` row for one message received on ``connection``.

    ``dedup_key`` is unique per (connection, sequence number), so a batch retried after
    an ambiguous commit failure is not stored twice.

    ``attrs`` keeps what the connections consumer needs to rebuild the connection's
    row from the records alone: ``conn``, ``node``, ``ip``, ``audit``, ``since`` (when
    the connection opened) and ``announced`` (true on the one record whose
    ``system.connected`` gave the connection's descriptive fields: name, chain, …).
    """
    attrs: dict[str, Any] = {
        "conn": connection,
        "node": message.node,
        "v": message.envelope,
        "ts": message.ts_raw,
        "audit": audit,
        "ip": ip,
        "msg": message.msg,
        "since": received_at if connected_at is None else connected_at,
    }
    if announced:
        attrs["announced"] = True
    target = message.body.get("target")
    if isinstance(target, str):
        attrs["target"] = target[:256]
    return {
        "source": SOURCE,
        "record_version": message.envelope,
        "classification": CLASS_PREFIX + message.msg,
        "severity": 1,
        "machine_id": peer_id or "",
        "ts_capture": message.ts,
        "ts_reception": received_at,
        "arch": "",
        "host_type": "",
        "build": "",
        "kernel_version": "",
        "payload_version": 0,
        "system_name": "",
        "board_name": "",
        "cpu_model": "",
        "bios_version": "",
        "event_id": "",
        "external": False,
        "tid": "",
        "payload": message.body_text,
        "attrs": attrs,
        "dedup_key": f"s{connection}:{seq:x}",
    }
