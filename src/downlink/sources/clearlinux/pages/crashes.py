"""Crashes: top crash groups of a period, drill-down to backtraces, the blacklist.

Marking frames "never guilty" adds them to ``guilty_blacklist`` and, in the same
transaction, queues a regroup job (or restarts the one under way): the POST answers at
once, and a server process regroups the stored backtrace records in the background
(:mod:`downlink.sources.clearlinux.regroup`). The crash pages show the job's progress.
"""

from __future__ import annotations

import json
import time
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import Response

from downlink.errors import BadRequest
from downlink.params import RecordId
from downlink.sources.clearlinux.backtrace import (
    blacklist_candidates,
    guilty_label,
    package_of,
    parse_crash,
)
from downlink.sources.clearlinux.crash_analytics import FRESH, crash_reads_of
from downlink.sources.clearlinux.crashes import (
    add_to_blacklist,
    load_blacklist,
    remove_from_blacklist,
)
from downlink.sources.clearlinux.queries import blacklist_log
from downlink.sources.clearlinux.queries import crashes as q
from downlink.sources.clearlinux.regroup import regroup_status, request_regroup
from downlink.sources.clearlinux.wire import SOURCE
from downlink.sources.runtime import settings_of
from downlink.store.database import Store
from downlink.store.storable import find_problem
from downlink.web import params
from downlink.web.forms import redirect_back, same_origin_form
from downlink.web.rendering import chart, partial_marks, twin, when
from downlink.web.views import Csv, View

router = APIRouter(include_in_schema=False)

DEFAULT_DAYS = 7
TOP_MAX = 200
BACKTRACES_MAX = 50


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


# -- top crashes --------------------------------------------------------------------


async def _top(request: Request) -> dict[str, Any]:
    query = dict(request.query_params)
    period = params.period(query, DEFAULT_DAYS)
    build = params.text(query, "build")
    limit = params.integer(query, "limit", 1, TOP_MAX) or 50
    hidden = query.get("hidden", "") in ("1", "on", "true")
    store = _store(request)
    exact = int(settings_of(request, SOURCE)["crash_exact_machines"])
    reads = crash_reads_of(request)
    items = await reads.read(reads.top, period, build, limit, hidden, exact)
    payloads = await store.read(q.newest_payloads, [item["guilty_id"] for item in items])
    for item in items:
        item["label"] = guilty_label(item["function"], item["module"])
        item["package"] = package_of(item["module"])
        # The process of the group's newest crash, beside its guilty frame.
        payload = payloads.get(item["guilty_id"])
        item["process"] = parse_crash(payload).process if payload is not None else None
    regroup = await store.read(regroup_status)
    return {
        "period": period.as_json(),
        "build": build,
        "hidden_shown": hidden,
        "guilties": items,
        "regroup": regroup,
    }


def _top_page(_request: Request, data: dict[str, Any]) -> dict[str, Any]:
    """The top crash groups of the period as bars, each linked to its group's page."""
    top = data["guilties"][:15]
    charts = [
        chart(
            "chart-top",
            "bar",
            [g["label"][:40] for g in top],
            {"Crashes": [g["total"] for g in top]},
            title="Top crash groups",
            y_title="Crashes",
            links=[f"/crashes/{g['guilty_id']}?" + urlencode(data["period"]) for g in top],
        ),
    ]
    return {"charts": charts}


TOP_COLUMNS = (
    "guilty_id", "function", "module", "crashes", "machines", "machines_estimated",
    "builds", "first_seen", "last_seen", "comment", "hidden", "process", "package",
)


def _top_rows(data: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (
            g["guilty_id"], g["function"], g["module"], g["total"], g["machines"],
            g["machines_estimated"], g["builds"], when(g["first_seen"]),
            when(g["last_seen"]), g["comment"], g["hide"], g["process"], g["package"],
        )
        for g in data["guilties"]
    ]


