"""Sender authenticity: trust on first use of a sender id, and per-sender rate limits.

A source that names its senders (``Source.senders``, a :class:`SenderRule`: fuel-stats'
``master_node_uid``, Clear Linux's ``machine_id``, a substrate node's peer id) asks
:class:`SenderGuard` about every post. When ``DOWNLINK_SENDER_BINDING`` names the
source, the first accepted post of an id binds it (a ``senders`` row) to

* a **secret**, returned once in the ``X-Downlink-Sender-Secret`` response header (a
  sender that keeps it and sends it back with every post is bound to it: once it has
  presented it, a post without it or with another one does not match);
* the **client certificate** fingerprint, when the TLS-terminating proxy passes one in
  the ``DOWNLINK_SENDER_CERT_HEADER`` header (then a post must carry the same one);
* otherwise the **network** it came from: its address masked to
  ``DOWNLINK_SENDER_IPV4_PREFIX`` / ``DOWNLINK_SENDER_IPV6_PREFIX`` bits.

A post that does not match is refused or stored flagged, as the source's rule says
(``on_mismatch``); the source answers it in its own protocol. Every mismatch is counted
on the sender's row with its time, origin and reason (the ``/senders`` page, ``downlink
senders list``); an operator re-binds or forgets an id from the CLI.

Bindings that matched are cached per process, so the hot path costs no query for a
known sender; a post that does not match the cached binding is checked again against
the database first. What changes a binding once made (a re-bind or forget from the
CLI, a sender presenting its secret for the first time) is logged in
``sender_changes``: each process reads the log's new entries every
:data:`CHANGES_POLL_SECONDS` while posts arrive (in the background) and drops those ids;
a post finding the last read started over two intervals ago waits for a new one. So a
change reaches every process within two seconds. The look-ups of uncached ids (first
uses among them) of the posts arriving together share one transaction (group commit,
like the records).

``DOWNLINK_SENDER_RATE_LIMIT`` adds a token bucket per (source, sender id), beside the
per-address one, whether or not the source binds its senders.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, delete, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from downlink.security.ratelimit import TokenBuckets
from downlink.settings import Settings, SettingsError
from downlink.sources.base import SenderRule
from downlink.store.database import Store
from downlink.store.tables import sender_changes, senders

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Downlink-Sender-Secret"
_SECRET_KEY = SECRET_HEADER.lower().encode("latin-1")
# A process reads the log of changed bindings before trusting its cache when its last
# read is older than this: how long a re-bind or forget may take to reach it.
CHANGES_POLL_SECONDS = 1.0
CACHE_MAX = 65536
# Longest sender id stored (a longer one is bound by its first 512 characters' hash).
ID_MAX = 512


class SendersUnavailable(Exception):
    """The bindings could not be read or written (the database is down): answer 503."""


@dataclass(frozen=True)
class Proof:
    """What a post brings to prove who sent it: address, secret, certificate."""

    address: str | None = None
    secret: str | None = None
    cert: str | None = None

    @property
    def origin(self) -> str:
        """The address (and certificate) for the senders page."""
        text = self.address or "unknown address"
        return f"{text} (certificate {self.cert})" if self.cert else text


@dataclass(frozen=True)
class Binding:
    """A sender id's binding as stored."""

    secret_hash: str
    secret_seen: bool
    network: str
    cert: str | None


@dataclass(frozen=True)
class Verdict:
    """The answer for one sender id of a post.

    ``matches`` is false when the post does not match the id's binding (``reason``
    says why). ``secret`` is set on the post that bound the id: the source returns it
    in the :data:`SECRET_HEADER` response header.
    """

    matches: bool
    reason: str = ""
    secret: str | None = None


MATCH = Verdict(True)


