"""Fastpath scorers: one function per OONI test name, each returning a ``scores`` dict.

Scores always hold ``blocking_general``, ``blocking_global``, ``blocking_country``,
``blocking_isp`` and ``blocking_local``; optionally ``accuracy`` (default 1.0),
``confirmed``, ``analysis``, ``fingerprints``, ``extra`` and ``msg`` (reference A2).
The rules follow OONI's fastpath so that scores computed here and there agree.
Measurements are untrusted JSON: a value of an unexpected type makes the measurement
a failure (accuracy 0) with a message, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from packaging.version import InvalidVersion, Version

from downlink.sources.ooni.fingerprints import Fingerprint, Fingerprints

Scores = dict[str, Any]
LOCALITIES = ("general", "global", "country", "isp", "local")
SCOPE_TO_LOCALITY = {"inst": "local", "isp": "isp", "nat": "country", "prod": "general"}
WEB_BLOCKING_TYPES = ("tcp_ip", "dns", "http-diff", "http-failure")


def get(d: Any, key: str, default: Any = None) -> Any:
    """``d[key]``, or ``default`` when it is missing or null (d must be a mapping)."""
    value = d.get(key)
    return default if value is None else value


def init_scores() -> Scores:
    """All five blocking scores at 0."""
    return {f"blocking_{loc}": 0.0 for loc in LOCALITIES}


def failed(scores: Scores | None = None) -> Scores:
    """``scores`` (or fresh ones) with accuracy 0."""
    scores = scores if scores is not None else init_scores()
    scores["accuracy"] = 0.0
    return scores


def _test_keys(msm: dict[str, Any]) -> dict[str, Any]:
    tk = get(msm, "test_keys", {})
    if not isinstance(tk, dict):
        raise TypeError("test_keys is not an object")
    return tk


def _has_unknown_failure(tk: dict[str, Any]) -> bool:
    """Any ``*_failure`` key holding ``unknown_failure ...`` marks a broken measurement."""
    for key, value in tk.items():
        if key.endswith("_failure") and isinstance(value, str):
            if value.startswith("unknown_failure"):
                return True
    return False


def _tcp_connect_counts(tk: dict[str, Any]) -> tuple[int, int]:
    """(accessible, unreachable) endpoints of ``test_keys.tcp_connect``."""
    ok = bad = 0
    for entry in get(tk, "tcp_connect", []):
        success = get(get(entry, "status", {}), "success")
        if success is True:
            ok += 1
        elif success is False:
            bad += 1
    return ok, bad


def is_confirmed(probe_cc: str, fp: Fingerprint) -> bool:
    """A match confirms blocking in its expected countries, or anywhere for isp/nat."""
    if probe_cc != "ZZ" and probe_cc in fp.expected_countries:
        return True
    return fp.scope in ("isp", "nat")


def apply_matches(msm: dict[str, Any], scores: Scores, matches: list[Fingerprint]) -> None:
    """Record matched fingerprints and set the locality of the confirmed ones to 1."""
    if not matches:
        return
    scores["fingerprints"] = [fp.brief() for fp in matches]
    probe_cc = str(get(msm, "probe_cc", "ZZ")).upper()
    for fp in matches:
        if is_confirmed(probe_cc, fp):
            scores["blocking_" + SCOPE_TO_LOCALITY.get(fp.scope, "general")] = 1.0
            scores["confirmed"] = True


def match_web_connectivity(msm: dict[str, Any], fps: Fingerprints) -> list[Fingerprint]:
    """DNS answers, HTTP bodies and headers of a web_connectivity measurement."""
    tk = msm.get("test_keys")
    if not isinstance(tk, dict):
        return []
    matches: list[Fingerprint] = []
    for query in get(tk, "queries", ()):
        for answer in get(query, "answers", ()):
            matches.extend(fps.match_dns(answer))
    for req in get(tk, "requests", ()):
        resp = req.get("response")
        if isinstance(resp, dict):
            matches.extend(fps.match_body(resp.get("body")))
            matches.extend(fps.match_headers(get(resp, "headers", {})))
    return matches


def score_web_connectivity(msm: dict[str, Any], fps: Fingerprints) -> Scores:
    """web_connectivity: fingerprint matches plus the probe's own ``blocking`` verdict."""
    scores = init_scores()
    tk = msm.get("test_keys")
    if tk is None:
        return failed(scores)
    if not isinstance(tk, dict):
        raise TypeError("test_keys is not an object")
    matches = match_web_connectivity(msm, fps)
    apply_matches(msm, scores, matches)
    if tk.get("title_match") not in (True, False, None):
        return failed(scores)
    blocking = tk.get("blocking")
    if isinstance(blocking, str) and blocking in WEB_BLOCKING_TYPES:
        scores["blocking_general"] = 1.0
        scores["analysis"] = {"blocking_type": blocking}
    elif blocking is False:
        pass
    elif blocking is None:
        if not matches:
            scores["accuracy"] = 0.0
    else:
        scores["analysis"] = {"msg": "Unsupported blocking type"}
        scores["accuracy"] = 0.0
    if _has_unknown_failure(tk):
        scores["accuracy"] = 0.0
    scores["blocking_general"] += (
        scores["blocking_country"]
        + scores["blocking_global"]
        + scores["blocking_isp"]
        + scores["blocking_local"]
    )
    if "accessible" in tk and tk["accessible"] is None and not matches:
        scores["accuracy"] = 0.0
    return scores


