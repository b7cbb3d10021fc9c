"""Golden tests: every fixture measurement scores as OONI's fastpath tests expect.

The expected outcomes are the table of shared/fixtures/README-ooni-fuel.md. Each
measurement is scored as if received one minute after it started (the date-sanity
rule would otherwise fail measurements years old).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from downlink.sources.ooni import fastpath
from downlink.sources.ooni.fingerprints import Fingerprints
from downlink.sources.ooni.submission import mint_uid
from tests.sources.ooni.conftest import fixture_measurements

MEASUREMENTS = fixture_measurements()

# file -> (anomaly, confirmed, failure)
EXPECTED = {
    "20250527233111.802678_ID_webconnectivity_5a37ec909dbf14e3.json": (True, True, False),
    "report1.json": (False, False, False),
    "web_connectivity_ir_fp.json": (True, True, False),
    "web_connectivity_null.json": (False, False, True),
    "web_connectivity_null2.json": (False, False, True),
    "web_connectivity_odd_hdr.json": (True, False, False),
    "web_connectivity_no_body.json": (False, False, False),
    "test_keys_none.json": (False, False, True),
    "telegram_nourl.json": (False, False, True),
    "whatsapp.json": (False, False, False),
    "vanilla_tor.json": (True, False, False),
    "vanilla_tor_ok.json": (False, False, False),
    "tor.json": (False, False, False),
    "torsf_1.json": (True, False, False),
    "torsf_2.json": (False, False, False),
    "openvpn.json": (False, False, False),
    "browser_web.json": (False, False, False),
    "http_header_field_manipulation_1.json": (False, False, True),
    "http_requests_1.json": (False, False, True),
    "meek.json": (True, False, False),
    "signal_2627.json": (False, False, True),
}


def row_for(msm: dict[str, Any], fps: Fingerprints) -> dict[str, Any]:
    start = fastpath.parse_time(msm["measurement_start_time"])
    assert start is not None
    uid = mint_uid(datetime.fromtimestamp(start + 60, UTC), msm["probe_cc"], msm["test_name"], b"")
    stored = orjson.dumps({"format": "json", "content": msm, "is_verified": "u"})
    row = fastpath.build_row(stored, uid, "rid_from_url", fps)
    assert row is not None
    return row


def test_every_fixture_has_an_expectation() -> None:
    assert set(MEASUREMENTS) == set(EXPECTED)
    assert len(EXPECTED) == 21


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_flags(name: str, fps: Fingerprints) -> None:
    row = row_for(MEASUREMENTS[name], fps)
    assert (row["anomaly"], row["confirmed"], row["msm_failure"]) == EXPECTED[name]


def test_indonesian_block_page_matches_an_http_fingerprint(fps: Fingerprints) -> None:
    name = "20250527233111.802678_ID_webconnectivity_5a37ec909dbf14e3.json"
    scores = orjson.loads(row_for(MEASUREMENTS[name], fps)["scores"])
    locations = {fp["location_found"] for fp in scores["fingerprints"]}
    assert locations & {"body", "header.location"}


def test_iran_dns_fingerprint(fps: Fingerprints) -> None:
    row = row_for(MEASUREMENTS["web_connectivity_ir_fp.json"], fps)
    scores = orjson.loads(row["scores"])
    assert scores["blocking_country"] == 1.0
    assert scores["blocking_general"] == 2.0
    assert scores["confirmed"] is True
    assert [fp["name"] for fp in scores["fingerprints"]] == ["ooni.ir_10dot10_ipv4_1"]
    assert scores["fingerprints"][0]["scope"] == "nat"
    assert row["blocking_type"] == "dns"


def test_odd_header_is_a_dns_anomaly(fps: Fingerprints) -> None:
    row = row_for(MEASUREMENTS["web_connectivity_odd_hdr.json"], fps)
    assert orjson.loads(row["scores"])["blocking_general"] == 1.0
    assert row["blocking_type"] == "dns"


def test_null2_full_row(fps: Fingerprints) -> None:
    msm = MEASUREMENTS["web_connectivity_null2.json"]
    row = row_for(msm, fps)
    assert row["msm_failure"] is True
    assert row["test_helper_address"] == "https://0.th.ooni.org"
    assert row["test_helper_type"] == "https"
    assert row["report_id"] == msm["report_id"]
    assert row["input"] == "https://yooz.ir/"
    assert row["domain"] == "yooz.ir"
    assert (row["probe_cc"], row["probe_asn"]) == ("IR", 197207)
    assert row["measurement_start_time"] == fastpath.parse_time("2022-08-15 19:04:21")


def test_no_body_scores_zero(fps: Fingerprints) -> None:
    scores = orjson.loads(row_for(MEASUREMENTS["web_connectivity_no_body.json"], fps)["scores"])
    assert all(scores[f"blocking_{k}"] == 0 for k in ("general", "global", "country", "isp"))


def test_vanilla_tor_score(fps: Fingerprints) -> None:
    scores = orjson.loads(row_for(MEASUREMENTS["vanilla_tor.json"], fps)["scores"])
    assert scores["blocking_general"] == pytest.approx(0.98)


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("tor.json", {"test_runtime"}),
        ("torsf_2.json", {"bootstrap_time", "test_runtime"}),
        ("browser_web.json", {"browser_name", "load_time_ms"}),
    ],
)
def test_extra(name: str, keys: set[str], fps: Fingerprints) -> None:
    scores = orjson.loads(row_for(MEASUREMENTS[name], fps)["scores"])
    assert set(scores["extra"]) == keys


def test_browser_web_platform_unset(fps: Fingerprints) -> None:
    assert row_for(MEASUREMENTS["browser_web.json"], fps)["platform"] == "unset"


def test_meek_list_input(fps: Fingerprints) -> None:
    row = row_for(MEASUREMENTS["meek.json"], fps)
    assert row["input"] == "{a0.awsstatic.com,d2cly7j4zqgua7.cloudfront.net}"
    assert row["domain"] == "a0.awsstatic.com"
    assert row["blocking_general"] == 1.0


def test_torsf_without_report_id_takes_the_one_from_the_url(fps: Fingerprints) -> None:
    assert row_for(MEASUREMENTS["torsf_1.json"], fps)["report_id"] == "rid_from_url"


def test_rows_are_deterministic(fps: Fingerprints) -> None:
    for msm in MEASUREMENTS.values():
        assert row_for(msm, fps) == row_for(msm, fps)


def _uid_at(when: str) -> str:
    return mint_uid(datetime.fromisoformat(when).replace(tzinfo=UTC), "IT", "tor", b"")


@pytest.mark.parametrize(
    ("received", "msg"),
    [
        ("2020-01-16 13:00:00", "Measurement start time from the future"),
        ("2021-01-17 15:12:30", "Measurement start time too old"),
    ],
)
def test_date_sanity(received: str, msg: str, fps: Fingerprints) -> None:
    stored = orjson.dumps({"format": "json", "content": MEASUREMENTS["tor.json"]})
    row = fastpath.build_row(stored, _uid_at(received), "r", fps)
    assert row is not None
    assert row["msm_failure"] is True
    assert orjson.loads(row["scores"])["msg"] == msg


def test_date_sanity_inside_the_window(fps: Fingerprints) -> None:
    stored = orjson.dumps({"format": "json", "content": MEASUREMENTS["tor.json"]})
    row = fastpath.build_row(stored, _uid_at("2020-01-16 15:40:00"), "r", fps)
    assert row is not None and row["msm_failure"] is False


def test_not_a_measurement() -> None:
    from downlink.sources.ooni.fingerprints import Fingerprints

    empty = Fingerprints([])
    assert fastpath.build_row(b"[1]", "u", "r", empty) is None
    assert fastpath.build_row(b"not json", "u", "r", empty) is None
    assert fastpath.build_row(b'{"format":"yaml","content":"a: 1"}', "u", "r", empty) is None
