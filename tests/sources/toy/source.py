"""A toy source that lives only in the test suite: the proof that sources plug in.

It brings an ingest endpoint (``POST /toy/items``, open like every ingest path),
tables with their own Alembic branch, a consumer deriving per-day counts after the
ack, a page with its JSON twin and a navigation tab, a template and a static file, two
settings, a metric and a purge. Nothing in
``src/downlink`` names it: ``DOWNLINK_SOURCES=tests.sources.toy.source`` plugs it in.
"""

from __future__ import annotations

import time
from collections import Counter as Counter_
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from downlink.sources.base import (
    Archive,
    Consumer,
    LogRecord,
    NavEntry,
    Source,
    SourceSetting,
)
from downlink.sources.runtime import metrics_of, settings_of, store_of
from downlink.web.rendering import twin, web_of
from tests.sources.toy.tables import metadata, toy_daily, toy_items

NAME = "toy"
HERE = Path(__file__).parent
router = APIRouter()


def _add(conn: Connection, name: str, at: float) -> int:
    pk = conn.execute(insert(toy_items).values(name=name, ts_reception=at)).inserted_primary_key
    assert pk is not None
    return int(pk[0])


def _items(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(select(toy_items).order_by(toy_items.c.id)).mappings()
    return [dict(r) for r in rows]


def daily(conn: Connection) -> list[dict[str, Any]]:
    """The consumer's derived rows, in key order."""
    rows = conn.execute(select(toy_daily).order_by(toy_daily.c.day, toy_daily.c.name))
    return [dict(r) for r in rows.mappings()]


def count_daily(conn: Connection, batch: Sequence[LogRecord]) -> None:
    """The toy consumer: add the batch's items to the per-day, per-name counts."""
    counts: Counter_[tuple[int, str]] = Counter_()
    for item in batch:
        counts[(int(item.ts // 86400), str(item.row["name"]))] += 1
    if not counts:
        return
    insert_ = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = insert_(toy_daily).values(
        [{"day": d, "name": n, "count": c} for (d, n), c in sorted(counts.items())]
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["day", "name"], set_={"count": toy_daily.c.count + stmt.excluded.count}
    )
    conn.execute(stmt)


def reset_daily(conn: Connection, since: float, until: float) -> None:
    """Forget the counts of the days in ``[since, until)`` (whole UTC days)."""
    first, end = int(since // 86400), int(until // 86400)
    conn.execute(delete(toy_daily).where(toy_daily.c.day >= first, toy_daily.c.day < end))


@router.post("/toy/items")
async def add_item(request: Request) -> Response:
    """Store one item: ``{"name": "...", "ts": <optional reception time>}``."""
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        return JSONResponse({"message": "body must be an object with a string `name`"}, 400)
    at = body.get("ts", time.time())
    if not isinstance(at, int | float):
        return JSONResponse({"message": "`ts` must be a number"}, 400)
    item_id = await store_of(request).admin_write(_add, body["name"], float(at))
    metrics_of(request, NAME).inc()
    return JSONResponse({"id": item_id}, status_code=201)


async def _data(request: Request) -> dict[str, Any]:
    items = await store_of(request).read(_items)
    counts = await store_of(request).read(daily)
    return {"greeting": settings_of(request, NAME)["greeting"], "items": items, "daily": counts}


@router.get("/toy.json")
async def items_json(request: Request) -> Response:
    """JSON twin of the toy page."""
    return twin(await _data(request))


@router.get("/toy")
async def items_page(request: Request) -> Response:
    """The toy page."""
    data = await _data(request)
    return web_of(request).page("toy/items.html", title="Toy items", active="toy", data=data)


def _metrics(registry: CollectorRegistry) -> Counter:
    return Counter("downlink_toy_items", "Toy items stored.", registry=registry)


def purge(conn: Connection, before_ts: float) -> int:
    """Delete up to 100 items received before ``before_ts``."""
    ids = select(toy_items.c.id).where(toy_items.c.ts_reception < before_ts).limit(100)
    done = conn.execute(delete(toy_items).where(toy_items.c.id.in_(ids.scalar_subquery())))
    return int(done.rowcount or 0)


def _positive(value: Any) -> None:
    if value < 0:
        raise ValueError("must not be negative")


def source() -> Source:
    """The toy source."""
    return Source(
        name=NAME,
        title="Toy",
        routers=(router,),
        ingest_paths=frozenset({"/toy/items"}),
        metadata=metadata,
        migrations=HERE / "migrations",
        consumers=(Consumer("toy_daily", "toy_items", count_daily, reset=reset_daily),),
        nav=(NavEntry("toy", "Toy", "/toy"),),
        templates=HERE / "templates",
        static=HERE / "static",
        settings=(
            SourceSetting("greeting", "DOWNLINK_TOY_GREETING", "hello", "Shown on /toy."),
            SourceSetting(
                "retention_hours",
                "DOWNLINK_TOY_RETENTION_HOURS",
                0.0,
                "Hours toy items are kept; 0 keeps them.",
                check=_positive,
            ),
        ),
        metrics=_metrics,
        purge=purge,
        retention="retention_hours",
        archives=(Archive("items", "toy_items"),),
    )
