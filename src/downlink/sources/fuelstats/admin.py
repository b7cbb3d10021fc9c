"""Administrative fuel-stats endpoints (behind the API token when tokens are set).

* ``POST /api/v1/fuel/refilter``: re-apply the filtering rules file to every stored
  installation (a background job); ``GET`` shows its progress.
* ``DELETE /api/v1/fuel/contacts/{uid}``: remove a master node's contact details.
* ``GET /api/v1/fuel/failures``: failure notifications and their delivery status.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from sqlalchemy import Connection, select, update
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from downlink.sources.fuelstats import notify, refilter
from downlink.sources.fuelstats.api import ALL_METHODS, guarded
from downlink.sources.fuelstats.context import context, store
from downlink.sources.fuelstats.errors import FuelError, error_response, method_not_allowed
from downlink.sources.fuelstats.filtering import RulesError
from downlink.sources.fuelstats.privacy import without_contact
from downlink.sources.fuelstats.tables import installations


def _json(value: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status_code=status, media_type="application/json")


def _wake(request: Request) -> None:
    runner = getattr(request.app.state, "job_runner", None)
    if runner is not None:
        runner.wake()


def _raw_rules(request: Request) -> Any:
    path = context(request).settings.rules_path
    if path is None:
        return None
    try:
        return json.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise FuelError(400, f"cannot read filtering rules {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise FuelError(400, f"filtering rules {path} are not JSON: {exc}") from None


def _queue(conn: Connection, raw: Any) -> dict[str, Any] | None:
    refilter.request(conn, raw)
    return refilter.status(conn)


async def refilter_endpoint(request: Request) -> Response:
    """POST: queue a refilter with the rules file as it is now; GET: its status."""
    if request.method == "POST":
        raw = _raw_rules(request)
        try:
            found = await store(request).admin_write(_queue, raw)
        except RulesError as exc:
            raise FuelError(400, str(exc)) from None
        _wake(request)
        return _json(found, 202)
    if request.method not in ("GET", "HEAD"):
        err = method_not_allowed(request.method, request.url.path)
        return error_response(err.status, err.message)
    status = await store(request).read(refilter.status)
    if status is None:
        raise FuelError(404, "no refilter job was ever queued")
    return _json(status)


def purge_contact(conn: Connection, uid: str) -> bool:
    """Remove ``uid``'s contact details from its stored structure; False if unknown."""
    structure = conn.execute(
        select(installations.c.structure).where(installations.c.master_node_uid == uid)
    ).scalar_one_or_none()
    if structure is None:
        return False
    conn.execute(
        update(installations)
        .where(installations.c.master_node_uid == uid)
        .values(structure=without_contact(structure))
    )
    return True


async def contacts(request: Request) -> Response:
    """DELETE a master node's contact details."""
    if request.method != "DELETE":
        err = method_not_allowed(request.method, request.url.path)
        return error_response(err.status, err.message)
    uid = request.path_params["uid"]
    if not await store(request).admin_write(purge_contact, uid):
        raise FuelError(404, f"404 Not Found: no installation {uid!r}")
    return _json({"status": "ok", "master_node_uid": uid})


async def failures(request: Request) -> Response:
    """The newest failure notifications with their delivery status."""
    return _json({"failures": await store(request).read(notify.outbox_page)})


def _errors(endpoint: Any) -> Any:
    async def run(request: Request) -> Response:
        try:
            return await endpoint(request)  # type: ignore[no-any-return]
        except FuelError as exc:
            return error_response(exc.status, exc.message)

    return run


def routes() -> list[BaseRoute]:
    """The admin routes."""
    return [
        Route("/api/v1/fuel/refilter", _errors(refilter_endpoint), methods=ALL_METHODS),
        Route("/api/v1/fuel/contacts/{uid}", _errors(contacts), methods=ALL_METHODS),
        Route("/api/v1/fuel/failures", guarded(failures), methods=ALL_METHODS),
    ]
