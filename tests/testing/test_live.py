"""LiveServer starts on a port of its own even when another process takes the one it
chose first."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from downlink.testing.live import LiveServer


def test_a_server_whose_port_is_taken_starts_again_on_another(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        server = LiveServer(f"sqlite:///{tmp_path / 'x.db'}", log=tmp_path / "server.log")
        server.port, server.url = taken, f"http://127.0.0.1:{taken}"
        server.start()
        try:
            assert server.port != taken
            assert httpx.get(server.url + "/-/health", timeout=10).status_code == 200
        finally:
            server.stop()
    assert "already in use" in (tmp_path / "server.log").read_text()
