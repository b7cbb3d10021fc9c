"""Websocket endpoints ``/`` and ``/audit`` where substrate/tetcore nodes stream telemetry.

One :class:`NodeSession` per connection. Its reader takes messages off the socket,
parses them (:mod:`downlink.sources.substrate.wire`) and appends rows to a bounded buffer; its
flusher hands the buffer to the group-commit writer. The protocol is one-way, so:

* A malformed message is counted (``downlink_ws_malformed_messages``) and skipped; the
  connection stays open and other nodes are never affected. So is a message with a
  NUL character in any string (reason ``unstorable``, :mod:`downlink.store.storable`)
  and one the database refuses while it takes the others (reason ``refused``).
* Backpressure, not loss: when the writer queue is full the flusher retries, the buffer
  fills up (``DOWNLINK_SUBSTRATE_WS_BUFFER_MAX``) and the reader stops reading, so TCP pushes back
  on the node.
* Liveness: the server pings every ``DOWNLINK_SUBSTRATE_WS_PING_INTERVAL_S``. Pongs are required
  only when ``DOWNLINK_SUBSTRATE_WS_PONG_TIMEOUT_S`` is set (uvicorn closes with 1011); otherwise
  a node is dropped after ``DOWNLINK_SUBSTRATE_WS_IDLE_TIMEOUT_S`` without a message, because
  modern nodes never read their socket and so never answer pings. A client that
  reads nothing of what it is sent (flush answers) while the connection's output
  buffer is full is dropped after the same time by the websocket protocol
  (:class:`downlink.security.protocol.GuardedWebSocketsProtocol`): a send waiting on
  it would otherwise wait forever, and this reader with it.
* Durability: a client may send ``{"downlink_flush": token}``; the answer
  ``{"downlink_flushed": token, "stored": n}`` is sent once every message received
  before it is committed. On close (and on a graceful shutdown) the buffer is written
  before the handler returns.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
import uuid
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from downlink.security.senders import Proof, SenderGuard, SendersUnavailable, Verdict
from downlink.settings import Settings
from downlink.sources.base import SenderRule
from downlink.sources.substrate import config
from downlink.sources.substrate.connections import mark_disconnected
from downlink.sources.substrate.metrics import WsMetrics
from downlink.sources.substrate.wire import (
    SOURCE,
    FlushRequest,
    Identity,
    MessageRejected,
    NodeMessage,
    identify,
    parse_frame,
    to_row,
)
from downlink.store.database import Store
from downlink.store.envelope import Envelope
from downlink.store.writer import QueueFull, RecordsRefused, StoreUnavailable

log = logging.getLogger(__name__)

# Message types with their own label in downlink_ws_messages; others count as "other"
# so a node cannot create unbounded metric series.
KNOWN_MESSAGES = frozenset(
    (
        "system.connected",
        "system.interval",
        "system.network_state",
        "block.import",
        "block.metrics",
        "notify.finalized",
        "txpool.import",
        "tracing.profiling",
        "tracing.event",
        "prepared_block_for_proposing",
        "sysinfo.hwbench",
        "unknown",
    )
)
_KNOWN_PREFIXES = ("afg.", "slots.", "babe.", "aura.")
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_GOING_AWAY = 1001
# How long a connection keeps retrying while the database is unavailable before it
# counts its buffered rows as rejected (store_unavailable) and gives up on them.
STORE_RETRY_SECONDS = 60.0


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Return the uvicorn websocket options (ping, pong deadline, frame size)."""
    mine = config.of(settings)
    return {
        "ws_max_size": mine["ws_max_frame_bytes"],
        "ws_ping_interval": mine["ws_ping_interval_s"] or None,
        "ws_ping_timeout": mine["ws_pong_timeout_s"] or None,
    }


def message_label(msg: str) -> str:
    """Return the metric label of a message type."""
    if msg in KNOWN_MESSAGES or (msg.startswith(_KNOWN_PREFIXES) and len(msg) <= 48):
        return msg
    return "other"


class ByteRate:
    """Token bucket: ``rate`` bytes/s on average over ``window`` seconds."""

    def __init__(self, rate: float, window: float) -> None:
        self.rate = rate
        self.capacity = rate * window
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self, size: int) -> bool:
        """Spend ``size`` bytes; return False when that exceeds the limit."""
        if self.rate <= 0:
            return True
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if size > self.tokens:
            return False
        self.tokens -= size
        return True


def allowed(settings: Settings, host: str | None) -> bool:
    """Return True when ``host`` may connect (no allow-list, or inside one of its networks)."""
    networks = config.of(settings)["ws_allow_networks"]
    if not networks:
        return True
    if host is None:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(
        address in ipaddress.ip_network(net, strict=False) for net in networks
    )


# Trust on first use of peer ids (docs/senders.md). Nodes cannot be changed to keep a
# secret, and a websocket has no answer per message: a peer id is bound to the network
# (or client certificate) of its first connection, and messages of a connection naming
# it from elsewhere are stored flagged and left out of the nodes page and the API.
SENDER_RULE = SenderRule(
    id_name="peer id",
    on_mismatch="flag",
    secret=False,
    rule="messages naming a peer id from another network (or certificate) are stored "
    "flagged and left out of the nodes page and the reputation API",
)


