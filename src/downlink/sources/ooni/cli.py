"""``downlink ooni …``: archive, reprocess, fingerprints."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.progress import Progress
from sqlalchemy import Engine

from downlink.archive.storage import Storage, StorageError, open_storage
from downlink.cli.options import database_option, load_settings
from downlink.pipeline import tasks
from downlink.settings import Settings
from downlink.sources.ooni import archive, archive_task, fingerprint_store, reprocess, testlists
from downlink.sources.ooni.config import OoniConfig, config_from
from downlink.sources.ooni.consumer import FILTERS, country, testname
from downlink.sources.ooni.fingerprints import FingerprintError, read_file
from downlink.sources.ooni.params import ParamError, comma_list, moment
from downlink.store import migrate
from downlink.store.engine import make_engine


def _setup(database_url: str | None) -> tuple[Settings, OoniConfig, Engine]:
    settings = load_settings(database_url)
    engine = make_engine(settings, writer=True)
    migrate.upgrade(engine, sources=settings.registry)
    return settings, config_from(settings), engine


def _storage(cfg: OoniConfig) -> Storage:
    if not cfg.archive:
        raise click.UsageError("the archive is disabled: set DOWNLINK_OONI_ARCHIVE")
    try:
        return open_storage(cfg.archive, cfg.s3_endpoint or None)
    except StorageError as exc:
        raise click.UsageError(f"DOWNLINK_OONI_ARCHIVE: {exc}") from None


@click.group()
def ooni() -> None:
    """OONI measurements: raw archive, reprocessing, fingerprints."""


@ooni.command("archive")
@database_option
def archive_cmd(database_url: str | None) -> None:
    """Archive every hour of measurements that is over, now (idempotent).

    The server does it by itself (the task ooni_archive); this is the same code, run by
    hand: a catch-up, or a deployment with DOWNLINK_OONI_ARCHIVE_EVERY_S=0. It takes the
    task's lease, so it is safe beside running servers.
    """
    settings, cfg, engine = _setup(database_url)
    storage = _storage(cfg)
    try:
        out = tasks.run_here(
            engine, "ooni", archive_task.NAME, settings,
            lambda ctx: archive.archive_due(ctx, storage, cfg.collector_id, cfg.archive_grace_s),
            lambda result: result.measurements,
        )
    except (StorageError, tasks.TaskBusy, archive.HourChanged) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    click.echo(f"archived {out.measurements} measurements in {out.hours} hours")


def _day(_ctx: click.Context, param: click.Parameter, value: str) -> datetime:
    try:
        when = moment(value, f"--{param.name}")
    except ParamError as exc:
        raise click.BadParameter(str(exc)) from None
    if when is None:
        raise click.BadParameter("required")
    return when


def _filtered(value: str, parse: Callable[[str], str], option: str) -> list[str]:
    """The items of a comma-separated filter, parsed as the core reprocess parses them."""
    try:
        return [parse(item) for item in comma_list(value)]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


@ooni.command("reprocess")
@click.option("--since", required=True, callback=_day, help="Received at or after (date/ISO).")
@click.option("--until", required=True, callback=_day, help="Received before (date/ISO).")
@click.option("--ccs", default="", help=FILTERS[0].help)
@click.option("--testnames", default="", help=FILTERS[1].help)
@click.option("--dry-run", is_flag=True, help="Score only; write nothing.")
@database_option
def reprocess_cmd(
    since: datetime, until: datetime, ccs: str, testnames: str, dry_run: bool,
    database_url: str | None,
) -> None:
    """Rescore measurements from OONI's raw archive (resumable, idempotent).

    For the measurements still in the database, `downlink reprocess --source ooni`
    takes the same --ccs/--testnames (a job with a progress bar, shown on /consumers).
    """
    if since >= until:
        raise click.BadParameter("--since must be before --until", param_hint="--since")
    cc_list = _filtered(ccs, country, "--ccs")
    tn_list = _filtered(testnames, testname, "--testnames")
    _settings, cfg, engine = _setup(database_url)
    storage = _storage(cfg)
    try:
        with Progress(transient=True) as bar:
            task = bar.add_task("reprocessing", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            out = reprocess.run(
                engine.begin, storage, since.astimezone(UTC), until.astimezone(UTC),
                cc_list, tn_list, dry_run, progress,
            )
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    verb = "would write" if dry_run else "wrote"
    click.echo(
        f"{out.files} files, {out.measurements} measurements, {verb} {out.rows} rows"
        + (f" (resumed after {out.skipped_files} files)" if out.skipped_files else "")
    )


@ooni.group()
def fingerprints() -> None:
    """Blocking fingerprints used by the fastpath."""


@fingerprints.command("load")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@database_option
def fingerprints_load(files: tuple[Path, ...], database_url: str | None) -> None:
    """Replace the fingerprints with those of FILES (JSON lists, or the CSVs of
    github.com/ooni/blocking-fingerprints; give the DNS and HTTP files together)."""
    try:
        items = [fp for f in files for fp in read_file(f)]
    except FingerprintError as exc:
        raise click.ClickException(str(exc)) from None
    _settings, _cfg, engine = _setup(database_url)
    try:
        with engine.begin() as conn:
            version = fingerprint_store.replace(conn, items)
    finally:
        engine.dispose()
    dns = sum(1 for fp in items if fp.location_found == "dns")
    click.echo(f"loaded {dns} DNS and {len(items) - dns} HTTP fingerprints (version {version})")


@ooni.group("testlists")
def testlists_group() -> None:
    """The citizenlab test lists (URL categories, for category_code)."""


@testlists_group.command("load")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@database_option
def testlists_load(files: tuple[Path, ...], database_url: str | None) -> None:
    """Replace the test lists with FILES: the CSVs of github.com/citizenlab/test-lists
    (lists/global.csv and lists/<cc>.csv; the file name is the country)."""
    try:
        entries = [e for f in files for e in testlists.read_file(f)]
    except testlists.TestListError as exc:
        raise click.ClickException(str(exc)) from None
    _settings, _cfg, engine = _setup(database_url)
    try:
        with engine.begin() as conn:
            n = testlists.replace(conn, entries)
    finally:
        engine.dispose()
    click.echo(f"loaded {n} URLs from {len(files)} test list(s)")