def secret_hash(secret: str) -> str:
    """What is stored of a secret: its SHA-256, hexadecimal."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    """A new sender secret (32 URL-safe characters)."""
    return secrets.token_urlsafe(24)


def normalise_id(sender_id: str) -> str:
    """The id as stored: ids over :data:`ID_MAX` characters are replaced by a hash."""
    if len(sender_id) <= ID_MAX:
        return sender_id
    return "sha256:" + hashlib.sha256(sender_id.encode("utf-8", "replace")).hexdigest()


@lru_cache(maxsize=CACHE_MAX)
def network_of(address: str | None, v4_prefix: int, v6_prefix: int) -> str:
    """``address`` masked to its prefix, as ``a.b.c.0/24``; "" when it is not an address.

    Cached: parsing and masking take tens of microseconds, and a server sees the same
    addresses again and again (most senders post from one address).
    """
    if not address:
        return ""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return ""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = v4_prefix if ip.version == 4 else v6_prefix
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def proof_of(
    headers: Iterable[tuple[bytes, bytes]], client: Sequence[Any] | None, cert_header: str
) -> Proof:
    """Read a request's proof from its raw ASGI headers and client address."""
    wanted = cert_header.lower().encode("latin-1") if cert_header else None
    secret = cert = None
    for name, value in headers:
        if name == _SECRET_KEY:
            secret = value.decode("latin-1").strip() or None
        elif wanted is not None and name == wanted:
            cert = value.decode("latin-1").strip().lower().replace(":", "") or None
    address = str(client[0]) if client else None
    return Proof(address, secret, cert)


def compare(binding: Binding, proof: Proof, network: str) -> Verdict:
    """Does a post with ``proof`` (from ``network``) match ``binding``?"""
    if proof.secret is not None:
        if hmac.compare_digest(secret_hash(proof.secret), binding.secret_hash):
            return MATCH
        return Verdict(False, "wrong secret")
    if binding.secret_seen:
        return Verdict(False, "no secret, and this sender has presented its secret before")
    if binding.cert is not None:
        if proof.cert is not None and hmac.compare_digest(proof.cert, binding.cert):
            return MATCH
        given = proof.cert or "none"
        return Verdict(False, f"client certificate {given} is not the bound one")
    if network == binding.network:
        return MATCH
    return Verdict(
        False, f"network {network or 'unknown'} is not the bound network {binding.network}"
    )


# -- database ---------------------------------------------------------------------


_IN_CHUNK = 500  # ids per IN (...) list
_BIND_CHUNK = 200  # rows per INSERT (7 parameters each)


def read_bindings(conn: Connection, source: str, ids: Sequence[str]) -> dict[str, Binding]:
    """The stored bindings of ``ids`` of ``source``."""
    c = senders.c
    found: dict[str, Binding] = {}
    for start in range(0, len(ids), _IN_CHUNK):
        stmt = select(c.sender_id, c.secret_hash, c.secret_seen, c.network, c.cert).where(
            c.source == source, c.sender_id.in_(list(ids[start : start + _IN_CHUNK]))
        )
        for row in conn.execute(stmt):
            found[row.sender_id] = Binding(
                row.secret_hash, bool(row.secret_seen), row.network, row.cert
            )
    return found


def bind(conn: Connection, source: str, sender_id: str, binding: Binding, now: float) -> bool:
    """Store ``binding`` unless the id is bound already; True when this call bound it."""
    return sender_id in bind_many(conn, source, {sender_id: binding}, now)