def score_http_requests(msm: dict[str, Any], fps: Fingerprints) -> Scores:
    """Legacy http_requests: body/header match with the Tor control, and fingerprints."""
    scores = init_scores()
    tk = _test_keys(msm)
    body_length_match = tk.get("body_length_match")
    headers_match = tk.get("headers_match")
    if (
        msm.get("control_failure")
        or msm.get("experiment_failure")
        or body_length_match is None
        or headers_match is None
    ):
        return failed(scores)
    if not (bool(body_length_match) and bool(headers_match)):
        scores["blocking_general"] = 1.0
    matches: list[Fingerprint] = []
    for req in get(tk, "requests", []):
        if get(get(get(req, "request", {}), "tor", {}), "is_tor"):
            continue
        resp = get(req, "response", {})
        matches.extend(fps.match_body(resp.get("body")))
        matches.extend(fps.match_headers(get(resp, "headers", {})))
    apply_matches(msm, scores, matches)
    return scores


def score_telegram(msm: dict[str, Any]) -> Scores:
    """telegram: unreachable DC endpoints, failed DC HTTP requests, web blocked."""
    tk = _test_keys(msm)
    web_blocking = tk.get("telegram_web_status") == "blocked"
    accessible, unreachable = _tcp_connect_counts(tk)
    http_ok = http_failed = 0
    web_failure = None
    for request in get(tk, "requests", ()):
        try:
            url = request["request"]["url"]
        except (KeyError, TypeError):
            return failed()
        if url in ("https://web.telegram.org/", "http://web.telegram.org/"):
            if request["failure"] is not None:
                web_failure = request["failure"]
            continue
        if request["failure"] is None:
            http_ok += 1
        else:
            http_failed += 1
    total = accessible + unreachable
    s = unreachable / total if total else 0.5
    http_total = http_ok + http_failed
    s += http_failed / http_total if http_total else 0.5
    if web_blocking:
        s += 1
    scores = init_scores()
    scores["blocking_general"] = s
    scores["web_failure"] = web_failure
    scores["accessible_endpoints"] = accessible
    scores["unreachable_endpoints"] = unreachable
    scores["http_success_cnt"] = http_ok
    scores["http_failure_cnt"] = http_failed
    if web_failure is not None:
        scores["msg"] = f"failure: {web_failure}"
    return scores


_FB_CONSISTENCY = tuple(
    f"facebook_{name}"
    for name in (
        "b_api_dns_consistent", "b_api_reachable", "b_graph_dns_consistent",
        "b_graph_reachable", "edge_dns_consistent", "edge_reachable",
        "external_cdn_dns_consistent", "external_cdn_reachable",
        "scontent_cdn_dns_consistent", "scontent_cdn_reachable", "star_dns_consistent",
        "star_reachable", "stun_dns_consistent",
    )
)
_FB_ANOMALY = ("facebook_tcp_blocking", "facebook_dns_blocking")
_FB_ALL_TRUE = tuple(
    f"facebook_{name}"
    for name in (
        "b_api_dns_consistent", "b_api_reachable", "b_graph_dns_consistent",
        "b_graph_reachable", "dns_blocking", "edge_dns_consistent", "edge_reachable",
        "star_dns_consistent", "star_reachable", "stun_dns_consistent",
    )
)


