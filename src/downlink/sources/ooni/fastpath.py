"""One stored submission in, one ``fastpath`` row out (reference A2).

Pure: the same body, uid and fingerprints always give the same row, which is what
makes reprocessing idempotent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson

from downlink.sources.ooni.fingerprints import Fingerprints
from downlink.sources.ooni.scoring import Scores, get, score
from downlink.sources.ooni.submission import uid_time

TOO_NEW_S = 3600
TOO_OLD_S = 31_536_000
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def unwrap(body: Any) -> tuple[dict[str, Any], str] | None:
    """The measurement and ``is_verified`` of a stored body, or None if it has none."""
    if not isinstance(body, dict):
        return None
    is_verified = body.get("is_verified", "u")
    if set(body) - {"is_verified"} == {"format", "content"}:
        fmt = body.get("format")
        if not isinstance(fmt, str) or fmt.lower() != "json":
            return None
        body = body["content"]
    if not isinstance(body, dict):
        return None
    return body, is_verified if is_verified in ("t", "f", "u") else "u"


def parse_time(value: Any) -> float | None:
    """``YYYY-MM-DD HH:MM:SS`` (UTC) as epoch seconds, or None."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, _TIME_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def flag_wrong_date(msm: dict[str, Any], uid: str, scores: Scores) -> None:
    """More than 1 h in the future or 1 year in the past of the receive time: failure."""
    received = uid_time(uid)
    start = parse_time(msm.get("measurement_start_time"))
    if received is None or start is None:
        return
    delta = received.timestamp() - start
    if delta < -TOO_NEW_S:
        scores["accuracy"] = 0.0
        scores["msg"] = "Measurement start time from the future"
    elif delta > TOO_OLD_S:
        scores["accuracy"] = 0.0
        scores["msg"] = "Measurement start time too old"


def _input_and_domain(value: Any) -> tuple[str, str]:
    if isinstance(value, list):
        items = [str(v) for v in value]
        return "{" + ",".join(items) + "}", items[0] if items else ""
    if not isinstance(value, str):
        return "", ""
    try:
        netloc = urlsplit(value).netloc
    except ValueError:
        netloc = ""
    return value, netloc


def _text(d: dict[str, Any], key: str, default: str = "") -> str:
    value = d.get(key)
    return value if isinstance(value, str) else default


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value)


def _asn(value: Any) -> int:
    if isinstance(value, str) and value.upper().startswith("AS"):
        try:
            return int(value[2:])
        except ValueError:
            return 0
    return 0


def _run_link_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        return None
    return n if 0 <= n < 2**63 else None


def build_row(
    stored: bytes,
    uid: str,
    report_id: str,
    fps: Fingerprints,
) -> dict[str, Any] | None:
    """Score a stored body; None when it holds no measurement to score."""
    try:
        body = orjson.loads(stored)
    except orjson.JSONDecodeError:
        return None
    unwrapped = unwrap(body)
    if unwrapped is None:
        return None
    msm, is_verified = unwrapped
    scores = score(msm, fps)
    flag_wrong_date(msm, uid, scores)
    anomaly = _float(scores.get("blocking_general", 0.0)) > 0.5
    failure = _float(scores.get("accuracy", 1.0)) < 0.5
    confirmed = scores.get("confirmed", False) is True
    inp, domain = _input_and_domain(msm.get("input"))
    backend = get(get(msm, "test_helpers", {}), "backend", {})
    if not isinstance(backend, dict):
        backend = {}
    annotations = msm.get("annotations")
    if not isinstance(annotations, dict):
        annotations = {}
    analysis = scores.get("analysis")
    blocking_type = analysis.get("blocking_type", "") if isinstance(analysis, dict) else ""
    return {
        "measurement_uid": uid,
        "report_id": _text(msm, "report_id") or report_id,
        "input": inp,
        "probe_cc": _text(msm, "probe_cc").upper(),
        "probe_asn": _asn(msm.get("probe_asn")),
        "test_name": _text(msm, "test_name"),
        "test_start_time": parse_time(msm.get("test_start_time")),
        "measurement_start_time": parse_time(msm.get("measurement_start_time")),
        "filename": "",
        "scores": orjson.dumps(scores).decode(),
        "platform": _text(annotations, "platform", "unset") or "unset",
        "anomaly": anomaly,
        "confirmed": confirmed,
        "msm_failure": failure,
        "domain": domain,
        "software_name": _text(msm, "software_name", "unknown"),
        "software_version": _text(msm, "software_version", "unknown"),
        "control_failure": "",
        "blocking_general": _float(scores.get("blocking_general", 0.0)),
        "is_ssl_expected": 0,
        "page_len": 0,
        "page_len_ratio": 0.0,
        "server_cc": "",
        "server_asn": 0,
        "server_as_name": "",
        "test_version": _text(msm, "test_version"),
        "architecture": _text(annotations, "architecture"),
        "engine_name": _text(annotations, "engine_name"),
        "engine_version": _text(annotations, "engine_version"),
        "test_runtime": _float(msm.get("test_runtime")),
        "blocking_type": blocking_type if isinstance(blocking_type, str) else "",
        "test_helper_address": _text(backend, "address"),
        "test_helper_type": _text(backend, "type"),
        "ooni_run_link_id": _run_link_id(annotations.get("ooni_run_link_id")),
        "is_verified": is_verified,
    }
