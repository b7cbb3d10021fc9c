"""``downlink send``: post one test record, as the client's ``hprobe`` does."""

from __future__ import annotations

import platform
import secrets
import time

import click
import httpx
import orjson

from downlink.settings import CLEAR_LINUX_TID


def build_record(
    classification: str, severity: int, payload: str, machine_id: str, build: str
) -> dict[str, str]:
    """Return the 15 fields of a record format version 4 record, as strings."""
    return {
        "record_format_version": "4",
        "classification": classification,
        "severity": str(severity),
        "machine_id": machine_id,
        "creation_timestamp": str(int(time.time())),
        "arch": platform.machine() or "x86_64",
        "host_type": "downlink|send|1",
        "build": build,
        "kernel_version": "6.1.0-downlink",
        "payload_format_version": "1",
        "system_name": "downlink-send",
        "board_name": "downlink|send",
        "cpu_model": "downlink",
        "bios_version": "downlink",
        "event_id": secrets.token_hex(16),
    }


@click.command()
@click.option("--url", default="http://127.0.0.1:8000/v2/collector", show_default=True)
@click.option(
    "--format",
    "wire",
    type=click.Choice(["v2", "v3"]),
    default="v2",
    show_default=True,
    help="v2: fields in headers; v3: one JSON object.",
)
@click.option("--classification", default="org.clearlinux/hello/world", show_default=True)
@click.option("--severity", type=click.IntRange(1, 4), default=1, show_default=True)
@click.option("--payload", default="hello\n", show_default=True)
@click.option("--machine-id", default=None, help="32 hex digits (default: random).")
@click.option("--build", default="1", show_default=True)
@click.option("--tid", default=CLEAR_LINUX_TID, show_default=True, help="X-Telemetry-TID.")
def send(
    url: str,
    wire: str,
    classification: str,
    severity: int,
    payload: str,
    machine_id: str | None,
    build: str,
    tid: str,
) -> None:
    """Send one record to a collector and print its answer."""
    fields = build_record(
        classification, severity, payload, machine_id or secrets.token_hex(16), build
    )
    headers = {"X-Telemetry-TID": tid}
    if wire == "v2":
        headers |= fields | {"Content-Type": "application/text"}
        content = payload.encode()
    else:
        headers["Content-Type"] = "application/json"
        content = orjson.dumps(fields | {"payload": payload})
    try:
        response = httpx.post(url, headers=headers, content=content, timeout=10)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach {url}: {exc}") from None
    click.echo(f"{response.status_code} {response.text}")
    if response.status_code not in (200, 201):
        raise SystemExit(1)
