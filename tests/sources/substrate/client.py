"""Helpers for driving a live server as substrate nodes do."""

from __future__ import annotations

import json
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection

from downlink.testing.live import LiveServer


async def send_frames(ws: ClientConnection, frames: list[dict[str, Any]]) -> None:
    """Send frames as binary messages, as libp2p-websocket in a node does."""
    for frame in frames:
        await ws.send(json.dumps(frame).encode())


async def flush(ws: ClientConnection, token: Any = 1) -> dict[str, Any]:
    """Ask the server to commit everything sent so far; return its answer."""
    await ws.send(json.dumps({"downlink_flush": token}))
    while True:
        answer: dict[str, Any] = json.loads(await ws.recv())
        if answer.get("downlink_flushed") == token:
            return answer


def metric(server: LiveServer, name: str, **labels: str) -> float:
    """Return one sample of the server's /metrics (0 when absent)."""
    text = httpx.get(server.url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def frame(node: int, seq: int, msg: str = "system.interval", **fields: Any) -> dict[str, Any]:
    """Return a V2 frame for node id ``node``, carrying ``seq`` to recognise it later."""
    body = {"msg": msg, "height": seq, "best": f"0x{seq:064x}", **fields}
    return {"id": node, "ts": "2021-06-23T10:15:30.123456789+02:00", "payload": body}


def connected(node: int, peer_id: str, name: str = "node") -> dict[str, Any]:
    """Return the V2 system.connected frame announcing ``peer_id``."""
    return {
        "id": node,
        "ts": "2021-06-23T10:15:30.000000001+02:00",
        "payload": {
            "msg": "system.connected",
            "name": name,
            "implementation": "Tetcore Node",
            "version": "3.0.0-1230133ad-x86_64-linux-gnu",
            "config": "",
            "chain": "Tetcoin",
            "genesis_hash": "0x" + "ab" * 32,
            "authority": True,
            "startup_time": "1624436000123",
            "network_id": peer_id,
        },
    }
