"""Pages fed by derived data say how fresh it is; their JSON twins are unchanged."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from downlink.pipeline.consumers import ConsumerRunner
from downlink.testing.consumers import wait_caught_up
from tests.wire import v2_headers

DERIVED = ("/stats", "/builds", "/crashes", "/mce", "/thermal", "/population")


def test_derived_pages_say_they_are_up_to_date_once_the_consumers_caught_up(
    client: TestClient,
) -> None:
    assert client.post("/v2/collector", headers=v2_headers(), content=b"x").status_code == 201
    wait_caught_up(client)
    deadline = time.monotonic() + 30
    for path in DERIVED:
        html = client.get(path).text
        # The lag is refreshed about once a second (later under load): wait for the
        # refresh that follows the catch-up, page by page.
        while "Up to date" not in html:
            assert time.monotonic() < deadline, f"no up-to-date freshness mark on {path}"
            time.sleep(0.1)
            html = client.get(path).text
        assert 'id="freshness"' in html, path
        assert "freshness" not in client.get(path + ".json").text, path
    assert 'id="freshness"' not in client.get("/records").text  # raw records: always fresh


def test_freshness_reports_the_worst_lag_and_the_errors() -> None:
    runner = ConsumerRunner(store=None, bounds=())
    assert runner.freshness(["a"]) is None  # before the first refresh
    runner.latest = {
        "a": {"name": "a", "lag_records": 3, "lag_seconds": 0.4, "error": None},
        "b": {"name": "b", "lag_records": 5, "lag_seconds": 2.5, "error": "ValueError: x"},
        "c": {"name": "c", "lag_records": 9, "lag_seconds": 9.0, "error": None},
    }
    runner.latest_at = 100.0
    assert runner.freshness(["a", "b"]) == {
        "checked_at": 100.0, "lag_records": 8, "lag_seconds": 2.5,
        "errors": ["b: ValueError: x"],
    }


def test_the_mark_names_what_is_not_counted_yet_and_failing_consumers(
    client: TestClient,
) -> None:
    template = client.app.state.web.env.get_template("_freshness.html")  # type: ignore[attr-defined]
    html = template.render(fresh={"checked_at": 0.0, "lag_records": 1234, "lag_seconds": 2.54,
                                  "errors": ["clearlinux_rollups: OperationalError: <x>"]})
    assert "1,234 records received in the last 2.5 s not counted yet." in html
    assert "Failing: clearlinux_rollups: OperationalError: &lt;x&gt;" in html
