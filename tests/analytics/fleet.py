"""A sample fleet for parity tests: the Clear Linux captures and generated records."""

from __future__ import annotations

import random
from pathlib import Path

import httpx

from tests.wire import load_capture, v2_headers

CLASSES = (
    "org.clearlinux/crash/clr",
    "org.clearlinux/hello/world",
    "org.clearlinux/mce/corrected",
    "org.clearlinux/swupd/error",
)


def load_fleet(client: httpx.Client, fixtures: Path, count: int = 120) -> int:
    """Post the captured records then ``count`` generated ones; returns how many."""
    posted = 0
    for path in sorted((fixtures / "clearlinux").glob("*.http")):
        cap = load_capture(path)
        if cap.method != "POST":
            continue
        r = client.post(cap.path, headers=dict(cap.headers), content=cap.body)
        assert r.status_code == 201, (path.name, r.text)
        posted += 1
    rng = random.Random(14)
    machines = [f"{i:032x}" for i in range(1, 9)]
    for i in range(count):
        fields = {
            "classification": rng.choice(CLASSES),
            "severity": str(rng.randint(1, 4)),
            "build": str(rng.choice((100, 200, 300))),
            "machine_id": rng.choice(machines),
        }
        body = f"payload {i} " + "x" * rng.randint(0, 300)
        r = client.post("/v2/collector", headers=v2_headers(fields), content=body.encode())
        assert r.status_code == 201, r.text
        posted += 1
    return posted
