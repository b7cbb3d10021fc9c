"""SIGKILL during concurrent uploads loses no action log or structure that was acked."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from downlink.testing.live import LiveServer
from tests.sources.fuelstats.client import minimal, nailgun_task


@pytest.mark.slow
def test_sigkill_mid_upload_loses_nothing_acknowledged(
    new_database: Callable[[str], str], tmp_path: Path
) -> None:
    url = new_database("fuel")
    server = LiveServer(url, workers=2, log=tmp_path / "server.log").start()
    added: set[tuple[str, int]] = set()
    structures: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()
    ids = itertools.count()

    def upload(worker: int) -> None:
        uid = f"mn{worker}"
        with httpx.Client(base_url=server.url, timeout=5) as http:
            while not stop.is_set():
                batch = [nailgun_task(uid, next(ids)) for _ in range(20)]
                try:
                    r = http.post("/api/v1/action_logs/", json={"action_logs": batch})
                    s = http.post("/api/v1/installation_structure/", json=minimal(uid))
                except httpx.HTTPError:
                    return  # the server died: this upload was never acknowledged
                if r.status_code == 200:
                    with lock:
                        added.update((i["master_node_uid"], i["external_id"])
                                     for i in r.json()["action_logs"] if i["status"] == "added")
                if s.status_code in (200, 201):
                    with lock:
                        structures.add(uid)

    threads = [threading.Thread(target=upload, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(added) < 2000:
        time.sleep(0.05)
    server.kill()
    stop.set()
    for t in threads:
        t.join(10)
    assert len(added) >= 200, "the load never got going"

    restarted = LiveServer(url, log=tmp_path / "server2.log").start()
    try:
        stored: set[tuple[str, int]] = set()
        with httpx.Client(base_url=restarted.url, timeout=30) as http:
            for w in range(8):
                uid = f"mn{w}"
                offset = 0
                while True:
                    page = http.get(f"/api/v1/json/action_logs/{uid}", params={
                        "paging_params": f'{{"limit": 10000, "offset": {offset}}}'}).json()
                    stored.update((o["master_node_uid"], o["external_id"]) for o in page["objs"])
                    offset += 10000
                    if offset >= page["paging_params"]["total"]:
                        break
            missing = added - stored
            assert not missing, f"{len(missing)} acknowledged action logs lost of {len(added)}"
            for uid in structures:
                assert http.get(f"/api/v1/json/installation_info/{uid}").status_code == 200
    finally:
        restarted.stop()