def score_facebook_messenger(msm: dict[str, Any]) -> Scores:
    """facebook_messenger: 0.5 per inconsistent or unreachable endpoint / blocking flag."""
    tk = _test_keys(msm)
    scores = init_scores()
    score = 0.0
    if not (
        all(tk.get(k) is True for k in _FB_ALL_TRUE) and tk.get("facebook_tcp_blocking") is False
    ):
        for key in _FB_CONSISTENCY:
            if tk.get(key) is False:
                score += 0.5
                scores[key] = False
        for key in _FB_ANOMALY:
            if tk.get(key) is True:
                score += 0.5
                scores[key] = True
    scores["blocking_general"] = score
    return scores


def score_hhfm(msm: dict[str, Any]) -> Scores:
    """http_header_field_manipulation: headers echoed by the helper differ from those sent."""
    tk = _test_keys(msm)
    scores = init_scores()
    try:
        first = tk["requests"][0]
        resp = first.get("response", {})
    except (KeyError, IndexError, TypeError, AttributeError):
        return failed(scores)
    if resp is None:
        return failed(scores)
    body = resp.get("body")
    if body is None:
        scores["total_tampering"] = True
        scores["blocking_general"] = 1.0
        scores["msg"] = "Empty body"
        return scores
    try:
        ctrl_headers = orjson.loads(body)["headers_dict"]
        ctrl = {(k, v[0]) for k, v in ctrl_headers.items()}
    except (orjson.JSONDecodeError, TypeError, KeyError, IndexError, AttributeError):
        scores["blocking_general"] = 1.0
        scores["msg"] = "Malformed ctrl_headers"
        return scores
    expected = set((first.get("request") or {}).get("headers", {}).items())
    ctrl.discard(("Connection", "close"))
    expected.discard(("Connection", "close"))
    if expected != ctrl:
        scores["blocking_general"] = 1.1
        scores["msg"] = f"{len(expected ^ ctrl)} unexpected header change"
    return scores


def score_http_invalid_request_line(msm: dict[str, Any]) -> Scores:
    """http_invalid_request_line: what the echo helper received differs from what was sent."""
    tk = _test_keys(msm)
    scores = init_scores()
    sent = get(tk, "sent", [])
    received = get(tk, "received", [])
    if not sent and not received:
        return failed(scores)
    if any(s != r for s, r in zip(sent, received, strict=False)):
        scores["blocking_general"] = 1.0
    return scores


def score_whatsapp(msm: dict[str, Any]) -> Scores:
    """whatsapp: web app and registration server reachable, and some endpoint reachable."""
    tk = _test_keys(msm)
    scores = init_scores()
    if _has_unknown_failure(tk):
        scores["accuracy"] = 0.0
    web_failure = tk.get("whatsapp_web_failure", "")
    if isinstance(web_failure, str) and "unknown_failure 'ascii' co" in web_failure:
        return failed(scores)
    requests = tk.get("requests", ()) or ()
    if not requests:
        return failed(scores)
    webapp = registration = None
    for req in requests:
        url = req.get("request", {}).get("url", "")
        if url == "https://web.whatsapp.com/":
            webapp = req.get("failure", True) in (None, "", False)
        elif url == "https://v.whatsapp.net/v2/register":
            registration = req.get("failure") is None
    if webapp is None or registration is None:
        return failed(scores)
    if webapp is not True or registration is not True:
        scores["blocking_general"] = 1.0
        return scores
    accessible, unreachable = _tcp_connect_counts(tk)
    if not accessible and not unreachable:
        scores["accuracy"] = 0.0
    elif not accessible:
        scores["blocking_general"] = 1.0
    scores["analysis"] = {
        "registration_server_accessible": registration,
        "whatsapp_web_accessible": webapp,
        "whatsapp_endpoints_accessible": accessible > 0,
    }
    return scores


def score_vanilla_tor(msm: dict[str, Any]) -> Scores:
    """vanilla_tor: bootstrap progress (100 % is OK; less scales the blocking score)."""
    tk = _test_keys(msm)
    scores = init_scores()
    logs = tk.get("tor_logs") or tk.get("tor_log")
    if logs is None:
        return failed(scores)
    for done in ("Bootstrapped 100%: Done", "Bootstrapped 100% (done): Done"):
        if done in logs:
            return scores
    progress = min(100.0, max(0.0, float(tk.get("tor_progress", 0))))
    if progress < 100:
        scores["blocking_general"] = 1.0 - progress * 0.004
    return scores


def score_ndt(msm: dict[str, Any]) -> Scores:
    """ndt: a performance test; no blocking score."""
    return {}


def score_riseupvpn(msm: dict[str, Any]) -> Scores:
    """riseupvpn: scoring disabled upstream (ooni/backend#745)."""
    return {}