def bind_many(
    conn: Connection, source: str, bindings: Mapping[str, Binding], now: float
) -> set[str]:
    """Store the bindings of ids not bound yet; return the ids this call bound."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    rows = [
        {"source": source, "sender_id": sender_id, "secret_hash": binding.secret_hash,
         "secret_seen": binding.secret_seen, "network": binding.network,
         "cert": binding.cert, "bound_at": now}
        for sender_id, binding in bindings.items()
    ]
    bound: set[str] = set()
    for start in range(0, len(rows), _BIND_CHUNK):
        stmt = dialect.insert(senders).values(rows[start : start + _BIND_CHUNK])
        # RETURNING, not rowcount: psycopg reports no row count for this statement.
        done = conn.execute(stmt.on_conflict_do_nothing().returning(senders.c.sender_id))
        bound.update(done.scalars())
    return bound


def resolve(
    conn: Connection, source: str, wanted: Mapping[str, Binding], now: float
) -> tuple[dict[str, Binding], set[str]]:
    """The stored bindings of ``wanted``'s ids, binding those not bound yet to the
    binding given for them; and the ids this call bound. One read, one insert of the
    new ones, and a read of those another process bound in between."""
    keys = sorted(wanted)
    stored = read_bindings(conn, source, keys)
    missing = {key: wanted[key] for key in keys if key not in stored}
    bound = bind_many(conn, source, missing, now) if missing else set()
    for key in bound:
        stored[key] = missing[key]
    lost = [key for key in missing if key not in bound]
    if lost:
        stored.update(read_bindings(conn, source, lost))
    return stored, bound


def log_changes(conn: Connection, source: str, ids: Sequence[str], now: float) -> None:
    """Append ``ids`` to the log of changed bindings (in ``conn``'s transaction).

    The entries of one change share its number, the next after the highest in the log;
    on PostgreSQL the table is locked against other writers until the commit (readers
    go on), so that numbers are committed in order and a reader that saw number *n*
    has seen every change before it (SQLite has one writer anyway).
    """
    if not ids:
        return
    if conn.dialect.name == "postgresql":
        conn.execute(text("LOCK TABLE sender_changes IN SHARE ROW EXCLUSIVE MODE"))
    seq = conn.execute(select(func.coalesce(func.max(sender_changes.c.seq), 0))).scalar_one()
    conn.execute(sender_changes.insert(), [
        {"seq": seq + 1, "source": source, "sender_id": sender_id, "changed_at": now}
        for sender_id in sorted(set(ids))
    ])


def changes_since(
    conn: Connection, seq: int | None
) -> tuple[int, list[tuple[str, str]]]:
    """The log's last number and the (source, sender id) changed after ``seq``
    (None: only the last number)."""
    c = sender_changes.c
    if seq is None:
        return int(conn.execute(select(func.coalesce(func.max(c.seq), 0))).scalar_one()), []
    last = seq
    changed: list[tuple[str, str]] = []
    for row in conn.execute(select(c.seq, c.source, c.sender_id).where(c.seq > seq)):
        last = max(last, int(row.seq))
        changed.append((row.source, row.sender_id))
    return last, changed


@dataclass(frozen=True)
class Mismatch:
    """One post of a sender id that did not match its binding."""

    sender_id: str
    column: str  # "refused" or "flagged"
    origin: str
    reason: str


def record_outcomes(
    conn: Connection, source: str, seen: Sequence[str], mismatches: Sequence[Mismatch],
    now: float,
) -> None:
    """Mark the ids that presented their secret; count each mismatch on its row."""
    c = senders.c
    for start in range(0, len(seen), _IN_CHUNK):
        conn.execute(
            update(senders)
            .where(c.source == source, c.sender_id.in_(list(seen[start : start + _IN_CHUNK])))
            .values(secret_seen=True)
        )
    log_changes(conn, source, seen, now)  # other processes' cached copies are stale now
    for m in mismatches:
        conn.execute(
            update(senders)
            .where(c.source == source, c.sender_id == m.sender_id)
            .values(
                {
                    m.column: c[m.column] + 1,
                    "last_mismatch_at": now,
                    "last_mismatch_from": m.origin[:200],
                    "last_mismatch_reason": m.reason[:500],
                }
            )
        )


def rebind(conn: Connection, source: str, sender_id: str, network: str | None,
           cert: str | None, now: float) -> str | None:
    """Bind ``sender_id`` anew: a new secret (returned), the given network and
    certificate; counters and the last mismatch are cleared. None if it is not bound."""
    secret = new_secret()
    c = senders.c
    values: dict[str, Any] = {
        "secret_hash": secret_hash(secret),
        "secret_seen": False,
        "cert": cert,
        "bound_at": now,
        "refused": 0,
        "flagged": 0,
        "last_mismatch_at": None,
        "last_mismatch_from": None,
        "last_mismatch_reason": None,
    }
    if network is not None:
        values["network"] = network
    done = conn.execute(
        update(senders).where(c.source == source, c.sender_id == sender_id).values(values)
    )
    if done.rowcount != 1:
        return None
    log_changes(conn, source, [sender_id], now)
    return secret


def forget(conn: Connection, source: str, sender_id: str) -> bool:
    """Delete the binding: the id's next accepted post binds it again."""
    c = senders.c
    done = conn.execute(delete(senders).where(c.source == source, c.sender_id == sender_id))
    if done.rowcount != 1:
        return False
    log_changes(conn, source, [sender_id], time.time())
    return True


def listing(conn: Connection, *, source: str | None = None, only_mismatched: bool = False,
            limit: int = 1000) -> list[dict[str, Any]]:
    """Bound senders, those with the most recent mismatches first (no secrets)."""
    c = senders.c
    stmt = select(
        c.source, c.sender_id, c.network, c.cert, c.secret_seen, c.bound_at, c.refused,
        c.flagged, c.last_mismatch_at, c.last_mismatch_from, c.last_mismatch_reason,
    )
    if source is not None:
        stmt = stmt.where(c.source == source)
    if only_mismatched:
        stmt = stmt.where(c.last_mismatch_at.is_not(None))
    stmt = stmt.order_by(
        c.last_mismatch_at.is_(None), c.last_mismatch_at.desc(), c.source, c.sender_id
    ).limit(limit)
    out = []
    for row in conn.execute(stmt).mappings():
        item = {str(key): value for key, value in row.items()}
        item["secret_seen"] = bool(item["secret_seen"])
        out.append(item)
    return out


# -- the guard --------------------------------------------------------------------


class _Batch:
    """Ids of one source waiting for the next look-up transaction, each with the
    binding it gets if it is not bound yet (its first use)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.bindings: dict[str, Binding] = {}
        self.done: asyncio.Future[tuple[dict[str, Binding], set[str]]] = loop.create_future()


class SenderGuard:
    """Checks posts against their sender ids' bindings and rate limits (one per app)."""

    def __init__(self, store: Store, settings: Settings, rules: Mapping[str, SenderRule]) -> None:
        unknown = sorted(set(settings.sender_binding) - set(rules))
        if unknown:
            named = ", ".join(sorted(rules)) or "none"
            raise SettingsError(
                f"DOWNLINK_SENDER_BINDING: {', '.join(unknown)} names no source with "
                f"sender ids (these have: {named})"
            )
        self.store = store
        self.rules = dict(rules)
        self.binding = frozenset(settings.sender_binding)
        self.v4 = settings.sender_ipv4_prefix
        self.v6 = settings.sender_ipv6_prefix
        self.cert_header = settings.sender_cert_header
        self.buckets = (
            TokenBuckets(settings.sender_rate_limit, settings.sender_rate_burst)
            if settings.sender_rate_limit > 0 else None
        )
        # (source, stored id) -> its binding, as it matched; the oldest dropped first.
        self._cache: OrderedDict[tuple[str, str], Binding] = OrderedDict()
        # The log of changed bindings: the last number read, when to read it again (in
        # the background: posts go on meanwhile), until when the cache is trusted
        # without waiting for a read (two intervals after the start of the last read:
        # after a quiet spell, the first post waits for one), the read under way, and
        # how many times a read dropped cached bindings (a binding read from the
        # database before a drop is not cached after it).
        self._seq: int | None = None
        self._poll_due = 0.0
        self._trusted_until = 0.0
        self._polling: asyncio.Future[None] | None = None
        self._drops = 0
        # Per source: ids waiting for the look-up transaction, and whether one runs.
        self._open: dict[str, _Batch] = {}
        self._resolving: set[str] = set()

    def binds(self, source: str) -> bool:
        """True when ``source``'s sender ids are bound (``DOWNLINK_SENDER_BINDING``)."""
        return source in self.binding

    def proof(self, headers: Iterable[tuple[bytes, bytes]], client: Sequence[Any] | None) -> Proof:
        """The proof a request carries (see :func:`proof_of`)."""
        return proof_of(headers, client, self.cert_header)

    def rate_wait(self, source: str, sender_ids: Iterable[str]) -> float:
        """Take a token for each distinct id; 0 if all had one, else seconds to wait."""
        buckets = self.buckets
        if buckets is None:
            return 0.0
        wait = 0.0
        for sender_id in sender_ids if isinstance(sender_ids, tuple) and len(sender_ids) == 1 \
                else set(sender_ids):
            if sender_id:
                key = sender_id if len(sender_id) <= ID_MAX else normalise_id(sender_id)
                wait = max(wait, buckets.take((source, key)))
        return wait

    def known(self, source: str, sender_id: str, secret_sent: bool,
              client: Sequence[Any] | None) -> bool:
        """True when a post of ``sender_id`` from ``client`` (its ASGI client address)
        without a secret matches the binding cached for it by its network: the hot
        path of a known sender, deciding without a coroutine, a :class:`Proof` or a
        scan of the headers (the caller says whether the :data:`SECRET_HEADER` came,
        from its own pass over them): a dict look-up and a compare of two strings.
        False means "ask :meth:`check`" (not cached, the log of changes due for a read,
        a secret sent, a binding to a secret or a certificate), never "does not match".
        A certificate header does not count: a binding without a certificate is
        decided by the network whatever the post carries (:func:`compare`)."""
        now = time.monotonic()
        if now >= self._poll_due:
            self._read_changes()
        if secret_sent or now >= self._trusted_until:
            return False
        cached = self._cache.get((source, sender_id))
        if cached is None or cached.secret_seen or cached.cert is not None:
            return False
        address = str(client[0]) if client else None
        return network_of(address, self.v4, self.v6) == cached.network

    async def check(
        self, source: str, sender_ids: Iterable[str], proof: Proof
    ) -> dict[str, Verdict]:
        """The verdict for each distinct non-empty id of a post (all match when the
        source does not bind). Binds ids seen for the first time and counts mismatches.

        Raises :class:`SendersUnavailable` when the database is needed (an id not in
        the cache, or not matching it) and cannot be reached.
        """
        ids = {i for i in sender_ids if i}
        if not ids or source not in self.binding:
            return dict.fromkeys(ids, MATCH)
        now = time.monotonic()
        if now >= self._poll_due or now >= self._trusted_until:
            reading = self._read_changes()
            if now >= self._trusted_until:
                await asyncio.shield(reading)
        network = network_of(proof.address, self.v4, self.v6)
        verdicts: dict[str, Verdict] = {}
        unsure: dict[str, str] = {}  # original id -> stored id
        cache = self._cache
        for sender_id in ids:
            key = sender_id if len(sender_id) <= ID_MAX else normalise_id(sender_id)
            cached = cache.get((source, key))
            if cached is not None:
                verdict = compare(cached, proof, network)
                if verdict.matches and not (proof.secret and not cached.secret_seen):
                    verdicts[sender_id] = verdict
                    continue
            unsure[sender_id] = key
        if unsure:
            try:
                verdicts.update(await self._check_stored(source, unsure, proof, network))
            except (SQLAlchemyError, OSError) as exc:
                raise SendersUnavailable(str(exc).splitlines()[0]) from exc
        return verdicts

    def _read_changes(self) -> asyncio.Future[None]:
        """The read of the log of changed bindings under way, started if none is (it
        drops the changed ids from the cache)."""
        if self._polling is None:
            self._polling = asyncio.ensure_future(self._poll())
        return self._polling

    async def _poll(self) -> None:
        started = time.monotonic()
        try:
            last, changed = await self.store.read_primary(changes_since, self._seq)
        except (SQLAlchemyError, OSError) as exc:
            # The database is out of reach: nobody can change a binding meanwhile, and
            # the entries written before are read once it answers (after ``_seq``).
            log.warning("cannot read the log of changed sender bindings: %s",
                        str(exc).splitlines()[0])
        else:
            if self._seq is None:
                if self._cache:  # filled while the first read failed: start afresh
                    self._cache.clear()
                    self._drops += 1
            elif changed:
                for key in changed:
                    self._cache.pop(key, None)
                self._drops += 1
            self._seq = last
            self._trusted_until = started + 2 * CHANGES_POLL_SECONDS
        finally:
            self._poll_due = time.monotonic() + CHANGES_POLL_SECONDS
            self._polling = None

    async def _check_stored(
        self, source: str, ids: Mapping[str, str], proof: Proof, network: str
    ) -> dict[str, Verdict]:
        """Check ``ids`` (original -> stored id) against the database, in the source's
        next look-up transaction (shared with the other posts' ids waiting for it: it
        reads them and binds those not bound yet), then one write recording secrets
        seen and mismatches, if any."""
        rule = self.rules[source]
        drops = self._drops
        keys = sorted(set(ids.values()))
        fresh: dict[str, Binding] = {}
        secrets_out: dict[str, str | None] = {}
        for key in keys:
            if proof.secret is not None:
                # A sender that kept a secret (bound here before it was forgotten,
                # say) is bound to that one; nothing new to return.
                fresh[key] = Binding(secret_hash(proof.secret), True, network, proof.cert)
                secrets_out[key] = None
            else:
                secret = new_secret()
                fresh[key] = Binding(secret_hash(secret), False, network, proof.cert)
                secrets_out[key] = secret if rule.secret else None
        stored, bound = await self._resolve(source, fresh)
        seen: list[str] = []
        mismatches: list[Mismatch] = []
        by_key: dict[str, Verdict] = {}
        column = "refused" if rule.on_mismatch == "refuse" else "flagged"
        for key in keys:
            binding = stored[key]
            if key in bound:  # this post's first use bound it
                by_key[key] = Verdict(True, secret=secrets_out[key])
                self._remember(source, key, binding, drops)
                continue
            verdict = compare(binding, proof, network)
            if verdict.matches:
                if proof.secret is not None and not binding.secret_seen:
                    seen.append(key)
                    binding = Binding(binding.secret_hash, True, binding.network, binding.cert)
                self._remember(source, key, binding, drops)
            else:
                mismatches.append(Mismatch(key, column, proof.origin, verdict.reason))
            by_key[key] = verdict
        if seen or mismatches:
            await self.store.admin_write(record_outcomes, source, seen, mismatches, time.time())
        return {sender_id: by_key[key] for sender_id, key in ids.items()}

    async def _resolve(
        self, source: str, fresh: Mapping[str, Binding]
    ) -> tuple[dict[str, Binding], set[str]]:
        """The stored bindings of ``fresh``'s ids, binding those not bound yet to
        ``fresh``'s binding, in the source's next look-up transaction; and the ids
        bound to ``fresh``'s bindings (not another post's or process's)."""
        loop = asyncio.get_running_loop()
        batch = self._open.get(source)
        if batch is None:
            batch = self._open[source] = _Batch(loop)
        mine = {key for key in fresh if key not in batch.bindings}
        for key in mine:
            batch.bindings[key] = fresh[key]
        if source not in self._resolving:
            self._resolving.add(source)
            loop.create_task(self._resolve_batches(source))
        stored, bound = await asyncio.shield(batch.done)
        return stored, mine & bound

    async def _resolve_batches(self, source: str) -> None:
        """Look up (and bind) the source's waiting ids, one transaction per batch,
        until none wait (those arriving during one go in the next)."""
        try:
            while (batch := self._open.pop(source, None)) is not None:
                try:
                    found = await self.store.admin_write(
                        resolve, source, batch.bindings, time.time())
                except Exception as exc:  # every waiting post gets it (SendersUnavailable)
                    batch.done.set_exception(exc)
                    batch.done.exception()  # retrieved: no warning if no post waits any more
                else:
                    batch.done.set_result(found)
        finally:
            self._resolving.discard(source)

    def _remember(self, source: str, key: str, binding: Binding, drops: int) -> None:
        """Cache ``binding`` of ``key`` read or written after ``drops`` drops (not if
        the log of changes dropped cached bindings since: it may be stale)."""
        if drops != self._drops:
            return
        self._cache.pop((source, key), None)
        self._cache[(source, key)] = binding
        while len(self._cache) > CACHE_MAX:
            self._cache.popitem(last=False)


def retry_after(wait: float) -> str:
    """A Retry-After value (whole seconds, at least 1) for a rate-limit wait."""
    return str(max(1, int(wait + 0.999)))
