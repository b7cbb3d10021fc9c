"""Records: the searchable, paginated table and the record detail page."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from downlink.errors import BadRequest
from downlink.params import RecordId
from downlink.store.database import Store
from downlink.store.queries.records import RecordFilter, get_record, list_records
from downlink.web import params
from downlink.web.rendering import csv_twin, shows_errors, twin, web_of, when

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
FORM_FIELDS = (
    "classification",
    "severity",
    "machine_id",
    "build",
    "platform",
    "source",
    "since",
    "until",
    "q",
)


def record_filter(query: dict[str, str]) -> RecordFilter:
    """Build the record filter of the search form, or raise BadRequest."""
    return RecordFilter(
        classification=params.text(query, "classification", 140),
        severity=params.integer(query, "severity", 1, 4),
        machine_id=params.text(query, "machine_id", 64),
        build=params.text(query, "build"),
        source=params.text(query, "source", 32),
        host_type=params.text(query, "platform"),
        payload_contains=params.text(query, "q", 1000),
        received_after=params.moment(query, "since"),
        received_before=params.moment(query, "until"),
        before_id=params.integer(query, "before", 1, 2**62),
    )


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "dedup_key"}


async def _records(request: Request) -> tuple[dict[str, Any], dict[str, str]]:
    query = dict(request.query_params)
    f = record_filter(query)
    store: Store = request.app.state.store
    rows = await store.read(list_records, f, PAGE_SIZE + 1)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    data = {
        "records": [_json_row(r) for r in rows],
        "next_cursor": rows[-1]["id"] if more and rows else None,
        "page_size": PAGE_SIZE,
    }
    return data, query


@router.get("/records")
@shows_errors("records.html", "Records", "records")
async def records_page(request: Request) -> Response:
    """Render the record search page."""
    data, query = await _records(request)
    form = {k: query.get(k, "") for k in FORM_FIELDS}
    kept = {k: v for k, v in form.items() if v}
    older = urlencode({**kept, "before": data["next_cursor"]}) if data["next_cursor"] else ""
    return web_of(request).page(
        "records.html",
        title="Records",
        active="records",
        data=data,
        form=form,
        json_href="/records.json?"
        + urlencode({**kept, **({"before": query["before"]} if query.get("before") else {})}),
        older_href=f"/records?{older}",
        newer_href=("/records?" + urlencode(kept)) if query.get("before") else "",
    )


@router.get("/records.json")
async def records_json(request: Request) -> Response:
    """JSON twin of /records: the same page of records and its cursor."""
    data, _ = await _records(request)
    return twin(data)


async def _record(request: Request, record_id: int) -> dict[str, Any]:
    store: Store = request.app.state.store
    row = await store.read(get_record, record_id)
    if row is None:
        raise BadRequest(f"no record with id {record_id}", status=404)
    return _json_row(row)


# Before /records/{record_id}, which would read "5.json" as an id (and answer 400).
@router.get("/records/{record_id}.json")
async def record_json(request: Request, record_id: RecordId) -> Response:
    """JSON twin of one record."""
    return twin(await _record(request, record_id))


@router.get("/records/{record_id}")
@shows_errors("record.html", "Record {record_id}", "records")
async def record_page(request: Request, record_id: RecordId) -> Response:
    """Render one record, payload escaped."""
    row = await _record(request, record_id)
    return web_of(request).page("record.html", title=f"Record {record_id}", active="records", r=row)


CSV_COLUMNS = (
    "id", "ts_reception", "source", "machine_id", "severity", "classification", "build",
    "host_type", "payload",
)


@router.get("/records.csv")
async def records_csv(request: Request) -> Response:
    """CSV of /records: the same page of records (``before`` pages on)."""
    data, _ = await _records(request)
    rows = (
        [when(r["ts_reception"]) if c == "ts_reception" else r[c] for c in CSV_COLUMNS]
        for r in data["records"]
    )
    return csv_twin("records", CSV_COLUMNS, rows)