def score_tcp_connect(msm: dict[str, Any]) -> Scores:
    """tcp_connect: connection errors 0.8, anything else that is not success 1.0."""
    tk = _test_keys(msm)
    if not msm.get("input"):
        return failed()
    scores = init_scores()
    result = tk.get("connection")
    if result == "success":
        return scores
    known = (
        "generic_timeout_error", "connection_refused_error", "connect_error",
        "tcp_timed_out_error",
    )
    scores["blocking_general"] = 0.8 if result in known else 1.0
    return scores


_DASH_FAILURES = (
    "connection_aborted", "json_parse_error", "eof_error", "json_processing_error",
    "http_request_failed", "connect_error", "generic_timeout_error", "broken_pipe",
    "connection_refused",
)


def score_dash(msm: dict[str, Any]) -> Scores:
    """dash: a performance test; failures make it inaccurate."""
    tk = _test_keys(msm)
    scores = init_scores()
    if tk == {}:
        return failed(scores)
    failure = tk.get("failure")
    if failure is None:
        return scores
    if failure in _DASH_FAILURES or "ssl_error" in str(failure):
        scores["blocking_general"] = 0.1
    else:
        scores["msg"] = "Probe error"
    return failed(scores)


def score_meek(msm: dict[str, Any]) -> Scores:
    """meek_fronted_requests_test: every fronted request answers 200 from the CDN."""
    tk = _test_keys(msm)
    scores = init_scores()
    requests = tk.get("requests", ()) or ()
    if not requests:
        scores["blocking_general"] = 1.0
        return failed(scores)
    for req in requests:
        resp = req.get("response", {})
        if resp is None or resp.get("code", 0) != 200:
            scores["blocking_general"] = 1.0
            return scores
        headers = resp.get("headers", {})
        if isinstance(headers, list):
            headers = {h[0]: h[1][0] for h in headers if h}
        server = headers.get("Server", "")
        if not (isinstance(server, str) and server.startswith("ECAcc ")):
            scores["blocking_general"] += 0.5
    return scores


def score_psiphon(msm: dict[str, Any]) -> Scores:
    """psiphon: a bootstrap failure is blocking; a missing resolver_ip a probe bug."""
    tk = _test_keys(msm)
    scores = init_scores()
    bootstrap_time = tk.get("bootstrap_time", 0)
    if tk.get("failure") is None:
        scores["accuracy"] = 0.0 if bootstrap_time == 0 else 1.0
    else:
        scores["accuracy"] = 1.0
        scores["blocking_general"] = 1.0
    if "resolver_ip" not in msm:
        scores["accuracy"] = 0.0
    scores["extra"] = {"test_runtime": msm.get("test_runtime"), "bootstrap_time": bootstrap_time}
    return scores


def score_tor(msm: dict[str, Any]) -> Scores:
    """tor: the share of reachable targets (directory authorities, bridges) that failed."""
    tk = _test_keys(msm)
    scores = init_scores()
    targets = tk.get("targets", {})
    if not targets or not isinstance(targets, dict):
        return failed(scores)
    blocked = success = 0
    for target in targets.values():
        if "failure" not in target or "network_events" not in target:
            return failed(scores)
        failure = target["failure"]
        if failure is None:
            success += 1
        elif failure is False:
            continue
        elif failure == "":
            raise ValueError("pbug empty Tor target failure")
        else:
            blocked += 1
    if blocked + success:
        scores["blocking_general"] = blocked / (blocked + success)
    else:
        scores["accuracy"] = 0.0
    scores["extra"] = {"test_runtime": msm.get("test_runtime")}
    return scores


def score_dns_consistency(msm: dict[str, Any]) -> Scores:
    """dns_consistency (legacy): not scored."""
    return init_scores()


def _version(value: Any) -> Version:
    return Version(str(value))


def score_signal(msm: dict[str, Any]) -> Scores:
    """signal: backend reachability, with the known-broken probe versions as failures."""
    tk = _test_keys(msm)
    scores = init_scores()
    if tk.get("failed_operation", True) or tk.get("failure", True):
        scores["accuracy"] = 0.0
    try:
        tv = _version(get(msm, "test_version", "0.0.0"))
        start = msm.get("measurement_start_time")
        if start is None:
            return failed(scores)
        start_time = datetime.strptime(start, "%Y-%m-%d %H:%M:%S")
        annotations = get(msm, "annotations", {})
        ev = _version(get(annotations, "engine_version", "0.0.0"))
    except (InvalidVersion, ValueError, TypeError, AttributeError):
        return failed(scores)
    if tv == Version("0.2.4"):
        return failed(scores)  # ooni/probe#2636
    if tv <= Version("0.2.3") and start_time >= datetime(2023, 11, 7):
        return failed(scores)  # ooni/probe#2627
    if tv < Version("0.2.2") and start_time >= datetime(2022, 10, 19):
        return failed(scores)
    if ev < Version("3.17.2") and start_time >= datetime(2023, 5, 2):
        return failed(scores)  # ooni/backend#679
    status = tk.get("signal_backend_status")
    if status == "blocked":
        scores["blocking_general"] = 1.0
        scores["analysis"] = {"signal_backend_failure": tk.get("signal_backend_failure")}
    elif status != "ok":
        scores["accuracy"] = 0.0
    return scores


