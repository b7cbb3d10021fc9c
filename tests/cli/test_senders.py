"""``downlink senders list|rebind|forget`` against a running server's database."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner, Result

from downlink.cli.main import cli
from downlink.testing.live import LiveServer

HOME = "198.51.100.7"
ELSEWHERE = "203.0.113.9"
SECRET = "X-Downlink-Sender-Secret"


def _run(db_url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["senders", *args], env={"DATABASE_URL": db_url})


def _post(server: LiveServer, uid: str, address: str, **headers: str) -> httpx.Response:
    body: dict[str, Any] = {"installation_structure": {
        "master_node_uid": uid, "allocated_nodes_num": 0, "unallocated_nodes_num": 0,
        "clusters_num": 0, "clusters": [],
    }}
    return httpx.post(server.url + "/api/v1/installation_structure/", json=body,
                      headers={"X-Forwarded-For": address, **headers}, timeout=30)


def test_an_operator_lists_rebinds_and_forgets_a_sender(db_url: str, tmp_path: Path) -> None:
    server = LiveServer(db_url, env={"DOWNLINK_SENDER_BINDING": "fuelstats"},
                        log=tmp_path / "server.log").start()
    try:
        uid = "uid-" + secrets.token_hex(6)
        assert _post(server, uid, HOME).status_code == 201
        assert _post(server, uid, ELSEWHERE).status_code == 403

        listed = _run(db_url, "list")
        assert listed.exit_code == 0, listed.output
        (line,) = [x for x in listed.output.splitlines() if x.startswith("fuelstats\t")]
        fields = line.split("\t")
        assert fields[:5] == ["fuelstats", uid, "network 198.51.100.0/24", "1", "0"]
        assert fields[6] == ELSEWHERE and "203.0.113.0/24" in fields[7]
        as_json = _run(db_url, "list", "--json", "--source", "fuelstats")
        row = json.loads(as_json.output.splitlines()[0])
        assert row["sender_id"] == uid and row["refused"] == 1 and "secret_hash" not in row

        # The real sender moved: bind it where it is now.
        moved = _run(db_url, "rebind", "fuelstats", uid, "--network", "203.0.113.0/24")
        assert moved.exit_code == 0, moved.output
        secret = moved.output.strip().rsplit(" ", 1)[1]
        assert _post(server, uid, ELSEWHERE).status_code == 200
        assert _post(server, uid, HOME).status_code == 403
        assert _post(server, uid, HOME, **{SECRET: secret}).status_code == 200
        # It presented the secret: from now on it must.
        assert _post(server, uid, ELSEWHERE).status_code == 403

        forgot = _run(db_url, "forget", "fuelstats", uid)
        assert forgot.exit_code == 0, forgot.output
        again = _post(server, uid, HOME)
        assert again.status_code == 200 and SECRET in again.headers  # bound anew
        assert _run(db_url, "list").output.count(uid) == 0  # no mismatch since
        assert uid in _run(db_url, "list", "--all").output
        # Forgotten again, a sender that kept its secret binds the id to that one.
        assert _run(db_url, "forget", "fuelstats", uid).exit_code == 0
        kept = _post(server, uid, ELSEWHERE, **{SECRET: again.headers[SECRET]})
        assert kept.status_code == 200 and SECRET not in kept.headers
        assert _post(server, uid, ELSEWHERE).status_code == 403  # the secret is required

        # An operator may bind an id before its first post.
        early = "uid-" + secrets.token_hex(6)
        assert _run(db_url, "rebind", "fuelstats", early, "--network", "192.0.2.0/24"
                    ).exit_code == 0
        assert _post(server, early, HOME).status_code == 403
    finally:
        server.stop()


def test_bad_input_is_an_error_naming_the_problem(empty_db_url: str) -> None:
    db_url = empty_db_url
    unknown = _run(db_url, "list", "--source", "nope")
    assert unknown.exit_code == 2 and "names no source with sender ids" in unknown.output
    migrated = _run(db_url, "forget", "fuelstats", "never-bound")
    # A database never migrated has no senders table: said so, no traceback.
    assert migrated.exit_code == 1
    assert "migrate" in migrated.output or "is not bound" in migrated.output
    net = _run(db_url, "rebind", "fuelstats", "x", "--network", "not-a-net")
    assert net.exit_code == 2 and "is not a network" in net.output
    cert = _run(db_url, "rebind", "fuelstats", "x", "--cert", "zz:zz")
    assert cert.exit_code == 2 and "hexadecimal fingerprint" in cert.output
    assert CliRunner().invoke(cli, ["migrate"], env={"DATABASE_URL": db_url}).exit_code == 0
    missing = _run(db_url, "forget", "fuelstats", "never-bound")
    assert missing.exit_code == 1 and "is not bound" in missing.output
    unbound = _run(db_url, "rebind", "clearlinux", "m1")
    assert unbound.exit_code == 1 and "give --network or --cert" in unbound.output
    assert "Traceback" not in unbound.output
