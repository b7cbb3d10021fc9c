"""Form posts a browser makes from another site are refused, over real HTTP (both databases).

The rule is ``security/csrf.py``; each case posts a blacklist edit to a live server and
checks both the answer and that nothing was stored.
"""

from __future__ import annotations

import httpx
import pytest

from downlink.security.csrf import cross_site_reason
from downlink.testing.live import LiveServer

FRAME = {"frame": '["f()", "m"]'}


def _blacklist(client: httpx.Client) -> list[object]:
    listed: list[object] = client.get("/crashes/blacklist.json").json()["blacklist"]
    return listed


CROSS_SITE = [
    {"origin": "null"},  # sandboxed frame / data: page, no Sec-Fetch-Site (older browser)
    {"origin": "NULL"},
    {"origin": "http://evil.example"},
    {"origin": "http://evil.example", "sec-fetch-site": "cross-site"},
    {"sec-fetch-site": "cross-site"},
    {"sec-fetch-site": "same-site"},  # a sibling subdomain is another site's page too
    {"origin": "null", "sec-fetch-site": "cross-site"},
]


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_cross_site_form_posts_are_refused(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url, timeout=10) as client:
        for headers in CROSS_SITE:
            r = client.post("/crashes/blacklist", data=FRAME, headers=headers)
            assert r.status_code == 403, (headers, r.text)
            assert r.json()["message"].startswith("cross-origin form posts are refused")
            assert client.post("/crashes/regroup", headers=headers).status_code == 403
            edit = client.post("/crashes/1", data={"comment": "x"}, headers=headers)
            assert edit.status_code == 403
        assert _blacklist(client) == []


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_same_origin_posts_pass(live: LiveServer) -> None:
    own = live.url  # http://127.0.0.1:port, the Host the client sends
    with httpx.Client(base_url=live.url, timeout=10) as client:
        accept = {"accept": "application/json"}
        for headers in (
            {"origin": own},
            {"origin": own, "sec-fetch-site": "same-origin"},
            # Referrer-Policy: no-referrer makes a browser send Origin: null on its own
            # site's posts; Sec-Fetch-Site still says same-origin and decides.
            {"origin": "null", "sec-fetch-site": "same-origin"},
            {},  # not a browser: curl and scripts send neither header
        ):
            r = client.post("/crashes/blacklist", data=FRAME, headers={**headers, **accept})
            assert r.status_code in (200, 202), (headers, r.text)
        assert _blacklist(client) == [{"function": "f()", "module": "m"}]


def test_rule_table() -> None:
    host = {"host": "downlink.example:8000"}
    assert cross_site_reason({**host, "origin": "http://downlink.example:8000"}) is None
    assert cross_site_reason({**host, "origin": "https://downlink.example:8000"}) is None
    assert cross_site_reason({**host, "origin": "http://downlink.example"}) is not None
    assert cross_site_reason({**host, "origin": "http://[::1"}) is not None  # unparsable
    assert cross_site_reason({**host, "origin": ""}) is not None
    assert cross_site_reason({**host, "sec-fetch-site": "none"}) is None
