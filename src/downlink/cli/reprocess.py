"""``downlink reprocess``: replay a range of stored rows through a source's consumers."""

from __future__ import annotations

import time
from datetime import date, datetime
from typing import Any

import click
from sqlalchemy import Engine

from downlink.analytics.shipper import SOURCE as SHIPPERS
from downlink.analytics.shipper import shippers
from downlink.archive.consumer import SOURCE as ARCHIVERS
from downlink.archive.consumer import archivers
from downlink.archive.replay import replay
from downlink.archive.storage import StorageError
from downlink.cli.archive import archives_of, open_archive
from downlink.cli.options import F, database_option, load_settings
from downlink.pipeline import reprocess
from downlink.pipeline.consumers import Bound, bind
from downlink.pipeline.jobkinds import run_step
from downlink.pipeline.jobrunner import STALE_AFTER_S
from downlink.settings import Settings
from downlink.sources import registry
from downlink.sources.base import JobKind, ReprocessFilter
from downlink.sources.registry import SourceError, Sources
from downlink.store import jobs
from downlink.store import migrate as migrations
from downlink.store.engine import make_engine

_DAY = click.DateTime(formats=["%Y-%m-%d"])


def _declared(sources: Sources) -> dict[str, tuple[ReprocessFilter, list[str]]]:
    """Every filter the sources' consumers declare, by name, with its consumers."""
    found: dict[str, tuple[ReprocessFilter, list[str]]] = {}
    for _source, consumer in sources.consumers:
        for f in consumer.filters:
            found.setdefault(f.name, (f, []))[1].append(consumer.name)
    return found


def option_name(name: str) -> str:
    """The option of a filter: ``--`` and its name with dashes for underscores."""
    return "--" + name.replace("_", "-")


def filter_options(fn: F) -> F:
    """Add one option per filter the registered sources' consumers declare
    (``Consumer.filters``): the core names none of them."""
    try:
        declared = _declared(registry.load())
    except SourceError:  # reported when the command runs (load_settings)
        declared = {}
    for name, (f, names) in sorted(declared.items(), reverse=True):
        help_text = f"{f.help} Comma-separated; consumer(s): {', '.join(names)}."
        fn = click.option(option_name(name), name, default=None, metavar="LIST",
                          help=help_text)(fn)
    return fn


def _filter_values(
    chosen: list[Bound], given: dict[str, str]
) -> dict[str, tuple[str, ...]]:
    """The given filters' values, parsed; a usage error naming a consumer without one."""
    values: dict[str, tuple[str, ...]] = {}
    for name, raw in given.items():
        option = option_name(name)
        items = [item for item in raw.split(",") if item.strip()]
        if not items:
            raise click.BadParameter("give at least one value", param_hint=option)
        for bound in chosen:
            found = {f.name: f for f in bound.consumer.filters}.get(name)
            if found is None:
                raise click.BadParameter(
                    f"consumer {bound.name!r} of source {bound.source!r} has no such filter"
                    " (pick a consumer that has it with --consumer)",
                    param_hint=option,
                )
            try:
                values[name] = tuple(dict.fromkeys(found.parse(item) for item in items))
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint=option) from None
    return values


def _pick(
    bounds: list[Bound], source: str, consumer: str | None, known: tuple[str, ...]
) -> list[Bound]:
    if source not in known:
        raise click.BadParameter(
            f"no source {source!r} (sources: {', '.join(known) or 'none'})", param_hint="--source"
        )
    mine = [b for b in bounds if b.source == source]
    if not mine:
        raise click.BadParameter(f"source {source!r} has no consumer", param_hint="--source")
    if consumer is None:
        return mine
    chosen = [b for b in mine if b.name == consumer]
    if not chosen:
        names = ", ".join(b.name for b in mine)
        raise click.BadParameter(
            f"source {source!r} has no consumer {consumer!r} (it has: {names})",
            param_hint="--consumer",
        )
    return chosen


def _revisable(chosen: list[Bound], explicit: bool) -> list[Bound]:
    able = [b for b in chosen if b.consumer.revision is not None]
    if not able or (explicit and len(able) < len(chosen)):
        names = ", ".join(b.name for b in chosen)
        raise click.BadParameter(
            f"{names}: no consumer here revises its rows in place (Consumer.revision)",
            param_hint="--in-place",
        )
    return able


