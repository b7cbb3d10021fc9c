"""Helpers to replay raw HTTP captures and build Clear Linux records in tests."""

from __future__ import annotations

import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path

TID = "6907c830-eed9-4ce9-81ae-76daf8d88f0f"


@dataclass
class Capture:
    """One captured HTTP request."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def load_capture(path: Path) -> Capture:
    """Parse a ``.http`` capture; the body is exactly Content-Length bytes."""
    raw = path.read_bytes()
    sep = b"\r\n\r\n" if b"\r\n\r\n" in raw else b"\n\n"
    head, _, rest = raw.partition(sep)
    lines = head.replace(b"\r\n", b"\n").decode("latin-1").split("\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:] if line]
    cap = Capture(method, target, [(k, v) for k, v in headers], b"")
    length = int(cap.header("Content-Length") or len(rest))
    cap.body = rest[:length]
    return cap


def replay(capture: Capture, host: str, port: int, timeout: float = 10.0) -> tuple[int, bytes]:
    """Send the capture byte for byte (Host rewritten) and return (status, body)."""
    lines = [f"{capture.method} {capture.path} HTTP/1.1"]
    for key, value in capture.headers:
        if key.lower() == "host":
            value = f"{host}:{port}"
        lines.append(f"{key}: {value}")
    lines.append("Connection: close")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + capture.body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    response = b"".join(chunks)
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body


def v2_headers(overrides: dict[str, str | None] | None = None) -> dict[str, str]:
    """Headers of a valid record format version 4 record, as the 2.3.x client sends."""
    fields: dict[str, str | None] = {
        "record_format_version": "4",
        "classification": "org.clearlinux/hello/world",
        "severity": "1",
        "machine_id": secrets.token_hex(16),
        "creation_timestamp": str(int(time.time())),
        "arch": "x86_64",
        "host_type": "Dell Inc.|XPS 13|1.0",
        "build": '"31000"',
        "kernel_version": "5.4.0-1.generic",
        "payload_format_version": "1",
        "system_name": "clear-linux-os",
        "board_name": "0X1234|Dell Inc.",
        "cpu_model": "Intel(R) Core(TM) i7",
        "bios_version": "1.2.3",
        "event_id": secrets.token_hex(16),
        "X-Telemetry-TID": TID,
        "Content-Type": "application/text",
    }
    fields.update(overrides or {})
    return {k: v for k, v in fields.items() if v is not None}
