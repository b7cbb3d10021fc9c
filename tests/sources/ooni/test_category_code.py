"""category_code: the citizenlab test lists loaded from the CLI, filtered and grouped by.

Real HTTP against a server on SQLite and PostgreSQL with the 21 fixture measurements.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from downlink.cli.main import cli
from downlink.testing.live import LiveServer
from tests.sources.ooni.test_api_http import get, load

pytestmark = pytest.mark.postgres

HEADER = "url,category_code,category_description,date_added,source,notes\n"
LISTS = {
    "global.csv": "http://archive.org,CULTR,Culture,2014-04-15,,\n"
                  "https://www.facebook.com/,GRP,Social,2014-04-15,,\n"
                  "http://www.collegehumor.com/,COMM,Commerce,2014-04-15,,\n",
    "ir.csv": "https://yooz.ir/,NEWS,News,2017-01-01,,\n",
    "us.csv": "http://mail.google.com,COMT,Communication tools,2014-04-15,,\n",
    # A CN measurement's URL in Italy's list: found by search (url = input), not counted
    # by the aggregation (the list's country must be the probe's, or global).
    "it.csv": "http://www.efindlove.com,DATE,Dating,2014-04-15,,\n",
}


def _load_lists(db_url: str, tmp_path: Path) -> None:
    files = []
    for name, body in LISTS.items():
        path = tmp_path / name
        path.write_text(HEADER + body)
        files.append(str(path))
    result = CliRunner().invoke(cli, ["ooni", "testlists", "load", *files,
                                      "--database-url", db_url])
    assert result.exit_code == 0, result.output
    assert "loaded 6 URLs from 4 test list(s)" in result.output


def test_category_code_filters_and_groups(ooni: LiveServer, db_url: str, tmp_path: Path) -> None:
    uids, msms = load(ooni)
    _load_lists(db_url, tmp_path)
    since = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%d")
    until = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")

    found = get(ooni, "/api/v1/measurements", category_code="NEWS").json()["results"]
    assert [r["measurement_uid"] for r in found] == [uids["web_connectivity_null2.json"]]
    found = get(ooni, "/api/v1/measurements", category_code="DATE,COMT").json()["results"]
    assert sorted(r["input"] for r in found) == ["http://mail.google.com",
                                                 "http://www.efindlove.com"]
    # input overrides category_code, as in OONI.
    found = get(ooni, "/api/v1/measurements", category_code="NEWS",
                input="http://archive.org").json()["results"]
    assert [r["input"] for r in found] == ["http://archive.org"]

    agg = get(ooni, "/api/v1/aggregation", axis_x="category_code", since=since,
              until=until).json()
    counts = {r["category_code"]: r["measurement_count"] for r in agg["result"]}
    assert counts == {"COMM": 1, "COMT": 1, "CULTR": 1, "GRP": 1, "NEWS": 1}
    by_cc = get(ooni, "/api/v1/aggregation", axis_x="probe_cc", category_code="NEWS,GRP",
                since=since, until=until).json()["result"]
    assert [(r["probe_cc"], r["measurement_count"]) for r in by_cc] == [("IR", 2)]
    csv_text = get(ooni, "/api/v1/aggregation", axis_x="category_code", axis_y="probe_cc",
                   since=since, until=until, format="CSV").text
    assert "category_code,probe_cc,anomaly_count" in csv_text.splitlines()[0]
    assert "NEWS,IR," in csv_text

    for path in ("/api/v1/measurements", "/api/v1/aggregation"):
        bad = get(ooni, path, category_code="news")
        assert bad.status_code == 400
        assert "category_code" in bad.text


def test_testlists_load_errors(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 't.db'}"
    wrong = tmp_path / "xyz.csv"
    wrong.write_text(HEADER)
    out = CliRunner().invoke(cli, ["ooni", "testlists", "load", str(wrong), "--database-url", db])
    assert out.exit_code != 0 and "xyz.csv: the file name must be a country code" in out.output
    bad = tmp_path / "it.csv"
    bad.write_text(HEADER + "http://x.example,lower,,,,\n")
    out = CliRunner().invoke(cli, ["ooni", "testlists", "load", str(bad), "--database-url", db])
    assert out.exit_code != 0 and "it.csv line 2: needs a URL and a category code" in out.output
