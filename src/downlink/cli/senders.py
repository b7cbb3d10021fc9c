"""``downlink senders``: list, re-bind or forget the sender ids bound on first use.

A sender id (fuel-stats' ``master_node_uid``, a Clear Linux machine id, a substrate
peer id) is bound by its first accepted post when ``DOWNLINK_SENDER_BINDING`` names its
source (docs/senders.md). When a real sender moved (a new network, a new certificate,
a lost secret) its posts are refused or flagged: the operator re-binds the id to where
it is now, or forgets it so that its next post binds it again. Servers cache the
bindings that matched; a re-bind or forget is logged in ``sender_changes``, which every
server process reads at least every two seconds while posts arrive, and a
post that does not match is checked against the database at once.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click
import orjson
from sqlalchemy.exc import SQLAlchemyError

from downlink.app import sender_rules
from downlink.cli.options import database_option, load_settings
from downlink.security import senders
from downlink.settings import Settings
from downlink.store.engine import make_engine
from downlink.store.record_json import format_ts

T = TypeVar("T")


def _write(settings: Settings, fn: Callable[..., T], *args: Any) -> T:
    engine = make_engine(settings, writer=True)
    try:
        with engine.begin() as conn:
            return fn(conn, *args)
    except SQLAlchemyError as exc:
        first = str(exc).splitlines()[0]
        raise click.ClickException(
            f"cannot reach the senders table ({first}); is the database migrated "
            "(downlink migrate)?"
        ) from None
    finally:
        engine.dispose()


def _source(settings: Settings, name: str) -> str:
    rules = sender_rules(settings.registry)
    if name not in rules:
        raise click.BadParameter(
            f"{name!r} names no source with sender ids (these have: {', '.join(sorted(rules))})",
            param_hint="SOURCE",
        )
    return name


def _network(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a network (like 192.0.2.0/24)",
                                 param_hint="--network") from None


def _cert(value: str | None) -> str | None:
    if value is None:
        return None
    fingerprint = value.strip().lower().replace(":", "")
    if not fingerprint or not all(c in "0123456789abcdef" for c in fingerprint):
        raise click.BadParameter(f"{value!r} is not a hexadecimal fingerprint",
                                 param_hint="--cert")
    return fingerprint


def _bound_to(row: dict[str, Any]) -> str:
    if row["secret_seen"]:
        return "secret"
    if row["cert"]:
        return f"certificate {row['cert']}"
    return f"network {row['network'] or 'unknown'}"


@click.group("senders")
def senders_cmd() -> None:
    """Sender ids bound on first use: list, re-bind or forget them."""


@senders_cmd.command("list")
@click.option("--source", default=None, help="Only this source's sender ids.")
@click.option("--all", "everyone", is_flag=True,
              help="Every bound id, not only those with refused or flagged posts.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--limit", type=click.IntRange(1, 10_000_000), default=1000, show_default=True)
@database_option
def list_cmd(source: str | None, everyone: bool, as_json: bool, limit: int,
             database_url: str | None) -> None:
    """Sender ids with refused or flagged posts, the most recent mismatch first.

    Columns: source, sender id, what it is bound to, refused posts, flagged posts, last
    mismatch (UTC), where it came from and why it did not match.
    """
    settings = load_settings(database_url)
    if source is not None:
        _source(settings, source)
    rows = _write(settings, lambda conn: senders.listing(
        conn, source=source, only_mismatched=not everyone, limit=limit))
    for row in rows:
        if as_json:
            click.echo(orjson.dumps(row).decode())
            continue
        click.echo("\t".join((
            row["source"], row["sender_id"], _bound_to(row), str(row["refused"]),
            str(row["flagged"]), format_ts(row["last_mismatch_at"]) or "-",
            row["last_mismatch_from"] or "-", row["last_mismatch_reason"] or "-",
        )))
    if not as_json:
        click.echo(f"{len(rows)} sender ids", err=True)


@senders_cmd.command("rebind")
@click.argument("source")
@click.argument("sender_id")
@click.option("--network", default=None,
              help="Bind the id to this network (192.0.2.0/24, 2001:db8::/56).")
@click.option("--cert", default=None,
              help="Bind the id to this client certificate fingerprint (hex, colons allowed).")
@database_option
def rebind_cmd(source: str, sender_id: str, network: str | None, cert: str | None,
               database_url: str | None) -> None:
    """Bind SENDER_ID of SOURCE anew, with a new secret (printed).

    The old secret stops matching; ``--network`` and ``--cert`` set what the id is
    bound to (without ``--network`` it keeps its network). An id not bound yet is bound
    now (it then needs ``--network`` or ``--cert``). Its counters are cleared.
    """
    settings = load_settings(database_url)
    _source(settings, source)
    net, fingerprint = _network(network), _cert(cert)
    key = senders.normalise_id(sender_id)
    now = time.time()
    secret = _write(settings, senders.rebind, source, key, net, fingerprint, now)
    if secret is None:
        if net is None and fingerprint is None:
            raise click.ClickException(
                f"{source} sender {sender_id!r} is not bound; give --network or --cert to bind it"
            )
        secret = senders.new_secret()
        binding = senders.Binding(senders.secret_hash(secret), False, net or "", fingerprint)
        _write(settings, senders.bind, source, key, binding, now)
    click.echo(f"{source} sender {sender_id} bound anew; its secret "
               f"({senders.SECRET_HEADER}): {secret}")


@senders_cmd.command("forget")
@click.argument("source")
@click.argument("sender_id")
@database_option
def forget_cmd(source: str, sender_id: str, database_url: str | None) -> None:
    """Forget SENDER_ID of SOURCE: its next accepted post binds it again."""
    settings = load_settings(database_url)
    _source(settings, source)
    if not _write(settings, senders.forget, source, senders.normalise_id(sender_id)):
        raise click.ClickException(f"{source} sender {sender_id!r} is not bound")
    click.echo(f"{source} sender {sender_id} forgotten; its next post binds it again")
