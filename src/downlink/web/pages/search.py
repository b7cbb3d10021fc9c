"""Search: one box in the navigation bar for a record id, machine id or build
(``store/queries/search.py``) and what each source knows (``Source.search``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from starlette.requests import Request

from downlink.store.database import Store
from downlink.store.queries.search import search
from downlink.web import params
from downlink.web.views import Csv, View, router_of


async def _data(request: Request) -> dict[str, Any]:
    text = params.text(dict(request.query_params), "q")
    store: Store = request.app.state.store
    lookups = [s.search for s in request.app.state.sources if s.search is not None]
    found = await store.read(search, text, lookups) if text else None
    return {"q": text or "", "found": found}


def _page(request: Request, data: dict[str, Any]) -> dict[str, Any]:
    sources = request.app.state.sources
    return {
        "found_any": any((data["found"] or {}).values()),
        "search_templates": [s.search_template for s in sources if s.search_template],
    }


SEARCH_COLUMNS = ("found", "value", "details")


def _csv_rows(data: dict[str, Any]) -> Iterator[tuple[str, Any, str]]:
    """One row per thing the text names: what it is (the key of ``found``), its value
    (a found item's first field) and the item's other fields as ``name=value; …``."""
    for kind, value in (data["found"] or {}).items():
        for item in value if isinstance(value, list) else [value]:
            if item is None or item == "":
                continue
            if isinstance(item, dict):
                first, *rest = item.items()
                details = "; ".join(f"{k}={v}" for k, v in rest)
                yield kind, first[1], details
            else:
                yield kind, item, ""


# What the searched text names, with links to each page; JSON and CSV twins.
VIEW = View("/search", "Search", "search.html", _data, page=_page,
            csv=Csv("search", SEARCH_COLUMNS, _csv_rows))
router = router_of([VIEW])
