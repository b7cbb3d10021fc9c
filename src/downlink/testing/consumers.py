"""Wait until a server's consumers have handled everything committed (tests, benches).

:func:`wait_caught_up` asks a running server; :func:`catch_up` runs the consumers
itself, in this process, on a :class:`~downlink.store.database.Store` (tests that
write with ``insert_records`` and read derived data without a server).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import httpx

from downlink.pipeline.consumers import bind, ensure_all, step
from downlink.sources.registry import Sources
from downlink.store.database import Store


class NotCaughtUp(AssertionError):
    """The consumers were still behind (or failing) when the wait ran out."""


def wait_caught_up(
    server: str | httpx.Client,
    *,
    timeout: float = 30.0,
    headers: Mapping[str, str] | None = None,
    interval: float = 0.05,
) -> list[dict[str, Any]]:
    """Poll ``/consumers.json`` until no consumer is behind; return their states.

    ``server`` is a base URL, or a client of the app (an in-process ``TestClient``).
    Raises :class:`NotCaughtUp` naming the consumers still behind, with their last
    error, when ``timeout`` passes first.
    """
    if isinstance(server, httpx.Client):
        return _wait(server, timeout, dict(headers or {}), interval)
    with httpx.Client(base_url=server, headers=dict(headers or {}), timeout=10) as http:
        return _wait(http, timeout, {}, interval)


def _wait(
    http: httpx.Client, timeout: float, headers: dict[str, str], interval: float
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    last: list[dict[str, Any]] = []
    while True:
        answer = http.get("/consumers.json", headers=headers)
        answer.raise_for_status()
        last = answer.json()["consumers"]
        if all(c["lag_records"] == 0 for c in last):
            return last
        if time.monotonic() > deadline:
            behind = [
                f"{c['name']} ({c['lag_records']} behind, error: {c['error']})"
                for c in last
                if c["lag_records"]
            ]
            raise NotCaughtUp("consumers still behind: " + "; ".join(behind))
        time.sleep(interval)


def catch_up(store: Store, sources: Sources | None = None) -> int:
    """Run every consumer of ``sources`` (default: the store's settings' sources) until
    none has a row left, one batch per transaction; return the rows handled."""
    bounds = bind(sources if sources is not None else store.settings.registry)
    store.run_write(ensure_all, bounds)
    handled = 0
    while True:
        n = sum(store.run_write(step, b) for b in bounds)
        if not n:
            return handled
        handled += n
