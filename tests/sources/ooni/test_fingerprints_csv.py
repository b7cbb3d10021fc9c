"""Fingerprints from the blocking-fingerprints repository's CSVs: parsed as the JSON
fixtures are, loaded from the CLI, picked up by a running server, applied on rescoring."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, select

from downlink.cli.main import cli
from downlink.sources.ooni import fingerprint_store
from downlink.sources.ooni.fingerprints import read_bytes, read_file
from downlink.sources.ooni.tables import fastpath as fastpath_table
from downlink.store.engine import _normalise
from downlink.testing.consumers import wait_caught_up
from tests.sources.ooni.conftest import MEASUREMENTS, fixture_measurements, ooni_server
from tests.sources.ooni.test_probe_services_http import open_report

FINGERPRINTS = MEASUREMENTS.parent / "fingerprints"
# The columns of fingerprints_dns.csv and fingerprints_http.csv in the repository.
COLUMNS = ("name", "scope", "other_names", "location_found", "pattern_type", "pattern",
           "confidence_no_fp", "expected_countries", "source", "exp_url", "notes")
IR_DNS = "ooni.ir_10dot10_ipv4_1"  # matches web_connectivity_ir_fp.json's answer


def fixture(kind: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads(
        (FINGERPRINTS / f"fingerprints_{kind}.json").read_text())
    return entries


def as_csv(entries: list[dict[str, Any]], columns: tuple[str, ...] = COLUMNS) -> bytes:
    """Entries written as the repository writes its CSVs (csv.DictWriter, quoting what
    holds commas or quotes), with its source/exp_url/notes columns."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for e in entries:
        writer.writerow({**e, "source": "ooni", "exp_url": "", "notes": f"note, {e['name']}"})
    return out.getvalue().encode()


@pytest.mark.parametrize("kind", ["dns", "http"])
def test_repository_csv_gives_the_fixture_fingerprints(kind: str) -> None:
    from_json = read_file(FINGERPRINTS / f"fingerprints_{kind}.json")
    from_csv = read_bytes(as_csv(fixture(kind)), f"fingerprints_{kind}.csv")
    assert from_csv == from_json
    assert len(from_csv) == {"dns": 150, "http": 1699}[kind]


def test_older_dns_csv_without_location_found() -> None:
    columns = tuple(c for c in COLUMNS if c != "location_found")
    parsed = read_bytes(as_csv(fixture("dns"), columns), "fingerprints_dns.csv")
    assert len(parsed) == 150 and {fp.location_found for fp in parsed} == {"dns"}


def test_blank_scope_and_zz_countries_as_in_the_repository() -> None:
    text = (",".join(COLUMNS) + "\n"
            'test.zz_product,,,dns,full,192.0.2.8,5,",ZZ",test,,"DNS filter, a product"\n')
    (fp,) = read_bytes(text.encode(), "fingerprints_dns.csv")
    assert (fp.scope, fp.expected_countries, fp.pattern) == ("", (), "192.0.2.8")


def _replacement_dns() -> list[dict[str, Any]]:
    """The fixture DNS fingerprints with the one web_connectivity_ir_fp.json matches
    replaced by an institution-scoped one, and one without a scope."""
    entries = [e for e in fixture("dns") if e["name"] != IR_DNS]
    assert len(entries) == 149
    entries.append({"name": "test.ir_inst", "scope": "inst", "other_names": "",
                    "location_found": "dns", "pattern_type": "full", "pattern": "10.10.34.36",
                    "confidence_no_fp": 7, "expected_countries": "IR"})
    entries.append({"name": "test.zz_product", "scope": "", "other_names": "",
                    "location_found": "dns", "pattern_type": "full", "pattern": "192.0.2.8",
                    "confidence_no_fp": 5, "expected_countries": ",ZZ"})
    return entries


def _scores(db_url: str) -> dict[str, dict[str, Any]]:
    engine = create_engine(_normalise(db_url))
    try:
        with engine.connect() as conn:
            found = conn.execute(select(fastpath_table.c.measurement_uid,
                                        fastpath_table.c.scores)).all()
    finally:
        engine.dispose()
    return {uid: orjson.loads(scores) for uid, scores in found}


