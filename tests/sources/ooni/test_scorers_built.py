"""Golden-style tests of the scorers no fixture measurement covers: ndt, riseupvpn,
psiphon, dns_consistency and stunreachability.

Each measurement is built from the OONI spec's field descriptions of its test (the
common fields, and ``test_keys`` as the nettest spec names them) and scored to its
fastpath row, received a minute after it started; the flags follow reference A2's
rules: anomaly = blocking_general > 0.5, failure = accuracy < 0.5 (1.0 by default),
confirmed = scores.confirmed. The scorers' own rules are those of OONI's fastpath.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from downlink.sources.ooni import fastpath
from downlink.sources.ooni.fingerprints import Fingerprints
from downlink.sources.ooni.submission import mint_uid

START = "2024-03-01 10:00:00"


def measurement(test_name: str, test_keys: Any, **extra: Any) -> dict[str, Any]:
    """A measurement with the common fields of OONI's data format (df-000-base)."""
    return {
        "annotations": {"architecture": "arm64", "engine_name": "ooniprobe-engine",
                        "engine_version": "3.20.0", "platform": "android"},
        "data_format_version": "0.2.0",
        "input": None,
        "measurement_start_time": START,
        "probe_asn": "AS30722",
        "probe_cc": "IT",
        "probe_network_name": "Vodafone Italia S.p.A.",
        "report_id": f"20240301T095959Z_{test_name.replace('_', '')}_IT_30722_n1_AbCdEfGhIjKlMnOp",
        "resolver_asn": "AS30722",
        "resolver_ip": "91.80.36.88",
        "software_name": "ooniprobe-android",
        "software_version": "3.8.5",
        "test_name": test_name,
        "test_runtime": 12.5,
        "test_start_time": "2024-03-01 09:59:59",
        "test_version": "0.1.0",
        "test_keys": test_keys,
        **extra,
    }


def row(msm: dict[str, Any]) -> dict[str, Any]:
    stored = orjson.dumps({"format": "json", "content": msm, "is_verified": "u"})
    start = fastpath.parse_time(msm["measurement_start_time"]) or 0.0
    uid = mint_uid(datetime.fromtimestamp(start + 60, UTC), msm["probe_cc"],
                   msm["test_name"], stored)
    built = fastpath.build_row(stored, uid, "r", Fingerprints([]))
    assert built is not None
    return built


def flags(r: dict[str, Any]) -> tuple[bool, bool, bool]:
    return r["anomaly"], r["confirmed"], r["msm_failure"]


NDT_KEYS = {  # ts-022-ndt (ndt7): the summary the probe computes, and no failure
    "protocol": 7, "server": {"hostname": "ndt-mlab1-mil04.mlab-oti.measurement-lab.org",
                              "site": "mil04"},
    "summary": {"avg_rtt": 21.4, "download": 48210.0, "upload": 11904.0, "mss": 1448,
                "max_rtt": 65.1, "min_rtt": 19.8, "ping": 19.8, "retransmit_rate": 0.002},
    "failure": None,
}


@pytest.mark.parametrize("keys", [NDT_KEYS, {**NDT_KEYS, "failure": "generic_timeout_error"}])
def test_ndt_is_never_scored(keys: dict[str, Any]) -> None:
    """A performance test: OONI's scorer returns no scores at all, so neither a slow
    nor a failed ndt is an anomaly or a failure."""
    r = row(measurement("ndt", keys, test_version="0.9.0"))
    assert orjson.loads(r["scores"]) == {}
    assert flags(r) == (False, False, False)
    assert r["blocking_general"] == 0.0


@pytest.mark.parametrize("keys", [
    {"api_failure": None, "api_status": "ok", "ca_cert_status": True, "failing_gateways": [],
     "transport_status": {"openvpn": "ok", "obfs4": "ok"}},
    {"api_failure": "generic_timeout_error", "api_status": "blocked", "ca_cert_status": False,
     "failing_gateways": [{"ip": "198.252.153.28", "port": 443, "transport_type": "openvpn"}],
     "transport_status": {"openvpn": "blocked", "obfs4": "blocked"}},
])
def test_riseupvpn_scoring_is_disabled(keys: dict[str, Any]) -> None:
    """OONI disabled riseupvpn scoring on 2023-10-17 (backend #745): even a blocked API
    and blocked transports give empty scores and no flag."""
    r = row(measurement("riseupvpn", keys))
    assert orjson.loads(r["scores"]) == {}
    assert flags(r) == (False, False, False)


@pytest.mark.parametrize(("keys", "without_resolver", "expected", "accuracy"), [
    # Bootstrapped, no failure: a working Psiphon.
    ({"bootstrap_time": 3.2, "failure": None}, False, (False, False, False), 1.0),
    # A failure (bootstrapping or using the tunnel): blocking, and accurate.
    ({"bootstrap_time": 0, "failure": "generic_timeout_error"}, False,
     (True, False, False), 1.0),
    # No failure but no bootstrap time: an invalid measurement.
    ({"bootstrap_time": 0, "failure": None}, False, (False, False, True), 0.0),
    # resolver_ip missing from the measurement: a probe bug, a failure whatever else.
    ({"bootstrap_time": 3.2, "failure": None}, True, (False, False, True), 0.0),
])
def test_psiphon(keys: dict[str, Any], without_resolver: bool,
                 expected: tuple[bool, bool, bool], accuracy: float) -> None:
    msm = measurement("psiphon", {**keys, "max_runtime": 60, "socksproxy": None})
    if without_resolver:
        del msm["resolver_ip"]
    r = row(msm)
    scores = orjson.loads(r["scores"])
    assert flags(r) == expected
    assert scores["accuracy"] == accuracy
    assert scores["extra"] == {"test_runtime": 12.5, "bootstrap_time": keys["bootstrap_time"]}


@pytest.mark.parametrize("inconsistent", [[], ["8.8.8.8"]])
def test_dns_consistency_is_not_scored(inconsistent: list[str]) -> None:
    """Legacy dns_consistency: all-zero scores, whatever the resolvers answered."""
    keys = {"control_resolver": "8.8.8.8:53", "errors": {"8.8.8.8": "no_answer"},
            "inconsistent": inconsistent, "queries": [
                {"query_type": "A", "hostname": "example.com", "resolver_hostname": "8.8.8.8",
                 "answers": [{"answer_type": "A", "ipv4": "10.10.34.36"}], "failure": None}]}
    r = row(measurement("dns_consistency", keys, input="http://example.com/",
                        software_name="ooniprobe", software_version="1.4.2"))
    scores = orjson.loads(r["scores"])
    assert scores == {f"blocking_{x}": 0.0
                      for x in ("general", "global", "country", "isp", "local")}
    assert flags(r) == (False, False, False)
    assert r["domain"] == "example.com"


@pytest.mark.parametrize(("failure", "expected"), [
    (None, (False, False, False)),
    ("generic_timeout_error", (True, False, False)),
])
def test_stunreachability(failure: str | None, expected: tuple[bool, bool, bool]) -> None:
    """Any failure reaching the STUN endpoint is blocking; the endpoint is kept."""
    keys = {"endpoint": "stun.l.google.com:19302", "failure": failure,
            "network_events": [], "queries": []}
    r = row(measurement("stunreachability", keys, input="stun://stun.l.google.com:19302"))
    scores = orjson.loads(r["scores"])
    assert flags(r) == expected
    assert scores["blocking_general"] == (1.0 if failure else 0.0)
    assert scores["extra"] == ({"endpoint": "stun.l.google.com:19302"}
                               | ({"failure": failure} if failure else {}))
    assert "accuracy" not in scores
