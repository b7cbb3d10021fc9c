"""Search: one box in the navigation bar for a record id, machine id, build,
classification, crash frame or substrate peer id (``store/queries/search.py``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from downlink.store.database import Store
from downlink.store.queries.search import search
from downlink.web import params
from downlink.web.rendering import shows_errors, twin, web_of

router = APIRouter(include_in_schema=False)


async def _data(request: Request) -> dict[str, Any]:
    text = params.text(dict(request.query_params), "q")
    store: Store = request.app.state.store
    found = await store.read(search, text) if text else None
    return {"q": text or "", "found": found}


@router.get("/search")
@shows_errors("search.html", "Search", "")
async def search_page(request: Request) -> Response:
    """Render what the searched text names, with links to each page."""
    data = await _data(request)
    return web_of(request).page(
        "search.html", title="Search", active="", data=data, form=dict(request.query_params)
    )


@router.get("/search.json")
async def search_json(request: Request) -> Response:
    """JSON twin of /search."""
    return twin(await _data(request))
