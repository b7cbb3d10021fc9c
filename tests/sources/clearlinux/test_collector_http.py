"""The collector over real HTTP: captured client requests, answers, storage, dedup."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from downlink.testing.live import LiveServer
from tests.wire import load_capture, replay, v2_headers

CAPTURES = ["v2-headers-hello-world.http", "v2-headers-crash.http", "v3-json-hello-world.http"]


def _expected(capture_fields: dict[str, str]) -> dict[str, object]:
    return {
        "arch": capture_fields["arch"],
        "bios_version": capture_fields["bios_version"],
        "board_name": capture_fields["board_name"],
        "build": capture_fields["build"].strip('"'),
        "classification": capture_fields["classification"],
        "cpu_model": capture_fields["cpu_model"],
        "event_id": capture_fields["event_id"],
        "kernel_version": capture_fields["kernel_version"],
        "machine_id": capture_fields["machine_id"],
        "machine_type": capture_fields["host_type"],
        "record_version": 4,
        "record_format_version": 4,
        "payload_format_version": 1,
        "severity": int(capture_fields["severity"]),
        "system_name": capture_fields["system_name"],
        "external": False,
    }


def test_every_capture_is_stored_with_every_field(live: LiveServer, fixtures_dir: Path) -> None:
    sent = {}
    for name in CAPTURES:
        capture = load_capture(fixtures_dir / "clearlinux" / name)
        status, body = replay(capture, "127.0.0.1", live.port)
        assert status == 201, body
        answer = orjson.loads(body)
        if capture.header("Content-Type") == "application/json":
            doc = orjson.loads(capture.body)
            fields = {k: v for k, v in doc.items() if k != "payload"}
            payload = doc["payload"]
        else:
            fields = {k: v for k, v in capture.headers}
            payload = capture.body.decode()
        expected = _expected(fields)
        assert {k: answer[k] for k in expected} == expected
        assert answer["payload"] == payload
        assert answer["ts_capture"].endswith(" UTC") and answer["ts_reception"].endswith(" UTC")
        sent[answer["id"]] = (expected, payload)

    listed = httpx.get(live.url + "/api/records").json()["records"]
    assert len(listed) == len(CAPTURES)
    assert [r["id"] for r in listed] == sorted(sent, reverse=True)
    for record in listed:
        expected, payload = sent[record["id"]]
        assert {k: record[k] for k in expected} == expected
        assert record["payload"] == payload


def test_reference_201_body_shape(live: LiveServer, fixtures_dir: Path) -> None:
    ref = (fixtures_dir / "clearlinux" / "reference-backend-response-201.http").read_bytes()
    ref_body = orjson.loads(ref.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1])
    capture = load_capture(fixtures_dir / "clearlinux" / "v2-headers-hello-world.http")
    status, body = replay(capture, "127.0.0.1", live.port)
    assert status == 201
    ours = orjson.loads(body)
    assert set(ref_body) <= set(ours)
    for key in set(ref_body) - {"id", "ts_reception"}:
        assert ours[key] == ref_body[key], key
    assert ours["record_format_version"] == ours["record_version"] == 4


def test_retransmission_is_answered_201_without_a_duplicate(
    live: LiveServer, fixtures_dir: Path
) -> None:
    capture = load_capture(fixtures_dir / "clearlinux" / "v2-headers-crash.http")
    first = orjson.loads(replay(capture, "127.0.0.1", live.port)[1])
    status, again = replay(capture, "127.0.0.1", live.port)
    assert status == 201
    assert orjson.loads(again)["id"] == first["id"]
    assert len(httpx.get(live.url + "/api/records").json()["records"]) == 1


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_rejections_are_400_with_message(client: TestClient) -> None:
    r = client.post("/v2/collector", headers=v2_headers({"severity": "7"}), content=b"x")
    assert r.status_code == 400
    assert r.json() == {"message": "severity value is out of range"}
    r = client.post(
        "/v3/collector",
        headers={
            "Content-Type": "application/json",
            "X-Telemetry-TID": v2_headers()["X-Telemetry-TID"],
        },
        content=b"{broken",
    )
    assert r.status_code == 400 and "JSON" in r.json()["message"]
    r = client.post("/", headers=v2_headers(), content=b"nul\x00byte")
    assert r.status_code == 400 and "NUL" in r.json()["message"]
    assert client.get("/api/records").json()["records"] == []


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_all_three_paths_and_form_content_types_keep_the_payload(client: TestClient) -> None:
    for path in ("/v2/collector", "/v3/collector", "/"):
        headers = v2_headers({"Content-Type": "application/x-www-form-urlencoded"})
        r = client.post(path, headers=headers, content=b"a=1&b=2")
        assert r.status_code == 201, r.text
        assert r.json()["payload"] == "a=1&b=2"


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_methods_and_redirect(client: TestClient) -> None:
    r = client.get("/v2/collector", follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"] == "/records"
    assert client.put("/v2/collector", content=b"").status_code == 405


@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_body_limits(settings: object, db_url: str) -> None:
    from downlink.app import create_app
    from downlink.settings import Settings

    small = Settings(database_url=db_url, max_body_bytes=2048)
    with TestClient(create_app(small)) as c:
        ok = c.post("/v2/collector", headers=v2_headers(), content=b"p" * 2048)
        assert ok.status_code == 201
        big = c.post("/v2/collector", headers=v2_headers(), content=b"p" * 2049)
        assert big.status_code == 413 and "limit" in big.json()["message"]


def test_one_mebibyte_payload_is_accepted(client: TestClient) -> None:
    body = b"y" * (1 << 20)
    r = client.post("/v2/collector", headers=v2_headers(), content=body)
    assert r.status_code == 201
    assert len(client.get(f"/api/records/{r.json()['id']}").json()["payload"]) == 1 << 20


@pytest.mark.parametrize("wire", ["v2", "v3"])
@pytest.mark.databases("sqlite")  # HTTP handling, not storage: docs/testing.md
def test_cli_send(live: LiveServer, wire: str) -> None:
    from click.testing import CliRunner

    from downlink.cli.main import cli

    result = CliRunner().invoke(
        cli, ["send", "--url", live.url + "/v2/collector", "--format", wire, "--payload", "ping"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("201 ")
    assert httpx.get(live.url + "/api/records").json()["records"][0]["payload"] == "ping"
