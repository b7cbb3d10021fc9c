"""OONI pages: measurement search, one measurement, and a MAT-like chart; JSON twins."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from downlink.errors import BadRequest
from downlink.sources.ooni import aggregation, search
from downlink.sources.ooni.api import archive_storage, lookup
from downlink.sources.ooni.params import ParamError
from downlink.sources.ooni.reads import reads_of
from downlink.sources.runtime import store_of
from downlink.store.queries.period import day_date
from downlink.web.params import preset_period
from downlink.web.rendering import chart, csv_twin, twin, web_of

router = APIRouter(include_in_schema=False)

SEARCH_FIELDS = (
    "probe_cc", "probe_asn", "test_name", "domain", "input", "report_id", "since", "until",
    "anomaly", "confirmed", "failure", "range",
)
CHART_FIELDS = ("axis_x", "axis_y", "probe_cc", "probe_asn", "test_name", "domain", "input",
                "since", "until", "time_grain", "range")
STACK = (("ok_count", "ok"), ("anomaly_count", "anomaly"), ("confirmed_count", "confirmed"),
         ("failure_count", "failure"))


def _form(request: Request, fields: tuple[str, ...]) -> dict[str, str]:
    return {k: request.query_params.get(k, "") for k in fields}


def _given(form: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in form.items() if v}


def _query(form: dict[str, str]) -> dict[str, str]:
    """The parameters of a read: the form's, a time-range preset (``range``, kept across
    pages by the navigation bar) as ``since``/``until`` when neither is given."""
    params = _given(form)
    preset = params.pop("range", "")
    if preset and not params.get("since") and not params.get("until"):
        try:
            days = preset_period(preset)
        except BadRequest as exc:
            raise ParamError(exc.message) from None
        params["since"] = day_date(days.first).isoformat()
        params["until"] = day_date(days.last + 1).isoformat()
    return params


async def _search_data(request: Request) -> tuple[dict[str, Any], int]:
    form = _form(request, SEARCH_FIELDS)
    store = store_of(request)
    try:
        params = _query(form)
        for name in ("cursor", "limit"):
            if request.query_params.get(name):
                params[name] = request.query_params[name]
        q = search.parse(params, store.settings.api_limit_max)
    except ParamError as exc:
        return {"error": str(exc), "results": [], "next_cursor": None, "form": form}, 400
    reads = reads_of(request, sql_only=q.test_lists)
    rows = await reads.read(reads.search, q)
    base = str(request.base_url).rstrip("/")
    results = [search.result(r, base) for r in rows]
    nxt = None
    if len(rows) == q.limit:
        nxt = search.make_cursor(rows[-1]["measurement_start_time"], rows[-1]["measurement_uid"])
    return {"error": None, "results": results, "next_cursor": nxt, "form": form}, 200


@router.get("/ooni/measurements.json")
async def measurements_json(request: Request) -> Response:
    """JSON twin of the measurement search page."""
    data, status = await _search_data(request)
    response = twin(data)
    response.status_code = status
    return response


MEASUREMENT_COLUMNS = ("measurement_uid", "report_id", "measurement_start_time", "probe_cc",
                       "probe_asn", "test_name", "input", "anomaly", "confirmed", "failure",
                       "measurement_url")


@router.get("/ooni/measurements.csv")
async def measurements_csv(request: Request) -> Response:
    """CSV twin of the measurement search page: one row per measurement of the page
    (``cursor`` and ``limit`` as the JSON twin); a refusal is ``{"message": …}``."""
    data, status = await _search_data(request)
    if status != 200:
        return Response(orjson.dumps({"message": data["error"]}), status_code=status,
                        media_type="application/json")
    return csv_twin("ooni-measurements", MEASUREMENT_COLUMNS,
                    ([m[c] for c in MEASUREMENT_COLUMNS] for m in data["results"]))


@router.get("/ooni/measurements")
async def measurements_page(request: Request) -> Response:
    """Search measurements by country, network, test, domain, time and outcome."""
    data, status = await _search_data(request)
    given = _given(data["form"])
    older = None
    if data["next_cursor"]:
        older = "/ooni/measurements?" + urlencode({**given, "cursor": data["next_cursor"]})
    return web_of(request).page(
        "ooni/measurements.html", title="OONI measurements", active="ooni", status=status,
        data=data, form=data["form"], older_href=older,
        json_href="/ooni/measurements.json?" + urlencode(given),
    )


async def _measurement_data(request: Request, uid: str) -> dict[str, Any] | None:
    row = await store_of(request).read(lookup, uid, None, None, archive_storage(request))
    if row is None:
        return None
    body = None
    if row.get("body") is not None:
        try:
            body = orjson.loads(bytes(row["body"]))
        except orjson.JSONDecodeError:
            body = None
    if row.get("unscored"):
        return {"measurement_uid": uid, "scored": False, "raw": body}
    scores = orjson.loads(row["scores"])
    return {
        "measurement_uid": uid,
        "scored": True,
        "report_id": row["report_id"],
        "probe_cc": row["probe_cc"],
        "probe_asn": f"AS{row['probe_asn']}",
        "test_name": row["test_name"],
        "input": row["input"],
        "domain": row["domain"],
        "measurement_start_time": search.iso(row["measurement_start_time"]),
        "anomaly": bool(row["anomaly"]),
        "confirmed": bool(row["confirmed"]),
        "failure": bool(row["msm_failure"]),
        "blocking_type": row["blocking_type"],
        "platform": row["platform"],
        "software": f"{row['software_name']} {row['software_version']}",
        "scores": scores,
        "fingerprints": scores.get("fingerprints", []),
        "raw": body,
    }


@router.get("/ooni/measurement/{uid}.json")
async def measurement_json(uid: str, request: Request) -> Response:
    """JSON twin of the measurement page."""
    data = await _measurement_data(request, uid)
    if data is None:
        return Response(orjson.dumps({"message": f"no measurement {uid}"}), status_code=404,
                        media_type="application/json")
    return twin(data)


@router.get("/ooni/measurement/{uid}")
async def measurement_page(uid: str, request: Request) -> Response:
    """One measurement: flags, scores, fingerprints matched and the raw JSON."""
    data = await _measurement_data(request, uid)
    if data is None:
        return web_of(request).page(
            "ooni/measurement.html", title="Measurement not found", active="ooni",
            status=404, data=None, uid=uid, raw_text="",
        )
    raw_text = orjson.dumps(data["raw"], option=orjson.OPT_INDENT_2).decode()
    return web_of(request).page(
        "ooni/measurement.html", title=f"Measurement {uid}", active="ooni",
        data=data, uid=uid, raw_text=raw_text,
    )


async def _chart_data(request: Request) -> tuple[dict[str, Any], int]:
    form = _form(request, CHART_FIELDS)
    if not form["axis_x"]:
        form["axis_x"] = "measurement_start_day"
    try:
        agg = aggregation.parse(_query(form))
    except (aggregation.AggregationError, ParamError) as exc:
        return {"error": str(exc), "rows": [], "form": form}, 400
    reads = reads_of(request, sql_only=aggregation.needs_test_lists(agg))
    rows = await reads.read(reads.aggregate, agg)
    return {"error": None, "rows": rows, "form": form, "grain": agg.grain}, 200


def _charts(data: dict[str, Any]) -> list[dict[str, Any]]:
    form = data["form"]
    x, y = form["axis_x"], form["axis_y"]
    groups: dict[Any, list[dict[str, Any]]] = {}
    for row in data["rows"]:
        groups.setdefault(row[y] if y else None, []).append(row)
    out = []
    for n, (key, rows) in enumerate(list(groups.items())[:24]):
        out.append(
            chart(
                f"ooni-chart-{n}", "bar", [r[x] for r in rows],
                {label: [r[col] for r in rows] for col, label in STACK},
                title=f"{y} = {key}" if y else "", stacked=True,
            )
        )
    return out


@router.get("/ooni/chart.json")
async def chart_json(request: Request) -> Response:
    """JSON twin of the chart page."""
    data, status = await _chart_data(request)
    response = twin(data)
    response.status_code = status
    return response


@router.get("/ooni/chart")
async def chart_page(request: Request) -> Response:
    """OK / anomaly / confirmed / failure counts by one or two axes, stacked (like MAT)."""
    data, status = await _chart_data(request)
    given = _given(data["form"])
    try:  # the API takes no preset: its period as since/until
        asked = _query(data["form"])
    except ParamError:
        asked = given
    csv_href = "/api/v1/aggregation?" + urlencode({**asked, "format": "CSV", "download": "true"})
    return web_of(request).page(
        "ooni/chart.html", title="OONI chart", active="ooni-chart", status=status,
        charts=_charts(data) if status == 200 else [], data=data, form=data["form"],
        axis_options=[(a, a) for a in aggregation.AXES],
        csv_href=csv_href, json_href="/ooni/chart.json?" + urlencode(given),
    )
