"""Immediate failure reports: a failed deployment reaches a real SMTP server and a real
webhook receiver, once, retried with backoff, and still once after a restart."""

from __future__ import annotations

import json
import mailbox
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from downlink.testing.live import LiveServer
from downlink.testing.postgres import free_port
from tests.sources.fuelstats.client import minimal, nailgun_task, ok, post

HERE = Path(__file__).parent


def _wait_port(port: int, timeout: float = 15.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A real SMTP server (aiosmtpd, own process) delivering into a Maildir."""
    port = free_port()
    maildir = tmp_path / "maildir"
    proc = subprocess.Popen(
        [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
         "-c", "aiosmtpd.handlers.Mailbox", str(maildir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port)
        yield port, maildir
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP receiver (own process) failing its first two posts with 500."""
    port = free_port()
    log = tmp_path / "webhook.jsonl"
    log.touch()
    proc = subprocess.Popen([sys.executable, str(HERE / "receiver.py"), str(port), str(log), "2"])
    try:
        _wait_port(port)
        yield f"http://127.0.0.1:{port}/hook", log
    finally:
        proc.terminate()
        proc.wait(10)


def _posts(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line]


def _mails(maildir: Path) -> list[Any]:
    if not maildir.exists():
        return []
    return list(mailbox.Maildir(str(maildir), create=False))


def _until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_failed_deployment_reported_once(
    new_database: Callable[[str], str], tmp_path: Path,
    smtp: tuple[int, Path], receiver: tuple[str, Path],
) -> None:
    smtp_port, maildir = smtp
    hook_url, hook_log = receiver
    url = new_database("fuel")
    env = {
        "DOWNLINK_FUEL_WEBHOOK_URL": hook_url,
        "DOWNLINK_FUEL_SMTP_HOST": f"127.0.0.1:{smtp_port}",
        "DOWNLINK_FUEL_MAIL_TO": "support@example.org",
        "DOWNLINK_FUEL_NOTIFY_BACKOFF_S": "0.2",
    }
    server = LiveServer(url, env=env, log=tmp_path / "server.log").start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            contact = {"contact_info_provided": True, "email": "ops@customer.example",
                       "name": "Ops", "company": "Customer"}
            ok(post(client, "installation_structure",
                    minimal("mn1", user_information=contact)), "installation_structure", 201)
            logs = [
                nailgun_task("mn1", 1, status="ready"),
                nailgun_task("mn1", 2, status="error", name="deployment"),
                nailgun_task("mn1", 3, status="error", parent=2),  # a subtask of 2
                nailgun_task("mn1", 4, status="error", end=None),  # still running
            ]
            logs[1]["body"]["additional_info"]["message"] = "Deployment has failed."
            ok(post(client, "action_logs", {"action_logs": logs}), "action_logs")

            _until(lambda: any(p["status"] == 204 for p in _posts(hook_log))
                   and len(_mails(maildir)) == 1)
            posts = _posts(hook_log)
            assert [p["status"] for p in posts] == [500, 500, 204]  # retried with backoff
            assert {p["idempotency_key"] for p in posts} == {"mn1/2"}
            payload = posts[-1]["body"]
            assert payload["master_node_uid"] == "mn1" and payload["external_id"] == 2
            assert payload["message"] == "Deployment has failed."
            assert payload["contact"] == {"email": "ops@customer.example", "name": "Ops",
                                          "company": "Customer"}
            assert payload["action_log"]["action_name"] == "deployment"
            (mail,) = _mails(maildir)
            assert mail["To"] == "support@example.org"
            assert "deployment failed on master node mn1" in mail["Subject"]
            assert "ops@customer.example" in mail.get_payload()

            # The receiver logs its 204 before the server records the delivery.
            def states() -> dict[str, Any]:
                page = client.get("/api/v1/fuel/failures").json()["failures"]
                return {f["channel"]: f for f in page}

            _until(lambda: {f["state"] for f in states().values()} == {"sent"})
            by_channel = states()
            assert set(by_channel) == {"webhook", "email"}
            assert by_channel["webhook"]["state"] == "sent"
            assert by_channel["webhook"]["attempts"] == 3
            assert by_channel["email"]["state"] == "sent"
            assert by_channel["email"]["attempts"] == 1
    finally:
        server.stop()

    # Restarted: the same logs again (the sender retrying) bring no second report.
    server = LiveServer(url, env=env, log=tmp_path / "server2.log").start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            answer = ok(post(client, "action_logs", {"action_logs": logs}), "action_logs")
            assert [i["status"] for i in answer["action_logs"]] == [
                "existed", "existed", "existed", "skipped"]
            failed = nailgun_task("mn1", 5, status="error", name="update")
            ok(post(client, "action_logs", {"action_logs": [failed]}), "action_logs")
            _until(lambda: len(_mails(maildir)) == 2)
            time.sleep(1.5)
            assert len(_mails(maildir)) == 2
            keys = [p["idempotency_key"] for p in _posts(hook_log) if p["status"] == 204]
            assert keys == ["mn1/2", "mn1/5"]
    finally:
        server.stop()
