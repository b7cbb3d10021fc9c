"""The CSV export endpoints, under ``/api/v1/csv/`` (streamed; see :mod:`.exports`).

``from_date`` and ``to_date`` (``YYYY-MM-DD``) bound the window, by default the last 90
days; a bad date is 400 in the source's error envelope.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from downlink.sources.fuelstats import exports
from downlink.sources.fuelstats.api import ALL_METHODS, guarded
from downlink.sources.fuelstats.context import store
from downlink.sources.fuelstats.errors import FuelError, not_found
from downlink.sources.fuelstats.reads import reads_of


def _window(request: Request) -> exports.Window:
    try:
        return exports.window(
            request.query_params.get("from_date"), request.query_params.get("to_date")
        )
    except ValueError as exc:
        raise FuelError(400, str(exc)) from None


async def _verify(request: Request, win: exports.Window) -> exports.Verify:
    """The verify_networks statuses of the window, read before the response starts (an
    unavailable analytics store is a 503, not a broken stream)."""
    reads = reads_of(request)
    found: exports.Verify = await reads.read(reads.verify_networks, win)
    return found


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


async def report(request: Request) -> Response:
    """One report as CSV: clusters, nodes, plugins or an OSWL resource type."""
    name = request.path_params["report"]
    if name not in exports.EXPORTS:
        raise not_found(request.url.path)
    win = _window(request)
    verify = await _verify(request, win) if name == "clusters" else None
    return StreamingResponse(
        exports.stream(store(request).reads_engine(), exports.with_verify(name, verify), win),
        media_type="text/csv; charset=utf-8",
        headers=_attachment(f"{name}.csv"),
    )


async def everything(request: Request) -> Response:
    """Every report as one zip archive, streamed."""
    win = _window(request)
    name = f"reports_from{win.from_date.isoformat()}_to{win.to_date.isoformat()}.zip"
    return StreamingResponse(
        exports.archive(store(request).reads_engine(), win, await _verify(request, win)),
        media_type="application/zip",
        headers=_attachment(name),
    )


def routes() -> list[BaseRoute]:
    """The CSV routes (the archive first: ``all`` is not a report name)."""
    return [
        Route("/api/v1/csv/all", guarded(everything), methods=ALL_METHODS),
        Route("/api/v1/csv/{report}", guarded(report), methods=ALL_METHODS),
    ]
