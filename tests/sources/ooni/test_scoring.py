"""Scorers on hand-made measurements: rules, odd types, unknown tests."""

from __future__ import annotations

from typing import Any

import pytest

from downlink.sources.ooni import scoring
from downlink.sources.ooni.fingerprints import Fingerprints, parse


def fp(**kw: Any) -> Any:
    base = {"name": "t", "scope": "isp", "location_found": "body", "pattern_type": "contains",
            "pattern": "BLOCKED", "expected_countries": ""}
    return parse({**base, **kw}, "test")


def wc(tk: Any, cc: str = "IT") -> dict[str, Any]:
    return {"test_name": "web_connectivity", "probe_cc": cc, "test_keys": tk}


def test_unknown_test_has_accuracy_zero() -> None:
    scores = scoring.score({"test_name": "no_such_test"}, Fingerprints([]))
    assert scores["accuracy"] == 0.0
    assert scores["blocking_general"] == 0.0


def test_every_listed_test_name_has_a_scorer() -> None:
    listed = {
        "telegram", "facebook_messenger", "http_header_field_manipulation",
        "http_invalid_request_line", "whatsapp", "vanilla_tor", "web_connectivity", "ndt",
        "tcp_connect", "dash", "meek_fronted_requests_test", "psiphon", "tor",
        "http_requests", "dns_consistency", "signal", "stunreachability", "torsf",
        "riseupvpn", "openvpn", "browser_web",
    }
    assert scoring.TEST_NAMES == listed


@pytest.mark.parametrize("tk", [[1, 2], "text", 5, {"requests": "x"}, {"queries": [7]}])
@pytest.mark.parametrize("test_name", sorted(scoring.TEST_NAMES))
def test_wrong_types_never_raise(test_name: str, tk: Any) -> None:
    msm = {"test_name": test_name, "test_keys": tk, "input": "x", "probe_cc": "IT",
           "measurement_start_time": "2023-01-01 00:00:00"}
    scores = scoring.score(msm, Fingerprints([fp()]))
    assert isinstance(scores, dict)


def test_malformed_gives_a_message() -> None:
    scores = scoring.score({"test_name": "telegram", "test_keys": [1]}, Fingerprints([]))
    assert scores["accuracy"] == 0.0
    assert scores["msg"].startswith("malformed measurement")


@pytest.mark.parametrize("blocking", ["tcp_ip", "dns", "http-diff", "http-failure"])
def test_web_connectivity_probe_verdict(blocking: str) -> None:
    scores = scoring.score(wc({"blocking": blocking, "accessible": False}), Fingerprints([]))
    assert scores["blocking_general"] == 1.0
    assert scores["analysis"] == {"blocking_type": blocking}
    assert "accuracy" not in scores


def test_web_connectivity_unsupported_blocking_value() -> None:
    scores = scoring.score(wc({"blocking": "weird"}), Fingerprints([]))
    assert scores["accuracy"] == 0.0
    assert scores["analysis"] == {"msg": "Unsupported blocking type"}


def test_unknown_failure_makes_it_inaccurate() -> None:
    tk = {"blocking": False, "accessible": True, "http_experiment_failure": "unknown_failure x"}
    assert scoring.score(wc(tk), Fingerprints([]))["accuracy"] == 0.0


def body_tk(body: Any, headers: Any = None) -> dict[str, Any]:
    return {"blocking": None, "accessible": None,
            "requests": [{"response": {"body": body, "headers": headers or {}}}]}


@pytest.mark.parametrize(
    ("pattern_type", "pattern", "body", "hit"),
    [
        ("contains", "BLOCKED", "xx BLOCKED yy", True),
        ("contains", "BLOCKED", "xx blocked yy", False),
        ("prefix", "<html>BLOCK", "<html>BLOCKED", True),
        ("prefix", "BLOCK", "<html>BLOCKED", False),
        ("full", "exact", "exact", True),
        ("full", "exact", "exact ", False),
        ("regexp", "Sp.*er Gate", "URL x Spider Gate", True),
        ("regexp", "^nope$", "URL x Spider Gate", False),
    ],
)
def test_body_pattern_types(pattern_type: str, pattern: str, body: str, hit: bool) -> None:
    fps = Fingerprints([fp(pattern_type=pattern_type, pattern=pattern)])
    scores = scoring.score(wc(body_tk(body)), fps)
    assert ("fingerprints" in scores) is hit
    # blocking null: a match rescues the measurement (isp scope confirms anywhere)
    assert scores.get("confirmed", False) is hit
    assert (scores.get("accuracy", 1.0) == 1.0) is hit


