"""The application class's direct routes: exact paths and one-segment prefixes."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from downlink.direct import Downlink


async def _echo(scope: Scope, receive: Receive, send: Send) -> None:
    body = f"direct {scope['path']}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _app() -> Downlink:
    app = Downlink()

    @app.post("/report/{rid}/close")
    def close(rid: str) -> dict[str, Any]:
        return {"router": rid}

    @app.post("/report/{rid}")
    def through_router(rid: str) -> dict[str, Any]:
        return {"router": rid}

    app.add_direct_route("POST", "/exact", _echo)
    app.add_direct_prefix("POST", "/report/", _echo)
    return app


def test_prefix_serves_one_segment_and_nothing_else() -> None:
    with TestClient(_app()) as client:
        assert client.post("/report/abc").text == "direct /report/abc"
        assert client.post("/exact").text == "direct /exact"
        # Two segments, no segment, another method: the router answers.
        assert client.post("/report/abc/close").json() == {"router": "abc"}
        assert client.post("/report/").status_code == 404
        assert client.get("/report/abc").status_code == 405
        assert client.post("/reportx").status_code == 404


@pytest.mark.parametrize("prefix", ["/report", "report/", ""])
def test_a_prefix_starts_and_ends_with_a_slash(prefix: str) -> None:
    with pytest.raises(ValueError, match="starts and ends"):
        Downlink().add_direct_prefix("POST", prefix, _echo)
