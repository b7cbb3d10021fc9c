"""Senders: sender ids whose posts did not match their binding (refused or flagged).

Trust on first use (``downlink.security.senders``, docs/senders.md): each source that
names its senders, whether binding is on for it and its rule; then the bound sender ids
with a mismatch, most recent first, with how many posts were refused or flagged, from
where and why. ``?source=`` shows one source; ``?all=1`` every bound id.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select
from starlette.requests import Request

from downlink.errors import BadRequest
from downlink.security import senders
from downlink.security.senders import SenderGuard
from downlink.store.database import Store
from downlink.store.tables import senders as senders_table
from downlink.web.rendering import when
from downlink.web.views import Csv, View, router_of

LIMIT = 1000


def _bound(conn: Connection) -> dict[str, int]:
    c = senders_table.c
    stmt = select(c.source, func.count()).group_by(c.source)
    return {str(source): int(n) for source, n in conn.execute(stmt)}


def _read(conn: Connection, source: str | None, everyone: bool) -> dict[str, Any]:
    return {
        "bound": _bound(conn),
        "senders": senders.listing(
            conn, source=source, only_mismatched=not everyone, limit=LIMIT
        ),
    }


async def _data(request: Request) -> dict[str, Any]:
    guard: SenderGuard = request.app.state.senders
    store: Store = request.app.state.store
    source = request.query_params.get("source") or None
    if source is not None and source not in guard.rules:
        named = ", ".join(sorted(guard.rules))
        raise BadRequest(f"source must be one of {named}")
    everyone = request.query_params.get("all", "") not in ("", "0", "false")
    found = await store.read(_read, source, everyone)
    rules = [
        {
            "source": name,
            "id_name": rule.id_name,
            "binding": guard.binds(name),
            "on_mismatch": rule.on_mismatch,
            "secret": rule.secret,
            "rule": rule.rule,
            "bound": found["bound"].get(name, 0),
        }
        for name, rule in sorted(guard.rules.items())
    ]
    return {"sources": rules, "senders": found["senders"], "source": source, "all": everyone}


CSV_COLUMNS = (
    "source", "sender_id", "network", "cert", "secret_seen", "bound_at", "refused", "flagged",
    "last_mismatch_at", "last_mismatch_from", "last_mismatch_reason",
)
_TIMES = ("bound_at", "last_mismatch_at")


def _csv_rows(data: dict[str, Any]) -> list[list[Any]]:
    return [[when(s[c]) if c in _TIMES else s[c] for c in CSV_COLUMNS] for s in data["senders"]]


# Each source's rule, then the senders listed (times in UTC as CSV; never a secret).
VIEW = View(
    "/senders",
    "Senders",
    "senders.html",
    _data,
    active="senders",
    csv=Csv("senders", CSV_COLUMNS, _csv_rows),
)
router = router_of([VIEW])