@click.command("reprocess")
@click.option("--source", "source", required=True, help="Source whose rows to replay.")
@click.option("--since", type=_DAY, required=True, help="First UTC day (YYYY-MM-DD).")
@click.option("--until", type=_DAY, required=True, help="Last UTC day, included.")
@click.option("--consumer", default=None, help="Only this consumer (default: all the source's).")
@click.option("--dry-run", is_flag=True, help="Only count the rows that would be replayed.")
@click.option(
    "--from-archive", is_flag=True,
    help="Replay the rows kept in the raw archive (DOWNLINK_ARCHIVE), not the database's.",
)
@click.option(
    "--in-place", is_flag=True,
    help="Revise the derived data of the rows in place instead of forgetting and"
    " replaying it (consumers that declare a revision).",
)
@filter_options
@database_option
def reprocess_cmd(
    source: str,
    since: datetime,
    until: datetime,
    consumer: str | None,
    dry_run: bool,
    from_archive: bool,
    in_place: bool,
    database_url: str | None,
    **filters: str | None,
) -> None:
    """Rebuild what consumers derived from rows received from --since to --until.

    Each consumer's job forgets what it derived from the range, then replays the
    rows through it, in short transactions. It runs here with a progress bar (or in a
    server, which shows it on /consumers); run the same command again to resume an
    interrupted job. Running it twice gives identical derived data. With
    DOWNLINK_ANALYTICS_URL set, `--source analytics` backfills the ClickHouse store;
    with DOWNLINK_ARCHIVE set, `--source archive` rebuilds the raw archive of those days
    from the database (the server, or `downlink archive`, then closes them).

    The filter options below come from the sources' consumers (Consumer.filters):
    they narrow the job to the matching rows, whose derived data alone is forgotten
    and rebuilt.

    With --in-place nothing is forgotten: a consumer that declares a revision
    revises the derived data of the rows it applied, batch by batch, never showing
    it empty (a crash consumer regrouping with a changed "never guilty" list).

    With --from-archive the rows come from the raw archive (DOWNLINK_ARCHIVE), so
    rows that retention removed from the database are replayed too; run it again to
    finish an interrupted replay.
    """
    settings = load_settings(database_url)
    first, last = since.date(), until.date()
    if last < first:
        raise click.BadParameter("must not be before --since", param_hint="--until")
    try:
        ships = shippers(settings)
        archiving = archivers(settings)
        bounds = bind(settings.registry, [*ships, *archiving])
    except (SourceError, StorageError) as exc:
        raise click.ClickException(str(exc)) from None
    known = (*settings.registry.names, *((SHIPPERS,) if ships else ()),
             *((ARCHIVERS,) if archiving else ()))
    chosen = _pick(bounds, source, consumer, known)
    given = {name: value for name, value in filters.items() if value is not None}
    values = _filter_values(chosen, given)
    if from_archive and source == SHIPPERS:
        raise click.BadParameter(
            "the analytics shippers copy the database's rows: replay the archive through"
            " the source that archived them, the shippers then ship what it rebuilt",
            param_hint="--from-archive",
        )
    if from_archive and source == ARCHIVERS:
        raise click.BadParameter(
            "the archive consumers rebuild the archive from the database's rows: run it"
            " without --from-archive",
            param_hint="--from-archive",
        )
    if from_archive and (values or in_place):
        what = "filters" if values else "--in-place"
        raise click.BadParameter(
            f"{what} apply to the database's rows, not to an archive replay",
            param_hint="--from-archive",
        )
    if from_archive:
        _from_archive(settings, chosen, source, first, last, dry_run)
        return
    if in_place:
        chosen = _revisable(chosen, consumer is not None)
    engine = make_engine(settings, writer=True)
    try:
        if migrations.pending(engine, settings.registry):
            raise click.ClickException("the database is not up to date: run `downlink migrate`")
        for bound in chosen:
            params = reprocess.plan(source, bound.name, first, last, values, revise=in_place)
            _one(engine, bound, bounds, params, dry_run)
    except click.ClickException:
        raise
    except Exception as exc:  # noqa: BLE001 - a CLI error naming the problem
        raise click.ClickException(f"reprocess failed: {exc}") from None
    finally:
        engine.dispose()