def _submit(url: str, msm: dict[str, Any]) -> str:
    rid = open_report(url, msm)
    r = httpx.post(f"{url}/report/{rid}", json={"format": "json", "content": msm})
    assert r.status_code == 200, r.text
    uid: str = r.json()["measurement_uid"]
    return uid


@pytest.mark.postgres
def test_csv_load_reaches_a_running_server_and_rescoring(db_url: str, tmp_path: Path) -> None:
    msm = fixture_measurements()["web_connectivity_ir_fp.json"]
    server = ooni_server(db_url, tmp_path / "server.log")
    try:
        first = _submit(server.url, msm)
        wait_caught_up(server.url)
        before = _scores(db_url)[first]
        assert [fp["name"] for fp in before["fingerprints"]] == [IR_DNS]
        assert (before["blocking_country"], before["blocking_local"]) == (1.0, 0.0)

        dns, http = tmp_path / "fingerprints_dns.csv", tmp_path / "fingerprints_http.csv"
        dns.write_bytes(as_csv(_replacement_dns()))
        http.write_bytes(as_csv(fixture("http")))
        loaded = CliRunner().invoke(cli, ["ooni", "fingerprints", "load", str(dns), str(http),
                                          "--database-url", db_url])
        assert loaded.exit_code == 0, loaded.output
        assert "loaded 151 DNS and 1699 HTTP fingerprints (version 1)" in loaded.output
        engine = create_engine(_normalise(db_url))
        try:
            with engine.connect() as conn:
                stored = fingerprint_store.current(conn)
        finally:
            engine.dispose()
        assert stored.items == read_file(dns) + read_file(http)  # replaced, not merged
        assert IR_DNS not in {fp.name for fp in stored.items}

        # The running server (not restarted) scores the next submission with them.
        second = _submit(server.url, msm)
        wait_caught_up(server.url)
        scores = _scores(db_url)
        after = scores[second]
        assert [fp["name"] for fp in after["fingerprints"]] == ["test.ir_inst"]
        assert after["fingerprints"][0]["confidence_no_fp"] == 7
        assert (after["blocking_country"], after["blocking_local"]) == (0.0, 1.0)
        assert after["blocking_general"] == 2.0 and after["confirmed"] is True
        assert scores[first] == before  # scored rows stay until rescored

        # Rescoring the range applies them to what was scored before the load.
        today = datetime.now(UTC)
        rescored = CliRunner().invoke(cli, [
            "reprocess", "--source", "ooni", "--since", today.strftime("%Y-%m-%d"),
            "--until", (today + timedelta(days=1)).strftime("%Y-%m-%d"),
            "--database-url", db_url])
        assert rescored.exit_code == 0, rescored.output
        assert _scores(db_url)[first] == after
    finally:
        server.stop()


@pytest.mark.parametrize(("cc", "confirmed"), [("RU", True), ("IT", False)])
def test_a_blank_scope_match_confirms_only_in_its_countries(cc: str, confirmed: bool) -> None:
    from downlink.sources.ooni import scoring
    from downlink.sources.ooni.fingerprints import Fingerprints

    text = ",".join(COLUMNS) + "\ntest.ru_product,,,dns,full,192.0.2.7,5,RU,test,,\n"
    fps = Fingerprints(read_bytes(text.encode(), "fingerprints_dns.csv"))
    msm = {"test_name": "web_connectivity", "probe_cc": cc, "test_keys": {
        "blocking": False, "accessible": True,
        "queries": [{"answers": [{"answer_type": "A", "ipv4": "192.0.2.7"}]}]}}
    scores = scoring.score(msm, fps)
    assert [fp["name"] for fp in scores["fingerprints"]] == ["test.ru_product"]
    assert scores.get("confirmed", False) is confirmed
    assert scores["blocking_general"] == (1.0 if confirmed else 0.0)
