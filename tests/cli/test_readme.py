"""The README's "Use it" commands work as written against a real server."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx

from downlink.testing.live import LiveServer

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_example_query_finds_the_record_downlink_send_posted(live: LiveServer) -> None:
    text = README.read_text()
    assert "downlink send --url http://127.0.0.1:8000/v2/collector" in text
    sent = subprocess.run(
        [sys.executable, "-m", "downlink", "send", "--url", live.url + "/v2/collector"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert sent.returncode == 0, sent.stdout + sent.stderr
    query = re.search(r"curl '(http://127\.0\.0\.1:8000/api/records\?[^']*)'", text)
    assert query is not None, "the README has no example query"
    answer = httpx.get(query.group(1).replace("http://127.0.0.1:8000", live.url))
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["records"]) == 1, answer.text