def _from_archive(
    settings: Settings, chosen: list[Bound], source: str, first: date, last: date,
    dry_run: bool,
) -> None:
    storage = open_archive(settings)
    archives = archives_of(settings, source)
    params = reprocess.plan(source, "", first, last)
    engine = make_engine(settings, writer=True)
    try:
        if migrations.pending(engine, settings.registry):
            raise click.ClickException("the database is not up to date: run `downlink migrate`")
        with click.progressbar(length=1, label="archive files", show_pos=True) as bar:

            def progress(done: int, total: int) -> None:
                bar.length = max(total, 1)
                bar.pos = 0
                bar.update(done)

            results = replay(engine, storage, archives, chosen, params["since"],
                             params["until"], dry_run, progress)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    verb = "would replay" if dry_run else "replayed"
    for done in results:
        click.echo(f"{verb} {done.rows} archived row(s) from {done.files} file(s) "
                   f"through {done.consumer}")
    if not results:
        raise click.ClickException(
            f"no consumer of source {source!r} follows a table it archives"
        )


def _one(
    engine: Engine, bound: Bound, bounds: list[Bound], params: dict[str, Any], dry_run: bool
) -> None:
    revise = params.get("mode") == reprocess.REVISE
    if dry_run:
        with engine.connect() as conn:
            n = reprocess.count(conn, bound, params["since"], params["until"],
                                params.get(reprocess.FILTERS), revise=revise)
        verb = "revise" if revise else "reprocess"
        click.echo(f"would {verb} {n} {bound.consumer.follows} row(s) through {bound.name}")
        return
    with engine.begin() as conn:
        job_id = reprocess.find_or_enqueue(conn, params)
    kind = reprocess.job_kind(bounds)
    label = f"{bound.name} (job {job_id})"
    with click.progressbar(length=1, label=label, show_pos=True) as bar:
        state = _run_or_watch(engine, kind, job_id, bar)
    with engine.connect() as conn:
        status = jobs.as_status(jobs.get(conn, job_id) or {})
    if state != jobs.DONE:
        raise click.ClickException(f"job {job_id} {state}: {status['message'] or ''}".strip())
    if revise:
        click.echo(f"revised {status['done']} row(s) through {bound.name}: "
                   f"{status['changed']} changed")
    else:
        click.echo(f"reprocessed {status['done']} row(s) through {bound.name}")


def _run_or_watch(engine: Engine, kind: JobKind, job_id: int, bar: Any) -> str:
    """Claim the job and run it here, or follow it while another process runs it."""
    owner = jobs.new_owner()
    while True:
        with engine.begin() as conn:
            job = jobs.claim(conn, (kind.kind,), owner, STALE_AFTER_S, job_id=job_id)
        if job is not None:
            return _run(engine, kind, job_id, owner, bar)
        with engine.connect() as conn:
            found = jobs.get(conn, job_id)
        if found is None:
            return jobs.FAILED
        _show(bar, found)
        if found["state"] in (jobs.DONE, jobs.FAILED):
            return str(found["state"])
        time.sleep(0.5)


def _run(engine: Engine, kind: JobKind, job_id: int, owner: str, bar: Any) -> str:
    try:
        while True:
            with engine.begin() as conn:
                more = run_step(conn, kind, job_id, owner)
                found = jobs.get(conn, job_id)
            if found is not None:
                _show(bar, found)
            if not more:
                return jobs.DONE
    except KeyboardInterrupt:
        with engine.begin() as conn:
            jobs.release(conn, job_id, owner)
        message = f"interrupted: run the same command to resume job {job_id}"
        raise click.ClickException(message) from None
    except jobs.JobLost as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:
        with engine.begin() as conn:
            jobs.fail(conn, job_id, owner, f"{type(exc).__name__}: {exc}")
        raise


def _show(bar: Any, job: dict[str, object]) -> None:
    total, done = int(str(job["total"] or 0)), int(str(job["done"] or 0))
    bar.length = max(total, done, 1)
    bar.pos = 0
    bar.update(done)
