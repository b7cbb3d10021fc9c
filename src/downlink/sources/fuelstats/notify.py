"""Delivering failure reports: the ``fuel_outbox`` rows, by webhook and by e-mail.

A row is due while ``pending`` (or ``sending`` past its lease: the process that took it
died) and its ``next_attempt_at`` has come. A process takes a row with one conditional
``UPDATE`` (so two server processes never send the same row at once), sends it, and
marks it ``sent``, or schedules a retry after ``backoff * 2**attempts`` seconds, up to
the configured number of attempts, then ``failed`` with the last error.

Creation is exactly-once (see :mod:`~downlink.sources.fuelstats.failures`); a crash
between sending and recording ``sent`` re-sends, so both channels carry the failure key
for the receiver to recognise a repeat: the webhook's ``Idempotency-Key`` header and
the mail's ``Message-ID``.
"""

from __future__ import annotations

import json
import smtplib
import time
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import httpx
from sqlalchemy import Connection, or_, select, update

from downlink.sources.fuelstats.config import FuelSettings
from downlink.sources.fuelstats.tables import outbox

LEASE_S = 60.0
ERROR_MAX = 1000


@dataclass(frozen=True)
class Due:
    """A row taken for delivery."""

    id: int
    failure_key: str
    channel: str
    attempts: int
    payload: dict[str, Any]


def take_due(conn: Connection, now: float, limit: int = 20) -> list[Due]:
    """Take up to ``limit`` due rows for this process (each one conditional UPDATE)."""
    due = or_(outbox.c.state == "pending", outbox.c.state == "sending")
    rows = conn.execute(
        select(outbox.c.id, outbox.c.failure_key, outbox.c.channel, outbox.c.attempts,
               outbox.c.payload, outbox.c.next_attempt_at)
        .where(due, outbox.c.next_attempt_at <= now)
        .order_by(outbox.c.next_attempt_at, outbox.c.id)
        .limit(limit)
    ).all()
    taken: list[Due] = []
    for pk, key, channel, attempts, payload, at in rows:
        claimed = conn.execute(
            update(outbox)
            .where(outbox.c.id == pk, due, outbox.c.next_attempt_at == at)
            .values(state="sending", next_attempt_at=now + LEASE_S)
        )
        if claimed.rowcount == 1:
            taken.append(Due(int(pk), str(key), str(channel), int(attempts), dict(payload)))
    return taken


def record(conn: Connection, due: Due, error: str | None, settings: FuelSettings,
           now: float) -> None:
    """Record one delivery attempt's outcome."""
    attempts = due.attempts + 1
    if error is None:
        values: dict[str, Any] = {"state": "sent", "attempts": attempts, "sent_at": now,
                                  "last_error": None}
    elif attempts >= settings.notify_attempts:
        values = {"state": "failed", "attempts": attempts, "last_error": error[:ERROR_MAX]}
    else:
        delay = settings.notify_backoff_s * 2 ** (attempts - 1)
        values = {"state": "pending", "attempts": attempts, "next_attempt_at": now + delay,
                  "last_error": error[:ERROR_MAX]}
    conn.execute(update(outbox).where(outbox.c.id == due.id).values(**values))


def subject(payload: dict[str, Any]) -> str:
    """The mail subject of a failure."""
    what = payload.get("action_name") or payload.get("operation") or "task"
    return f"Fuel {what} failed on master node {payload.get('master_node_uid')}"


async def send_webhook(client: httpx.AsyncClient, url: str, due: Due) -> str | None:
    """POST the failure as JSON; None on a 2xx answer, else the error."""
    try:
        resp = await client.post(
            url,
            json={"event": "fuel.failure", "failure_key": due.failure_key, **due.payload},
            headers={"Idempotency-Key": due.failure_key},
        )
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    if 200 <= resp.status_code < 300:
        return None
    return f"HTTP {resp.status_code}: {resp.text[:200]}"


def send_mail(settings: FuelSettings, due: Due) -> str | None:
    """Mail the failure to the support team (blocking; run it in a thread)."""
    host, _, port = settings.smtp_host.rpartition(":")
    if not host:
        host, port = settings.smtp_host, "25"
    msg = EmailMessage()
    msg["From"] = settings.mail_from
    msg["To"] = ", ".join(settings.mail_to)
    msg["Subject"] = subject(due.payload)
    msg["Message-ID"] = f"<fuel-failure.{due.failure_key.replace('/', '.')}@downlink>"
    contact = due.payload.get("contact")
    lines = [subject(due.payload), ""]
    if contact:
        lines += ["Customer contact:"] + [f"  {k}: {v}" for k, v in contact.items()] + [""]
    lines += ["Action log:", json.dumps(due.payload.get("action_log"), indent=2, default=str)]
    msg.set_content("\n".join(lines))
    try:
        with smtplib.SMTP(host, int(port), timeout=10) as smtp:
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def outbox_page(conn: Connection, limit: int = 200) -> list[dict[str, Any]]:
    """The newest notifications with their delivery status (for the page)."""
    rows = conn.execute(
        select(outbox.c.id, outbox.c.failure_key, outbox.c.channel, outbox.c.master_node_uid,
               outbox.c.state, outbox.c.attempts, outbox.c.last_error, outbox.c.created_at,
               outbox.c.sent_at, outbox.c.payload)
        .order_by(outbox.c.id.desc())
        .limit(limit)
    ).mappings().all()
    return [
        {**{str(k): v for k, v in row.items() if k != "payload"},
         "action_name": (row["payload"] or {}).get("action_name"),
         "message": (row["payload"] or {}).get("message")}
        for row in rows
    ]


def now() -> float:
    """The clock (one place, for the runtime)."""
    return time.time()