# The top crash groups of the period (default: the past week); one CSV row per group.
TOP = View(
    "/crashes",
    "Crashes",
    "clearlinux/crashes.html",
    _top,
    active="crashes",
    page=_top_page,
    fresh=FRESH,
    csv=Csv("crashes", TOP_COLUMNS, _top_rows),
)
TOP.install(router)


# -- blacklist ("never guilty" frames) --------------------------------------------------
# Registered before /crashes/{guilty_id} so "blacklist" is never read as an id.


def _pairs(values: list[str]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for value in values:
        try:
            function, module = json.loads(value)
        except (ValueError, TypeError):
            raise BadRequest("frame must be a JSON [function, module] pair") from None
        if not isinstance(function, str) or not isinstance(module, str) or not function:
            raise BadRequest("frame must be a JSON [function, module] pair")
        if len(function) > 1000 or len(module) > 1000:
            raise BadRequest("frame is too long")
        unstorable = find_problem([function, module], "frame")
        if unstorable is not None:  # one text rule on both databases (store/storable.py)
            raise BadRequest(f"{unstorable[0]} contains {unstorable[1]}, which cannot be stored")
        pairs.append((function, module))
    return pairs


def _edit_and_regroup(
    conn: Connection, change: Any, pairs: list[tuple[str, str]], note: dict[str, Any]
) -> int:
    """Apply a blacklist edit and, if it changed anything, log who changed which frames
    (``note``: who, why, address, ts) and queue or restart the regroup."""
    before = load_blacklist(conn)
    changed_entries = int(change(conn, pairs))
    if changed_entries:
        adding = change is add_to_blacklist
        changed = [p for p in dict.fromkeys(pairs) if (p not in before) == adding]
        blacklist_log.record_changes(conn, "add" if adding else "remove", changed, **note)
        # Frames marked never guilty move only their own groups' crashes; frames
        # allowed again may take crashes from any group.
        request_regroup(conn, changed if adding else None)
    return changed_entries


WHO_MAX = 80
WHY_MAX = 500


def _note(request: Request, form: Any) -> dict[str, Any]:
    """Who made a blacklist edit and why (form fields ``who``, ``why``), and from where."""
    who = str(form.get("who") or "").strip()
    why = str(form.get("why") or "").strip()
    if len(who) > WHO_MAX or any(ord(ch) < 32 for ch in who):
        raise BadRequest(f"who must be at most {WHO_MAX} printable characters")
    if len(why) > WHY_MAX or any(ord(ch) < 32 and ch not in "\r\n\t" for ch in why):
        raise BadRequest(f"why must be at most {WHY_MAX} characters")
    address = request.client.host if request.client else ""
    return {"who": who, "why": why, "address": address, "ts": time.time()}


def _listing(conn: Connection) -> dict[str, Any]:
    return {
        "blacklist": [
            {"function": e["function"], "module": e["module"]} for e in q.blacklist(conn)
        ],
        "history": blacklist_log.history(conn),
        "regroup": regroup_status(conn),
    }


async def _blacklist(request: Request) -> dict[str, Any]:
    return await _store(request).read(_listing)


async def _blacklist_page(request: Request, data: dict[str, Any]) -> dict[str, Any]:
    """Each frame with a form value to remove it and the change that last added it."""
    added = await _store(request).read(blacklist_log.last_added)
    entries = [
        {
            **e,
            "value": json.dumps([e["function"], e["module"]]),
            "added": added.get((e["function"], e["module"])),
        }
        for e in data["blacklist"]
    ]
    return {"entries": entries, "history": data["history"], "regroup": data["regroup"]}


HISTORY_COLUMNS = ("ts", "action", "function", "module", "who", "why", "address")


# The "never guilty" frames with a form to remove them, and the history of the list
# (newest first), which is the CSV twin's table (every change: who, when, why).
BLACKLIST = View(
    "/crashes/blacklist",
    "Never-guilty frames",
    "clearlinux/blacklist.html",
    _blacklist,
    active="crashes",
    page=_blacklist_page,
    csv=Csv(
        "never-guilty-history",
        HISTORY_COLUMNS,
        lambda data: [
            [when(h["ts"]) if c == "ts" else h[c] for c in HISTORY_COLUMNS]
            for h in data["history"]
        ],
    ),
)
BLACKLIST.install(router)  # before /crashes/{guilty_id}: "blacklist" is not an id


@router.get("/crashes/regroup.json")
async def regroup_json(request: Request) -> Response:
    """The current (or last) regroup job: state, records done of total, failure message."""
    return twin({"regroup": await _store(request).read(regroup_status)})


@router.post("/crashes/regroup")
async def regroup_again(request: Request) -> Response:
    """Queue a regroup of every crash record (after a failed job); go back or answer JSON.

    JSON: ``202`` with the job. A job already queued or running is restarted instead.
    """
    form = await same_origin_form(request)
    store = _store(request)
    await store.admin_write(request_regroup)
    _wake_job_runner(request)
    if "application/json" in request.headers.get("accept", ""):
        response = twin({"job": await store.read(regroup_status)})
        response.status_code = 202
        return response
    return redirect_back(str(form.get("next") or ""), "/crashes")


async def _edit_blacklist(request: Request, edit: Any, back: str) -> Response:
    """Apply ``edit`` to the posted frames, queue the regroup, and go back (or answer JSON).

    JSON: ``202`` with the regroup job when the blacklist changed, else ``200``.
    """
    form = await same_origin_form(request)
    pairs = _pairs([str(v) for v in form.getlist("frame")])
    if not pairs:
        raise BadRequest("choose at least one frame")
    note = _note(request, form)
    store = _store(request)
    changed = await store.admin_write(_edit_and_regroup, edit, pairs, note)
    if changed:
        _wake_job_runner(request)
    if "application/json" in request.headers.get("accept", ""):
        response = twin({"blacklist_changed": changed, "job": await store.read(regroup_status)})
        response.status_code = 202 if changed else 200
        return response
    return redirect_back(str(form.get("next") or ""), back)


def _wake_job_runner(request: Request) -> None:
    runner = getattr(request.app.state, "job_runner", None)
    if runner is not None:
        runner.wake()


@router.post("/crashes/blacklist")
async def blacklist_add(request: Request) -> Response:
    """Mark the posted frames never guilty, queue the regroup, and go back (or answer JSON)."""
    return await _edit_blacklist(request, add_to_blacklist, "/crashes")


@router.post("/crashes/blacklist/remove")
async def blacklist_remove(request: Request) -> Response:
    """Let the posted frames be guilty again, queue the regroup, and go back."""
    return await _edit_blacklist(request, remove_from_blacklist, "/crashes/blacklist")


# -- one crash group --------------------------------------------------------------------


MACHINES_PAGE = 200
MACHINES_MAX = 5000
OFFSET_MAX = 10_000_000


async def _detail(request: Request) -> dict[str, Any]:
    guilty_id: int = request.path_params["guilty_id"]
    query = dict(request.query_params)
    period = params.period(query, DEFAULT_DAYS)
    limit = params.integer(query, "limit", 1, MACHINES_MAX) or MACHINES_PAGE
    offset = params.integer(query, "offset", 0, OFFSET_MAX) or 0
    exact = int(settings_of(request, SOURCE)["crash_exact_machines"])
    reads = crash_reads_of(request)
    found = await reads.read(reads.group, guilty_id, period, limit, offset, exact)
    if found is None:
        raise BadRequest(f"no crash group with id {guilty_id}", status=404)
    g = found["guilty"]
    g["label"] = guilty_label(g["function"], g["module"])
    g["package"] = package_of(g["module"])
    return {"period": period.as_json(), **found}


def _group_page(request: Request, data: dict[str, Any]) -> dict[str, Any]:
    """Crashes per day and per build; links to the machines' next and first pages."""
    guilty_id = data["guilty"]["id"]
    form = dict(request.query_params)
    links: dict[str, str] = {}
    if data["next_offset"] is not None:
        links["next"] = "?" + urlencode({**form, "offset": data["next_offset"]})
    if data["offset"]:
        links["first"] = "?" + urlencode({k: v for k, v in form.items() if k != "offset"})
    first = date.fromisoformat(data["period"]["from"])
    builds = list(reversed(data["builds"]))  # oldest first
    backtraces = f"/crashes/{guilty_id}/backtraces?" + urlencode(data["period"])
    charts = [
        chart(
            "chart-daily",
            "bar",
            partial_marks(
                [(first + timedelta(days=i)).isoformat() for i in range(len(data["daily"]))],
                data["period"],
            ),
            {"Crashes": data["daily"]},
            title="Crashes per day",
            x_title="Day (UTC)",
            y_title="Crashes",
        ),
        chart(
            "chart-builds",
            "bar",
            [b["build"] or "(none)" for b in builds],
            {
                "Crashes": [b["records"] for b in builds],
                "Machines": [b["machines"] for b in builds],
            },
            title="Crashes and machines per build",
            x_title="Build",
            y_title="Count",
            links=[f"{backtraces}&" + urlencode({"build": b["build"]}) for b in builds],
        ),
    ]
    return {"charts": charts, "links": links}


MACHINE_COLUMNS = ("build", "machine_id", "crashes")


def _machine_rows(data: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(m["build"], m["machine_id"], m["records"]) for m in data["machines"]]


# One crash group: machines and builds affected in the period; the CSV twin is its
# machines table, a page at a time as shown (``limit``, ``offset``).
GROUP = View(
    "/crashes/{guilty_id}",
    "Crash group {guilty_id}",
    "clearlinux/guilty.html",
    _detail,
    active="crashes",
    page=_group_page,
    fresh=FRESH,
    csv=Csv(lambda data: f"crash-group-{data['guilty']['id']}", MACHINE_COLUMNS, _machine_rows),
    path_types={"guilty_id": RecordId},
)


COMMENT_MAX = 80


@router.post("/crashes/{guilty_id}")
async def guilty_edit(request: Request, guilty_id: RecordId) -> Response:
    """Set a crash group's comment (at most 80 characters) and whether it is hidden."""
    form = await same_origin_form(request)
    comment = str(form.get("comment") or "").strip()
    if len(comment) > COMMENT_MAX or any(ord(ch) < 32 for ch in comment):
        raise BadRequest(f"comment must be at most {COMMENT_MAX} printable characters")
    hide = str(form.get("hide") or "") in ("1", "on", "true")
    found = await _store(request).admin_write(q.update_guilty, guilty_id, comment, hide)
    if not found:
        raise BadRequest(f"no crash group with id {guilty_id}", status=404)
    if "application/json" in request.headers.get("accept", ""):
        return twin({"guilty_id": guilty_id, "comment": comment, "hide": hide})
    return redirect_back(f"/crashes/{guilty_id}", "/crashes")


async def _backtraces(request: Request) -> dict[str, Any]:
    guilty_id: int = request.path_params["guilty_id"]
    query = dict(request.query_params)
    machine_id = params.text(query, "machine_id", 64)
    build = params.text(query, "build")
    period = params.period(query, DEFAULT_DAYS)  # the group page's period
    store = _store(request)
    g = await store.read(q.get_guilty, guilty_id)
    if g is None:
        raise BadRequest(f"no crash group with id {guilty_id}", status=404)
    reads = crash_reads_of(request)
    rows = await reads.read(reads.records, guilty_id, machine_id, build, period, BACKTRACES_MAX)
    crashes = []
    for r in rows:
        parsed = parse_crash(r["payload"] or "")
        offered = {(f.function, f.module) for f in blacklist_candidates(r["payload"] or "")}
        frames = []
        for f in parsed.frames:
            pair = (f.function, f.module)
            # Each offered frame gets one checkbox, on its first occurrence.
            offer = json.dumps(list(pair)) if pair in offered else None
            offered.discard(pair)
            frames.append(
                {"function": f.function, "module": f.module, "location": f.location, "offer": offer}
            )
        guilty_index = next(
            (
                i
                for i, f in enumerate(parsed.frames)
                if f.function == g["function"] and f.module == g["module"]
            ),
            None,
        )
        crashes.append(
            {
                "record_id": r["id"],
                "machine_id": r["machine_id"],
                "build": r["build"],
                "classification": r["classification"],
                "ts_reception": r["ts_reception"],
                "process": parsed.process,
                "pid": parsed.pid,
                "signal": parsed.signal,
                "kernel_reason": parsed.kernel_reason,
                "frames": frames,
                "guilty_frame": guilty_index,
                "candidates": [
                    {
                        "function": f.function,
                        "module": f.module,
                        "value": json.dumps([f.function, f.module]),
                    }
                    for f in blacklist_candidates(r["payload"] or "")
                ],
            }
        )
    g["label"] = guilty_label(g["function"], g["module"])
    g["package"] = package_of(g["module"])
    return {
        "period": period.as_json(),
        "guilty": g,
        "machine_id": machine_id,
        "build": build,
        "crashes": crashes,
        "stacks": _stacks(crashes),
    }


FOLD_CONTEXT = 3  # frames shown on each side of the guilty one; the rest fold away


def _stacks(crashes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge the crashes whose backtraces are identical (the same functions and modules,
    in order), newest first: each stack names its newest crash (``record_id``, shown),
    every record of it, its machines and builds, and the frames around the guilty one
    (``shown``: [from, to), the rest folded)."""
    merged: dict[Any, dict[str, Any]] = {}
    for c in crashes:
        frames = tuple((f["function"], f["module"]) for f in c["frames"])
        key = frames or c["record_id"]  # no frames parsed: nothing to compare, never merged
        stack = merged.get(key)
        if stack is None:
            guilty = c["guilty_frame"]
            shown = (
                [0, len(frames)]
                if guilty is None
                else [max(0, guilty - FOLD_CONTEXT), min(len(frames), guilty + FOLD_CONTEXT + 1)]
            )
            merged[key] = {
                "record_id": c["record_id"],
                "record_ids": [c["record_id"]],
                "machines": [c["machine_id"]],
                "builds": [c["build"]],
                "shown": shown,
            }
            continue
        stack["record_ids"].append(c["record_id"])
        if c["machine_id"] not in stack["machines"]:
            stack["machines"].append(c["machine_id"])
        if c["build"] not in stack["builds"]:
            stack["builds"].append(c["build"])
    return list(merged.values())


def _backtraces_page(_request: Request, data: dict[str, Any]) -> dict[str, Any]:
    """Each distinct backtrace with its newest crash, guilty frame highlighted."""
    by_id = {c["record_id"]: c for c in data["crashes"]}
    return {
        "stacks": [(stack, by_id[stack["record_id"]]) for stack in data["stacks"]],
        "fold_context": FOLD_CONTEXT,
    }


CRASH_COLUMNS = (
    "record_id", "ts_reception", "machine_id", "build", "classification", "process", "pid",
    "signal", "guilty_frame", "frames",
)


def _crash_rows(data: dict[str, Any]) -> list[tuple[Any, ...]]:
    """One row per crash, its frames as ``function (module)`` from the top, ``|`` apart."""
    return [
        (
            c["record_id"], when(c["ts_reception"]), c["machine_id"], c["build"],
            c["classification"], c["process"], c["pid"], c["signal"], c["guilty_frame"],
            " | ".join(f"{f['function']} ({f['module']})" for f in c["frames"]),
        )
        for c in data["crashes"]
    ]


# The newest backtraces of one crash group in the group page's period (one machine or
# build with ``machine_id``, ``build``), identical stacks merged; one CSV row per crash.
BACKTRACES = View(
    "/crashes/{guilty_id}/backtraces",
    "Backtraces of crash group {guilty_id}",
    "clearlinux/backtraces.html",
    _backtraces,
    active="crashes",
    page=_backtraces_page,
    fresh=FRESH,
    csv=Csv(lambda data: f"crash-group-{data['guilty']['id']}-backtraces", CRASH_COLUMNS,
            _crash_rows),
    path_types={"guilty_id": RecordId},
)
GROUP.install(router)
BACKTRACES.install(router)
