"""``downlink spool``: look at, export, retry or drop records the database refused.

A spooled record the database refuses when the drainer moves it (or that breaks the
text rule) is set aside in the spool file's ``refused`` table instead of blocking the
records behind it. These commands work on that table, with or without the server
running; ``retry`` writes straight to the database.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import click
import orjson

from downlink.cli.options import database_option, load_settings
from downlink.store.database import Store
from downlink.store.inserts import RECORD_COLUMNS
from downlink.store.record_json import format_ts
from downlink.store.refusals import describe, store_items
from downlink.store.spool import RECORDS, Spool, Spooled
from downlink.store.storable import unstorable_field
from downlink.store.transfer import export_row

Row = dict[str, Any]

_spool_dir_option = click.option(
    "--spool-dir",
    envvar="DOWNLINK_SPOOL_DIR",
    default=None,
    help="The spool directory (default: $DOWNLINK_SPOOL_DIR).",
)
_ids_option = click.option(
    "--id", "ids", multiple=True, type=int,
    help="Only the set-aside record with this id (repeatable).",
)


@contextmanager
def _open(spool_dir: str | None) -> Iterator[Spool]:
    if not spool_dir:
        raise click.UsageError("no spool: give --spool-dir or set DOWNLINK_SPOOL_DIR")
    if not (Path(spool_dir) / "spool.db").is_file():
        raise click.ClickException(f"{spool_dir} holds no spool (spool.db is missing)")
    spool = Spool(spool_dir, max_bytes=1)  # max_bytes only limits appends; none here
    try:
        yield spool
    finally:
        spool.close()


def _selected(spool: Spool, ids: tuple[int, ...]) -> list[Spooled]:
    entries = spool.refused(ids or None)
    missing = sorted(set(ids) - {entry.seq for entry in entries})
    if missing:
        raise click.ClickException(
            "no set-aside record with id " + ", ".join(str(seq) for seq in missing)
        )
    return entries


@click.group("spool")
def spool_cmd() -> None:
    """Records set aside in the spool because the database refused them."""


@spool_cmd.command("list")
@_spool_dir_option
def list_cmd(spool_dir: str | None) -> None:
    """Show each set-aside record: id, reception time, source, class and the error."""
    with _open(spool_dir) as spool:
        entries = spool.refused()
        pending = spool.pending()
    for entry in entries:
        row = entry.row
        source = row.get("source") if entry.sink == RECORDS else entry.sink
        click.echo(
            f"{entry.seq}\t{format_ts(row.get('ts_reception'))}\t{source}\t"
            f"{row.get('classification')}\t{entry.error}"
        )
    click.echo(f"{len(entries)} set aside, {pending} waiting to be drained", err=True)


@spool_cmd.command("export")
@click.argument("output", type=click.Path(dir_okay=False, allow_dash=True), default="-")
@_spool_dir_option
@_ids_option
def export_cmd(output: str, spool_dir: str | None, ids: tuple[int, ...]) -> None:
    """Write set-aside records as NDJSON to OUTPUT (default: standard output).

    The lines are in the ``downlink export`` format, which ``downlink import`` reads
    (after the offending value is fixed), plus ``set_aside``: the id and the error.
    """
    with _open(spool_dir) as spool:
        entries = _selected(spool, ids)
    out: IO[bytes] = sys.stdout.buffer if output == "-" else open(output, "wb")  # noqa: SIM115
    try:
        for entry in entries:
            line: dict[str, Any]
            if entry.sink == RECORDS:
                line = export_row({**dict.fromkeys(RECORD_COLUMNS), **entry.row, "id": None})
            else:  # another sink's item: its row as spooled
                line = {"sink": entry.sink, "row": entry.row}
            line["set_aside"] = {"id": entry.seq, "error": entry.error}
            out.write(orjson.dumps(line, default=str) + b"\n")
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    if output != "-":
        click.echo(f"exported {len(entries)} set-aside records to {output}")


@spool_cmd.command("retry")
@_spool_dir_option
@_ids_option
@database_option
def retry_cmd(spool_dir: str | None, ids: tuple[int, ...], database_url: str | None) -> None:
    """Try set-aside records again (all, or those given by --id).

    Records the database now takes are stored and leave the spool; the others stay
    set aside with the new error, and the command exits with status 1.
    """
    settings = load_settings(database_url)
    with _open(spool_dir or settings.spool_dir) as spool:
        entries = _selected(spool, ids)
        still: list[tuple[int, str]] = []
        retry: list[Spooled] = []
        for entry in entries:
            problem = unstorable_field(entry.row) if entry.sink == RECORDS else None
            if problem is None:
                retry.append(entry)
            else:
                still.append((entry.seq, problem))
        stored = dupes = 0
        if retry:
            store = Store(settings.replace(spool_dir=""))
            done: list[int] = []
            try:
                store.migrate()
                for sink in sorted({entry.sink for entry in retry}):
                    if sink not in store.sinks:
                        still.extend((e.seq, f"no sink {sink!r} in this server's sources")
                                     for e in retry if e.sink == sink)
                        continue
                    mine = [entry for entry in retry if entry.sink == sink]
                    results = store_items(store.write_engine, store.sink(sink),
                                          [entry.item for entry in mine])
                    for entry, result in zip(mine, results, strict=True):
                        if result.failed:
                            still.append((entry.seq, str(result.error or result.refused)))
                            continue
                        done.append(entry.seq)
                        if result.duplicate:
                            dupes += 1
                        else:
                            stored += 1
            except Exception as exc:  # noqa: BLE001 - an outage: nothing changes
                raise click.ClickException(
                    f"the database is unavailable, nothing retried: {describe(exc)}"
                ) from None
            finally:
                spool.drop_refused(done)
                store.write_engine.dispose()
                store.engine.dispose()
        for seq, error in still:
            spool.update_refused(seq, error)
    click.echo(f"retried {len(entries)}: {stored} stored, {dupes} already present, "
               f"{len(still)} still refused")
    if still:
        lines = "\n".join(f"{seq}: {error}" for seq, error in sorted(still))
        raise click.ClickException(f"still refused:\n{lines}")


@spool_cmd.command("drop")
@_spool_dir_option
@_ids_option
@click.option("--all", "drop_all", is_flag=True, help="Drop every set-aside record.")
def drop_cmd(spool_dir: str | None, ids: tuple[int, ...], drop_all: bool) -> None:
    """Delete set-aside records for good (export them first; give --id or --all)."""
    if not ids and not drop_all:
        raise click.UsageError("give --id N (repeatable) or --all")
    with _open(spool_dir) as spool:
        entries = _selected(spool, ids)
        dropped = spool.drop_refused(entry.seq for entry in entries)
    click.echo(f"dropped {dropped} set-aside records")
