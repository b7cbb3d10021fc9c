"""Per-address API quotas costed by request time, shared by every worker process.

As OONI's API does (reference "Rate limiting and quotas"): a request costs
``max(1, int(elapsed_seconds * 100))`` units (one per 10 ms of handling). Each address
has three buckets (hour, day, 7 days; production limits 4000 / 400000 / 200000 units)
refilled linearly over their period. A request is refused up front with 429
``{"error": "quota exceeded"}`` when any bucket is empty; otherwise it runs, is charged,
and ``X-RateLimit-Remaining`` carries the smallest remainder.

The buckets are rows of ``ooni_quotas`` (keyed by a keyed BLAKE2b hash of the address,
never the address itself), updated in one transaction per request, so all worker
processes (and all servers on one PostgreSQL) share them.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from downlink.sources.ooni.tables import quotas, state

PERIODS = {"hour": 3600.0, "day": 86400.0, "week": 7 * 86400.0}
_KEY_NAME = "quota_hash_key"


@dataclass(frozen=True)
class Limits:
    """Units per bucket; all zero disables quotas."""

    hour: int
    day: int
    week: int

    @property
    def enabled(self) -> bool:
        return self.hour > 0 or self.day > 0 or self.week > 0

    def of(self, bucket: str) -> float:
        limit: int = getattr(self, bucket)
        return float(limit) if limit > 0 else float("inf")


def cost(elapsed: float) -> int:
    """Units charged for a request that took ``elapsed`` seconds."""
    return max(1, int(elapsed * 100))


def refilled(
    row: dict[str, float] | None, limits: Limits, now: float
) -> dict[str, float]:
    """Each bucket's remaining units at ``now`` (full for an unknown address)."""
    if row is None:
        return {b: limits.of(b) for b in PERIODS}
    dt = max(0.0, now - row["updated_at"])
    out = {}
    for bucket, period in PERIODS.items():
        limit = limits.of(bucket)
        out[bucket] = min(limit, row[bucket] + limit * dt / period)
    return out


def hash_key(conn: Connection) -> bytes:
    """The secret that keys address hashes (made once per database)."""
    query = select(state.c.value).where(state.c.key == _KEY_NAME)
    value = conn.execute(query).scalar()
    if value is None:
        insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        fresh = insert(state).values(key=_KEY_NAME, value=secrets.token_hex(16))
        conn.execute(fresh.on_conflict_do_nothing(index_elements=[state.c.key]))
        value = conn.execute(query).scalar_one()
    return bytes.fromhex(value)


def address_key(address: str, key: bytes) -> str:
    """``blake2b(address, key)`` as 16 hex characters."""
    return hashlib.blake2b(address.encode(), key=key, digest_size=8).hexdigest()


def _row(conn: Connection, key: str, lock: bool) -> dict[str, float] | None:
    query = select(quotas).where(quotas.c.key == key)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    found = conn.execute(query).mappings().first()
    return dict(found) if found is not None else None


def remaining(conn: Connection, key: str, limits: Limits, now: float) -> float:
    """The smallest remaining bucket of ``key`` at ``now``."""
    return min(refilled(_row(conn, key, False), limits, now).values())


def charge(conn: Connection, key: str, limits: Limits, units: int, now: float) -> float:
    """Subtract ``units`` from every bucket of ``key``; returns the smallest remainder."""
    row = _row(conn, key, True)
    buckets = {b: v - units for b, v in refilled(row, limits, now).items()}
    stored = {b: min(v, 1e18) for b, v in buckets.items()}
    if row is None:
        insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        stmt = insert(quotas).values(key=key, updated_at=now, **stored)
        if conn.execute(stmt.on_conflict_do_nothing()).rowcount == 0:
            # Another process made the row first: charge it under its lock.
            return charge(conn, key, limits, units, now)
    else:
        conn.execute(quotas.update().where(quotas.c.key == key).values(updated_at=now, **stored))
    return min(buckets.values())


class Quotas:
    """The quota check and charge around a metered endpoint."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._key: bytes | None = None

    async def _hash_key(self, request: Request) -> bytes:
        if self._key is None:
            self._key = await request.app.state.store.admin_write(hash_key)
        return self._key

    async def metered(
        self, request: Request, handler: Callable[[], Awaitable[Response]]
    ) -> Response:
        """Refuse when the address is out of quota; else run ``handler`` and charge it."""
        if not self.limits.enabled:
            return await handler()
        store = request.app.state.store
        client = request.client
        key = address_key(client.host if client else "-", await self._hash_key(request))
        started = time.monotonic()
        left = await store.read_primary(remaining, key, self.limits, time.time())
        if left <= 0:
            return JSONResponse(
                {"error": "quota exceeded", "message": "quota exceeded"}, status_code=429,
                headers={"X-RateLimit-Remaining": "0"},
            )
        response = await handler()
        units = cost(time.monotonic() - started)
        left = await store.admin_write(charge, key, self.limits, units, time.time())
        response.headers["X-RateLimit-Remaining"] = str(max(0, int(left)))
        return response


def quotas_of(request: Request, limits: Limits) -> Quotas:
    """This app's shared Quotas object."""
    found: Quotas | None = getattr(request.app.state, "ooni_quotas", None)
    if found is None:
        found = Quotas(limits)
        request.app.state.ooni_quotas = found
    return found