def score_stunreachability(msm: dict[str, Any]) -> Scores:
    """stunreachability: any failure is blocking."""
    tk = _test_keys(msm)
    scores = init_scores()
    scores["extra"] = {"endpoint": tk.get("endpoint")}
    failure = tk.get("failure")
    if failure:
        scores["blocking_general"] = 1.0
        scores["extra"]["failure"] = failure
    return scores


def score_torsf(msm: dict[str, Any]) -> Scores:
    """torsf (Tor over Snowflake): a failure is blocking."""
    tk = _test_keys(msm)
    scores = init_scores()
    name = str(msm.get("software_name", "unknown"))
    if msm.get("software_version") == "3.8.3" and name.startswith("ooniprobe-android"):
        return failed(scores)
    if tk.get("failure"):
        scores["blocking_general"] = 1.0
        return scores
    scores["extra"] = {
        "bootstrap_time": tk.get("bootstrap_time"),
        "test_runtime": msm.get("test_runtime"),
    }
    return scores


def score_openvpn(msm: dict[str, Any]) -> Scores:
    """openvpn: ``test_keys.success`` false is blocking; missing is a failure."""
    tk = _test_keys(msm)
    scores = init_scores()
    success = tk.get("success")
    if success is False:
        scores["blocking_general"] = 1.0
    elif success is None:
        scores["accuracy"] = 0.0
    scores["extra"] = {"test_runtime": msm.get("test_runtime")}
    return scores


def score_browser_web(msm: dict[str, Any]) -> Scores:
    """browser_web: the page loaded (ok) or not (error)."""
    tk = _test_keys(msm)
    scores = init_scores()
    result = get(tk, "result", "")
    if result == "error":
        scores["blocking_general"] = 1.0
    elif result != "ok":
        scores["accuracy"] = 0.0
    scores["extra"] = {
        "browser_name": get(tk, "browser_name", ""),
        "load_time_ms": get(tk, "load_time_ms", 0),
    }
    return scores


SCORERS: dict[str, Callable[[dict[str, Any]], Scores]] = {
    "telegram": score_telegram,
    "facebook_messenger": score_facebook_messenger,
    "http_header_field_manipulation": score_hhfm,
    "http_invalid_request_line": score_http_invalid_request_line,
    "whatsapp": score_whatsapp,
    "vanilla_tor": score_vanilla_tor,
    "ndt": score_ndt,
    "tcp_connect": score_tcp_connect,
    "dash": score_dash,
    "meek_fronted_requests_test": score_meek,
    "psiphon": score_psiphon,
    "tor": score_tor,
    "dns_consistency": score_dns_consistency,
    "signal": score_signal,
    "stunreachability": score_stunreachability,
    "torsf": score_torsf,
    "riseupvpn": score_riseupvpn,
    "openvpn": score_openvpn,
    "browser_web": score_browser_web,
}
FINGERPRINT_SCORERS: dict[str, Callable[[dict[str, Any], Fingerprints], Scores]] = {
    "web_connectivity": score_web_connectivity,
    "http_requests": score_http_requests,
}
TEST_NAMES = frozenset(SCORERS) | frozenset(FINGERPRINT_SCORERS)


def score(msm: dict[str, Any], fps: Fingerprints) -> Scores:
    """Score one measurement; unknown tests and malformed test_keys get accuracy 0."""
    test_name = msm.get("test_name")
    try:
        if isinstance(test_name, str) and test_name in FINGERPRINT_SCORERS:
            return FINGERPRINT_SCORERS[test_name](msm, fps)
        if isinstance(test_name, str) and test_name in SCORERS:
            return SCORERS[test_name](msm)
    except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
        scores = failed()
        scores["msg"] = f"malformed measurement: {type(exc).__name__}: {exc}"[:200]
        return scores
    return failed()
