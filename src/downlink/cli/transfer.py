"""``downlink export`` and ``downlink import``: NDJSON dumps with a progress bar."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click
import orjson
from rich.progress import Progress

from downlink.cli.options import database_option, load_settings
from downlink.store.database import Store
from downlink.store.queries.records import RecordFilter, count_records, iter_records
from downlink.store.transfer import ImportError_, export_row, import_row
from downlink.store.writer import RecordsRefused, StoreUnavailable

Row = dict[str, Any]


@click.command("export")
@click.argument("output", type=click.Path(dir_okay=False, allow_dash=True), default="-")
@click.option("--source", default=None, help="Only records of this source.")
@click.option("--classification", default=None, help="Only this class (* wildcards).")
@database_option
def export_cmd(
    output: str, source: str | None, classification: str | None, database_url: str | None
) -> None:
    """Write records as NDJSON to OUTPUT (default: standard output)."""
    settings = load_settings(database_url)
    try:
        out: IO[bytes] = sys.stdout.buffer if output == "-" else open(output, "wb")  # noqa: SIM115
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from None
    store = Store(settings)
    f = RecordFilter(source=source, classification=classification)
    try:
        store.migrate()
        # From the read replica when DATABASE_READ_URL names one.
        with store.reads_engine().connect() as conn:
            total = count_records(conn, f)
            with Progress(disable=output == "-", transient=False) as progress:
                task = progress.add_task("exporting", total=total)
                for row in iter_records(conn, f):
                    out.write(orjson.dumps(export_row(row)) + b"\n")
                    progress.advance(task)
    finally:
        if out is not sys.stdout.buffer:
            out.close()
        store.engine.dispose()
        store.write_engine.dispose()
        if store.replica is not None:
            store.replica.engine.dispose()
    if output != "-":
        click.echo(f"exported {total} records to {output}")


def _batches(path: Path, size: int) -> Iterator[tuple[list[Row], list[int], int]]:
    """Yield (rows, their line numbers, bytes read so far); a bad line is a CLI error."""
    batch: list[Row] = []
    lines: list[int] = []
    with path.open("rb") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = import_row(orjson.loads(line))
            except (orjson.JSONDecodeError, ImportError_) as exc:
                raise click.ClickException(f"{path}:{number}: {exc}") from None
            batch.append(row)
            lines.append(number)
            if len(batch) >= size:
                yield batch, lines, fh.tell()
                batch, lines = [], []
    if batch:
        yield batch, lines, path.stat().st_size


@click.command("import")
@click.argument("input_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--batch", default=1000, show_default=True, type=click.IntRange(1, 100000))
@database_option
def import_cmd(input_file: Path, batch: int, database_url: str | None) -> None:
    """Load records from an NDJSON dump made by ``downlink export``.

    The file is checked completely before anything is written, so a bad line
    (reported with its line number and field) leaves the database untouched. A record
    the database itself refuses is reported by line at the end (exit status 1); the
    other records are imported.
    """
    for _ in _batches(input_file, batch):
        pass  # validation pass: raises on the first bad line
    settings = load_settings(database_url).replace(batch_max=batch, queue_max=batch * 4)
    store = Store(settings)
    refused: list[str] = []

    async def run() -> tuple[int, int]:
        added = dupes = 0
        with Progress() as progress:
            task = progress.add_task("importing", total=input_file.stat().st_size)
            for rows, lines, offset in _batches(input_file, batch):
                try:
                    results = await store.write(rows)
                except RecordsRefused as exc:
                    results = exc.results
                for number, stored in zip(lines, results, strict=True):
                    if stored.failed:
                        detail = stored.error or stored.refused
                        refused.append(f"{input_file}:{number}: {detail}")
                    elif stored.duplicate:
                        dupes += 1
                    else:
                        added += 1
                progress.update(task, completed=offset)
        return added, dupes

    try:
        store.start()
        added, dupes = asyncio.run(run())
    except StoreUnavailable as exc:
        raise click.ClickException(f"the database is unavailable: {exc}") from None
    finally:
        store.close()
    click.echo(f"imported {added} records ({dupes} already present)")
    if refused:
        shown = "\n".join(refused[:20])
        more = f"\n… and {len(refused) - 20} more" if len(refused) > 20 else ""
        raise click.ClickException(
            f"the database refused {len(refused)} records, not imported:\n{shown}{more}"
        )