def test_base64_body_is_decoded() -> None:
    fps = Fingerprints([fp()])
    body = {"format": "base64", "data": "eHggQkxPQ0tFRCB5eQ=="}  # "xx BLOCKED yy"
    assert "fingerprints" in scoring.score(wc(body_tk(body)), fps)


@pytest.mark.parametrize(
    ("pattern_type", "pattern", "value", "hit"),
    [
        ("full", "http://block.example/", "http://block.example/", True),
        ("prefix", "http://block.", "http://block.example/x", True),
        ("contains", "block.example", "http://www.block.example/", True),
        ("regexp", r"block\.ex", "http://block.example/", True),
        ("prefix", "http://other", "http://block.example/x", False),
    ],
)
def test_header_pattern_types(pattern_type: str, pattern: str, value: str, hit: bool) -> None:
    fps = Fingerprints([fp(location_found="header.location", pattern_type=pattern_type,
                           pattern=pattern)])
    scores = scoring.score(wc(body_tk(None, {"Location": value})), fps)
    assert ("fingerprints" in scores) is hit


def test_nested_dict_header_value_is_skipped() -> None:
    fps = Fingerprints([fp(location_found="header.server", pattern_type="prefix", pattern="x")])
    scores = scoring.score(wc(body_tk(None, {"Server": {"a": {"b": 1}}})), fps)
    assert "fingerprints" not in scores


def test_confirmation_rules() -> None:
    fp_country = fp(scope="fp", expected_countries="DE,IT")
    assert scoring.is_confirmed("IT", fp_country)
    assert not scoring.is_confirmed("FR", fp_country)
    assert not scoring.is_confirmed("ZZ", fp(scope="prod", expected_countries="ZZ"))
    assert scoring.is_confirmed("FR", fp(scope="nat"))


@pytest.mark.parametrize(
    ("scope", "bucket"),
    [("inst", "local"), ("isp", "isp"), ("nat", "country"), ("prod", "general")],
)
def test_scope_sets_its_locality(scope: str, bucket: str) -> None:
    fps = Fingerprints([fp(scope=scope, expected_countries="IT")])
    scores = scoring.score(wc(body_tk("BLOCKED")), fps)
    assert scores[f"blocking_{bucket}"] >= 1.0
    assert scores["confirmed"] is True


def test_dns_answer_match() -> None:
    fps = Fingerprints([fp(location_found="dns", pattern_type="full", pattern="10.10.34.36",
                           scope="nat", expected_countries="IR")])
    tk = {"blocking": "dns", "accessible": False,
          "queries": [{"answers": [{"ipv4": "10.10.34.36"}, {"hostname": "x"}]}]}
    scores = scoring.score(wc(tk, "IR"), fps)
    assert scores["blocking_general"] == 2.0 and scores["blocking_country"] == 1.0


def test_tcp_connect_and_dash() -> None:
    tc = {"test_name": "tcp_connect", "input": "1.2.3.4:80"}
    assert scoring.score({**tc, "test_keys": {"connection": "success"}},
                         Fingerprints([]))["blocking_general"] == 0.0
    assert scoring.score({**tc, "test_keys": {"connection": "connect_error"}},
                         Fingerprints([]))["blocking_general"] == 0.8
    assert scoring.score({**tc, "test_keys": {"connection": "other"}},
                         Fingerprints([]))["blocking_general"] == 1.0
    dash = scoring.score({"test_name": "dash", "test_keys": {"failure": "eof_error"}},
                         Fingerprints([]))
    assert dash["blocking_general"] == 0.1 and dash["accuracy"] == 0.0


def test_facebook_messenger_counts_inconsistencies() -> None:
    tk = {"facebook_b_api_reachable": False, "facebook_tcp_blocking": True}
    scores = scoring.score({"test_name": "facebook_messenger", "test_keys": tk},
                           Fingerprints([]))
    assert scores["blocking_general"] == 1.0