class _NodeState:
    """What one connection knows about one node (one V2 ``id``)."""

    __slots__ = ("peer_id", "announced")

    def __init__(self) -> None:
        self.peer_id: str | None = None
        self.announced = False


class NodeSession:
    """One node websocket connection: read, parse, buffer, write."""

    def __init__(self, websocket: WebSocket, store: Store, *, audit: bool) -> None:
        self.ws = websocket
        self.store = store
        self.settings = store.settings
        self.config = config.of(store.settings)
        self.metrics = store.metrics
        self.wsm: WsMetrics = store.metrics.by_source[SOURCE]
        self.audit = audit
        self.endpoint = "/audit" if audit else "/"
        self.connection = uuid.uuid4().hex
        client = websocket.client
        self.host = client.host if client else None
        self.ip = f"{client.host}:{client.port}" if client else ""
        self.connected_at = time.time()
        self.nodes: dict[str, _NodeState] = {}
        self.rate = ByteRate(self.config["ws_rate_limit_bytes"], self.config["ws_rate_window_s"])
        self.pending: list[Envelope] = []
        self.seq = 0
        self.done = 0  # rows stored or given up, in order
        self.stored = 0
        self.closing = False
        self.idle = False
        self.waiting_since: float | None = None  # monotonic time the reader began waiting
        self.wake = asyncio.Event()
        self.space = asyncio.Event()
        self.space.set()
        self.progress = asyncio.Condition()
        self.senders: SenderGuard = websocket.app.state.senders
        self.proof: Proof = self.senders.proof(websocket.scope["headers"], client)
        self.verdicts: dict[str, Verdict] = {}  # per peer id, for this connection

    async def run(self) -> None:
        """Serve the connection until it closes, then write what is buffered."""
        if not allowed(self.settings, self.host):
            self.wsm.refused.labels("network").inc()
            await self.ws.close(CLOSE_POLICY)
            return
        await self.ws.accept()
        self.wsm.opened.labels(self.endpoint).inc()
        self.wsm.connections.labels(self.endpoint).inc()
        flusher = asyncio.create_task(self._flush_loop())
        watchdog = asyncio.create_task(self._watchdog())
        reason = "error"
        try:
            reason = await self._read_loop()
        finally:
            watchdog.cancel()
            self.closing = True
            self.wake.set()
            await flusher
            self.wsm.connections.labels(self.endpoint).dec()
            self.wsm.closed.labels(reason).inc()
            try:
                await self.store.admin_write(
                    mark_disconnected, self.connection, self.audit, time.time()
                )
            except (SQLAlchemyError, OSError) as exc:
                log.warning("cannot record the disconnect of %s: %s", self.connection, exc)

    # -- reading -------------------------------------------------------------------

    async def _watchdog(self) -> None:
        """Close the socket when the reader has waited longer than the idle timeout.

        A timer task instead of ``wait_for`` around each receive: no task per message,
        and a message that arrives as the timeout fires is still read (it is queued
        before the disconnect) rather than lost with the cancelled receive. Time spent
        not reading (backpressure, a flush answer) does not count as idle; a flush
        answer the client never takes is cut off by the protocol's stall limit.
        """
        idle = self.config["ws_idle_timeout_s"]
        if idle <= 0:
            return
        step = min(max(idle / 4, 0.05), 5.0)
        while True:
            await asyncio.sleep(step)
            since = self.waiting_since
            if since is not None and time.monotonic() - since > idle:
                self.idle = True
                await self._close(CLOSE_GOING_AWAY, "idle timeout")
                return

    async def _close(self, code: int, reason: str) -> None:
        try:
            await self.ws.close(code, reason)
        except (RuntimeError, WebSocketDisconnect, OSError):
            pass

    async def _read_loop(self) -> str:
        max_frame = self.config["ws_max_frame_bytes"]
        while True:
            if len(self.pending) >= self.config["ws_buffer_max"]:
                self.space.clear()
                await self.space.wait()
            self.waiting_since = time.monotonic()
            message = dict(await self.ws.receive())
            self.waiting_since = None
            if message["type"] == "websocket.disconnect":
                code = message.get("code", 1005)
                if code == CLOSE_TOO_BIG:  # uvicorn refused a frame over ws_max_size
                    self._reject("too_large")
                    return "too_large"
                return "idle" if self.idle else f"client_{code}"
            data = message.get("bytes")
            if data is None:
                data = message.get("text") or ""
            size = len(data)
            self.wsm.received_bytes.inc(size)
            self.metrics.received.labels(SOURCE).inc()
            if size > max_frame:
                self._reject("too_large")
                await self._close(CLOSE_TOO_BIG, "message too big")
                return "too_large"
            if not self.rate.take(size):
                self._reject("rate_limit")
                await self._close(CLOSE_POLICY, "byte rate limit exceeded")
                return "rate_limit"
            try:
                parsed = parse_frame(data)
            except MessageRejected as exc:
                self._reject(exc.reason)
                log.debug("node %s: %s", self.ip, exc.message)
                continue
            if isinstance(parsed, FlushRequest):
                await self._flush_reply(parsed.token)
                continue
            self._accept(parsed, time.time())

    def _reject(self, reason: str) -> None:
        self.wsm.malformed.labels(reason).inc()
        self.metrics.rejected.labels(SOURCE, reason).inc()

    def _accept(self, message: NodeMessage, received_at: float) -> None:
        state = self.nodes.get(message.node)
        if state is None:
            if len(self.nodes) >= self.config["ws_max_node_ids"]:
                self._reject("too_many_node_ids")
                return
            state = self.nodes[message.node] = _NodeState()
        identity: Identity | None = None
        if state.peer_id is None or (not state.announced and message.msg == "system.connected"):
            identity = identify(message)
            if identity is not None:
                state.peer_id = state.peer_id or identity.peer_id
                state.announced = state.announced or identity.announced
        self.wsm.messages.labels(message_label(message.msg)).inc()
        self.seq += 1
        row = to_row(
            message,
            connection=self.connection,
            seq=self.seq,
            peer_id=state.peer_id,
            ip=self.ip,
            audit=self.audit,
            received_at=received_at,
            connected_at=self.connected_at,
            announced=identity is not None and identity.announced,
        )
        self.pending.append(Envelope(row))
        self.wake.set()

    async def _flush_reply(self, token: Any) -> None:
        target = self.seq
        async with self.progress:
            await self.progress.wait_for(lambda: self.done >= target)
        try:
            await self.ws.send_json({"downlink_flushed": token, "stored": self.stored})
        except (RuntimeError, WebSocketDisconnect, OSError):
            pass

    # -- writing -------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        chunk = self.settings.batch_max
        while True:
            if not self.pending:
                if self.closing:
                    return
                self.wake.clear()
                await self.wake.wait()
                continue
            batch = self.pending[:chunk]
            await self._check_senders(batch)
            stored = await self._write(batch)
            del self.pending[: len(batch)]
            if len(self.pending) < self.config["ws_buffer_max"]:
                self.space.set()
            async with self.progress:
                self.done += len(batch)
                self.stored += stored
                self.progress.notify_all()

    async def _check_senders(self, batch: list[Envelope]) -> None:
        """Flag the rows whose peer id does not match its binding (checked once per
        peer id and connection: the connection's address and certificate are fixed)."""
        if not self.senders.binds(SOURCE):
            return
        new = {e.row["machine_id"] for e in batch if e.row["machine_id"]} - self.verdicts.keys()
        if new:
            try:
                self.verdicts.update(await self.senders.check(SOURCE, new, self.proof))
            except SendersUnavailable as exc:
                # Unchecked, then: flagged until a later batch can be checked.
                log.warning("node %s: cannot check peer ids: %s", self.ip, exc)
        for item in batch:
            peer = item.row["machine_id"]
            verdict = self.verdicts.get(peer) if peer else None
            if peer and (verdict is None or not verdict.matches):
                # Kept, flagged: the connection row takes neither its peer id nor
                # what it announces (downlink.sources.substrate.connections).
                item.row["sender_flagged"] = True

    async def _write(self, batch: list[Envelope]) -> int:
        """Write ``batch``, retrying while the store is busy; return the rows stored."""
        delay = 0.005
        give_up = time.monotonic() + STORE_RETRY_SECONDS
        while True:
            try:
                stored = await self.store.write(batch)
            except RecordsRefused as exc:
                # Stored but for the rows the database refuses (counted, never retried).
                stored = [item for item in exc.results if not item.failed]
                for _ in range(len(exc.results) - len(stored)):
                    self._reject("refused")
                log.warning("node %s: %s", self.ip, exc)
                fresh = sum(1 for item in stored if not item.duplicate)
                self.metrics.accepted.labels(SOURCE).inc(fresh)
                return len(stored)
            except QueueFull:
                self.wsm.backpressure.inc()
            except StoreUnavailable as exc:
                if time.monotonic() > give_up:
                    log.error("dropping %d node messages: store unavailable: %s", len(batch), exc)
                    self.metrics.rejected.labels(SOURCE, "store_unavailable").inc(len(batch))
                    return 0
            except Exception as exc:  # noqa: BLE001 - counted, never kills the connection
                log.error("dropping %d node messages: %s", len(batch), exc)
                self.metrics.rejected.labels(SOURCE, "store_error").inc(len(batch))
                return 0
            else:
                fresh = sum(1 for item in stored if not item.duplicate)
                self.metrics.accepted.labels(SOURCE).inc(fresh)
                return len(stored)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)


async def ingest(websocket: WebSocket) -> None:
    """Websocket ``/``: records expire after the retention period."""
    await NodeSession(websocket, websocket.app.state.store, audit=False).run()


async def ingest_audit(websocket: WebSocket) -> None:
    """Websocket ``/audit``: records are kept until deleted by hand."""
    await NodeSession(websocket, websocket.app.state.store, audit=True).run()


routes = [WebSocketRoute("/", ingest), WebSocketRoute("/audit", ingest_audit)]
