"""Records: the searchable, paginated table and the record detail page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request

from downlink.errors import BadRequest
from downlink.params import RecordId
from downlink.store.database import Store
from downlink.store.queries.records import RecordFilter, get_record, list_records
from downlink.web import params
from downlink.web.rendering import when
from downlink.web.views import Csv, View, router_of

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


async def _records(request: Request) -> dict[str, Any]:
    f = record_filter(dict(request.query_params))
    store: Store = request.app.state.store
    rows = await store.read(list_records, f, PAGE_SIZE + 1)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return {
        "records": [_json_row(r) for r in rows],
        "next_cursor": rows[-1]["id"] if more and rows else None,
        "page_size": PAGE_SIZE,
    }


def _records_page(request: Request, data: dict[str, Any]) -> dict[str, Any]:
    """The search form's fields, and the links to the twin and the older/newest pages."""
    query = request.query_params
    form = {k: query.get(k, "") for k in FORM_FIELDS}
    kept = {k: v for k, v in form.items() if v}
    before = {"before": query["before"]} if query.get("before") else {}
    older = urlencode({**kept, "before": data["next_cursor"]}) if data["next_cursor"] else ""
    return {
        "form": form,
        "json_href": "/records.json?" + urlencode({**kept, **before}),
        "older_href": f"/records?{older}",
        "newer_href": ("/records?" + urlencode(kept)) if before else "",
    }


async def _record(request: Request) -> dict[str, Any]:
    record_id: int = request.path_params["record_id"]
    store: Store = request.app.state.store
    row = await store.read(get_record, record_id)
    if row is None:
        raise BadRequest(f"no record with id {record_id}", status=404)
    return _json_row(row)


def _record_page(request: Request, data: dict[str, Any]) -> dict[str, Any]:
    """The record, and the fields its source adds to the page (``Source.record_template``)."""
    templates = {s.name: s.record_template for s in request.app.state.sources}
    return {"r": data, "record_template": templates.get(data["source"])}


CSV_COLUMNS = (
    "id", "ts_reception", "source", "machine_id", "severity", "classification", "build",
    "host_type", "payload",
)


def _csv_rows(data: dict[str, Any]) -> Iterator[list[Any]]:
    return (
        [when(r["ts_reception"]) if c == "ts_reception" else r[c] for c in CSV_COLUMNS]
        for r in data["records"]
    )


# The record search (a page of 50, newest first; ``before`` pages on) with its JSON
# twin and the same page as CSV; then one record, payload escaped.
RECORDS = View(
    "/records",
    "Records",
    "records.html",
    _records,
    active="records",
    page=_records_page,
    csv=Csv("records", CSV_COLUMNS, _csv_rows),
)
RECORD = View(
    "/records/{record_id}",
    "Record {record_id}",
    "record.html",
    _record,
    active="records",
    page=_record_page,
    path_types={"record_id": RecordId},
)
router = router_of([RECORDS, RECORD])
