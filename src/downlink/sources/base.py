"""What a source is: the one declaration the core iterates to plug a source in.

A source (Clear Linux, substrate nodes, OONI, fuel-stats, or a third party's) lives in
one folder, ``downlink/sources/<name>/``, whose ``source.py`` builds one :class:`Source`.
The core (store, writer, spool, jobs, HTTP plumbing, web shell, CLI, security) reads
these fields and never names a source.

This module only declares the shapes; the registry that finds sources and the core
code that consumes each field live beside it (``downlink.sources.registry``) and in
the core packages. Fields may be added; none is renamed without a deprecation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import APIRouter
    from prometheus_client import CollectorRegistry
    from sqlalchemy import ColumnElement, Connection, MetaData, Table
    from starlette.routing import BaseRoute
    from starlette.types import Receive, Scope, Send

    from downlink.settings import Settings
    from downlink.store.sinks import Sink


@dataclass(frozen=True)
class SourceSetting:
    """One setting a source adds: ``env`` variable, parsed ``default``, ``help`` text.

    Read by the core settings loader into ``Settings.sources[<source>][<name>]`` and
    listed in docs/settings.md like every core setting. The environment value is parsed
    by the type of ``default`` (bool, int, float, tuple for a comma-separated list,
    else str); ``check(value)`` may raise ValueError with a message to refuse it.
    ``old_env``: former names of the variable, still read when ``env`` is not set
    (with a warning naming ``env``), so that renaming a setting breaks no deployment.
    """

    name: str
    env: str
    default: Any
    help: str
    check: Callable[[Any], None] | None = None
    old_env: tuple[str, ...] = ()


@dataclass(frozen=True)
class LogRecord:
    """One committed item of a source's log, as a consumer sees it.

    ``seq`` orders the log (the row id of the followed table); ``row`` is the stored
    row as a mapping; ``ts`` the reception time (epoch seconds).
    """

    seq: int
    ts: float
    row: Mapping[str, Any]


@dataclass(frozen=True)
class Consumer:
    """Derived data maintained after the ack, by following a committed table.

    ``follows`` names the table whose committed rows it reads in commit order (the
    core's ``records`` or a table of the source's ``metadata``; see
    ``downlink.store.follow`` for what a followed table needs). ``ts_column`` is its
    reception-time column (lag in seconds, reprocess ranges). ``handle(conn, batch)``
    runs in one transaction with the consumer's cursor update, so each committed row
    is applied exactly once; an exception rolls both back and the batch is retried
    later (with backoff), ingestion going on meanwhile. ``name`` is unique across
    sources (prefix it with the source's name). ``reset(conn, since, until)``
    deletes what ``handle`` derived from rows received in ``[since, until)`` (whole UTC
    days: ``downlink reprocess`` passes midnights) so that a reprocess of that range
    rebuilds it identically; ``None`` means the consumer is
    idempotent and replays need no reset. ``filters`` (:class:`ReprocessFilter`) become
    options of ``downlink reprocess`` narrowing it to matching rows, whose derived data
    ``reset_matching`` forgets; ``revision`` (:class:`Revision`) re-derives applied rows
    in place, without a reset.
    """

    name: str
    follows: str
    handle: Callable[[Connection, Sequence[LogRecord]], None]
    reset: Callable[[Connection, float, float], None] | None = None
    batch_max: int = 2000
    ts_column: str = "ts_reception"
    # Seconds to wait after a partial batch before the next one (a full batch goes on
    # at once): for a ``handle`` with a fixed cost per call, such as a ClickHouse insert.
    linger_s: float = 0.0
    # Named options narrowing ``downlink reprocess`` to some rows (``--ccs IT,DE``).
    filters: Sequence[ReprocessFilter] = ()
    # With ``filters``: forget what was derived from the rows of ``[since, until)``
    # that match the filters' values (``{filter name: values}``); required when both
    # ``reset`` and ``filters`` are given.
    reset_matching: (
        Callable[[Connection, float, float, Mapping[str, tuple[str, ...]]], None] | None
    ) = None
    # Re-deriving applied rows in place, without a reset (never an empty dashboard).
    revision: Revision | None = None


@dataclass(frozen=True)
class ReprocessFilter:
    """A named option narrowing a reprocess of a consumer to some rows.

    ``downlink reprocess`` adds ``--<name>`` (underscores as dashes) taking a comma-
    separated list; ``parse(value)`` normalises each item (``ValueError`` refuses it
    with its message) and ``where(table, values)`` selects the followed table's rows
    that match. The values are kept in the job's parameters (``/consumers`` shows
    them), and the consumer's ``reset_matching`` forgets only what those rows gave.
    """

    name: str
    help: str
    where: Callable[[Table, tuple[str, ...]], ColumnElement[bool]]
    parse: Callable[[str], str] = str.strip


@dataclass(frozen=True)
class Revision:
    """How a consumer re-derives rows it has applied, in place (``reprocess`` without
    a reset, so derived data is never shown empty or half rebuilt).

    ``apply(conn, batch)`` recomputes what ``handle`` derived from ``batch`` (rows the
    consumer has already applied) with today's inputs and swaps the old derived rows
    for the new ones in the caller's transaction, returning how many rows' derived
    data changed. ``where(table)`` narrows the rows walked (an indexed condition).
    ``kind`` is the job kind of the revisions the source queues itself (Clear Linux's
    ``regroup`` after a "never guilty" edit: ``downlink.pipeline.reprocess.
    request_revision``); the core registers it on the job runner. Revision jobs walk
    the rows by id, at most ``batch_max`` per transaction (fewer when a step of that
    many would hold the lock past its time budget: ``downlink.pipeline.stepsize``),
    holding the consumer's cursor row (the live consumer waits for one step at most),
    and start over when their ``restart`` flag is set (the inputs changed again).
    ``narrow(conn, table, items)`` selects the only rows an edit naming ``items`` can
    change (an indexed condition, evaluated at each step): a source queues such a
    narrowed job with ``request_revision(…, narrow=items)``; edits merged into one job
    unite their items, and one without items (or after a failed job) walks every row.
    """

    apply: Callable[[Connection, Sequence[LogRecord]], int]
    where: Callable[[Table], ColumnElement[bool]] | None = None
    kind: str | None = None
    narrow: Callable[[Connection, Table, Sequence[Any]], ColumnElement[bool]] | None = None


@dataclass(frozen=True)
class AnalyticsTable:
    """A table of the optional ClickHouse analytics store, filled by a shipper.

    ``name`` is the ClickHouse table; ``follows`` the SQL table whose committed rows a
    shipper consumer (named ``analytics_<name>``) copies into it, ``rows(conn, batch)``
    mapping a batch of :class:`LogRecord` to rows of ``columns`` (``(name, ClickHouse
    type)`` pairs, in order). The table is a ``ReplacingMergeTree(version)`` ordered by
    ``order_by``, which must identify one record (a replay replaces, never adds),
    partitioned by the month of ``time_column`` (epoch seconds) and expiring after the
    source's ``retention`` setting. ``ttl_where`` narrows which rows expire (a
    ClickHouse condition). ``rebuild``: raise it when ``order_by`` or a type changes,
    and the table is rebuilt once by a swap (``downlink.analytics.schema``). Columns
    are only ever added (``ADD COLUMN IF NOT EXISTS``).
    """

    name: str
    follows: str
    columns: Sequence[tuple[str, str]]
    order_by: Sequence[str]
    version: str
    time_column: str
    rows: Callable[[Connection, Sequence[LogRecord]], list[Sequence[Any]]]
    ts_column: str = "ts_reception"
    ttl_where: str | None = None
    rebuild: int = 1
    batch_max: int = 10000
    linger_s: float = 1.0


@dataclass(frozen=True)
class Archive:
    """Rows of a committed table that the core's raw archive keeps (``downlink.archive``).

    ``table`` names the table (the core's ``records`` or one of the source's
    ``metadata``), ``ts_column`` its reception time (epoch seconds: files are by UTC
    day of it) and ``id_column`` its increasing key (the line order, and the ``seq``
    of a replayed row). ``where(table)`` selects this source's rows of a shared table
    (``records.source == name``). ``name`` names the archive in the source's folder.
    ``downlink reprocess --from-archive`` replays a range of these rows through the
    source's consumers that follow ``table``. With ``DOWNLINK_ARCHIVE`` set, the core's
    archive consumer of ``table`` stages them after the ack, so ``table`` must be one a
    consumer can follow (``downlink.store.follow``; ``id_column`` is ``id``).
    """

    name: str
    table: str
    ts_column: str = "ts_reception"
    id_column: str = "id"
    where: Callable[[Table], ColumnElement[bool]] | None = None


@dataclass(frozen=True)
class JobProgress:
    """What one step of a job did: its new ``cursor``, items ``done`` in all, and
    optionally the ``total`` expected, new ``params`` (state kept between steps) and
    items ``changed`` in all."""

    cursor: int
    done: int
    total: int | None = None
    params: Mapping[str, Any] | None = None
    changed: int | None = None


@dataclass(frozen=True)
class JobKind:
    """A kind of background job a source runs on the core job runner.

    ``step(conn, job)`` does one short chunk of work, in one transaction with the job's
    progress, and returns the job's new cursor (or a :class:`JobProgress`), or ``None``
    when the job is complete. ``job`` is the job's row: ``id``, ``params`` (JSON),
    ``cursor``, ``done``, ``total``. Queue one with ``downlink.store.jobs.enqueue(conn,
    kind, params)``; a job whose process dies resumes from its last cursor elsewhere.
    """

    kind: str
    step: Callable[[Connection, Mapping[str, Any]], int | JobProgress | None]


@dataclass(frozen=True)
class JobContext:
    """What a :class:`JobDriver` gets for one claimed job.

    ``store`` is the process's ``Store`` (``read_primary(fn, …)`` off the event loop,
    ``admin_write(fn, …)`` one short write transaction, in line with the record
    batches on SQLite, ``is_sqlite``); ``job`` the claimed row; ``owner`` the claim's
    token; ``chunk`` the runner's chunk size; ``stopping()`` turns true when the server
    shuts down (release the job with ``downlink.store.jobs.release`` and return).
    """

    store: Any
    job: Mapping[str, Any]
    owner: str
    chunk: int
    stopping: Callable[[], bool]


@dataclass(frozen=True)
class JobDriver:
    """A kind of job that drives its own transactions (reads between its writes).

    For work a :class:`JobKind`'s one-step-per-transaction shape does not fit (Clear
    Linux's regroup aggregates a crash group on a read connection, then writes it in
    parts). ``run(ctx)`` runs the claimed job to its end (or until
    ``ctx.stopping()``) and returns a short outcome for the log; each of its write
    transactions must check the claim (``downlink.store.jobs`` raises ``JobLost``).
    """

    kind: str
    run: Callable[[JobContext], Awaitable[str]]


@dataclass(frozen=True)
class TaskContext:
    """What one run of a :class:`Task` gets (it runs in a worker thread).

    ``read(fn, *args)`` runs ``fn(conn, *args)`` in a read transaction on the primary;
    ``write(fn, *args)`` runs it in a write transaction (in line with the record
    batches on SQLite) that first renews this process's lease on the task and raises
    ``downlink.pipeline.tasks.TaskLost`` when another process has taken it, so that
    only the lease holder ever commits the task's work. ``settings`` are the process's;
    ``stopping()`` turns true when the process shuts down or the lease was lost
    (finish the unit in hand, or drop it: it is done again by the next run).
    """

    read: Callable[..., Any]
    write: Callable[..., Any]
    settings: Settings
    stopping: Callable[[], bool]


@dataclass(frozen=True)
class Task:
    """Periodic background work of a source: derived data kept without any command.

    Run by every process that runs the consumers (each ``downlink serve`` worker, or
    ``downlink consume`` with ``DOWNLINK_RUN_CONSUMERS=off``) every ``every(settings)``
    seconds (0 or less: this configuration does not run it). One process at a
    time holds the task's lease (the ``tasks`` table, renewed while it runs, taken over
    once it lapses after a crash); ``run(ctx)`` does every unit of work that is due,
    each unit one idempotent piece committed through ``ctx.write``, and returns how
    many units it did. A run that raises is recorded (``/consumers`` shows the error)
    and retried after 0.5 s, doubling up to ``DOWNLINK_CONSUMER_RETRY_MAX_S`` (never
    later than ``every``). ``describe(conn, settings, now)``: one line of progress for
    ``/consumers`` (what is done, what waits). ``name`` is unique across sources.
    """

    name: str
    every: Callable[[Settings], float]
    run: Callable[[TaskContext], int]
    describe: Callable[[Connection, Settings, float], str] | None = None


@dataclass(frozen=True)
class NavEntry:
    """A tab of the navigation bar.

    ``keeps_period``: the page takes ``from``/``to``/``range``, so the bar carries the
    current period to it (as it does between the core's dashboards).
    """

    key: str
    label: str
    href: str
    keeps_period: bool = False


@dataclass(frozen=True)
class SenderRule:
    """How a source names its senders, for trust on first use (docs/senders.md).

    ``id_name`` is what the sender id is called on the wire (``master_node_uid``,
    ``machine_id``, the peer id); the source's handlers extract it and ask
    ``downlink.security.senders`` whether a post matches the id's binding.
    ``on_mismatch`` is what happens to a post that does not: ``"refuse"`` (answered
    403, nothing stored) or ``"flag"`` (stored with ``sender_flagged`` set and left out
    of reports and dashboards: for clients that cannot be changed to present a secret).
    ``secret``: the protocol can return the binding's secret in a response header the
    sender may keep (HTTP); a websocket source binds by network or certificate only.
    ``rule`` is one sentence for the senders page and ``downlink senders list``.
    """

    id_name: str
    on_mismatch: str
    secret: bool = True
    rule: str = ""

    def __post_init__(self) -> None:
        if self.on_mismatch not in ("refuse", "flag"):
            raise ValueError(f"on_mismatch must be 'refuse' or 'flag', not {self.on_mismatch!r}")


@dataclass(frozen=True)
class Source:
    """Everything one source brings.

    * ``name``: short slug, also the value of ``records.source`` where it stores there.
    * ``routers``: FastAPI routers (ingest endpoints, API, pages) included by the app.
    * ``routes``: plain Starlette routes (websockets, hot-path endpoints).
    * ``direct_posts``: ``{path: ASGI endpoint}`` for POSTs the application serves
      straight from its ``__call__``, past the middleware and the router, wrapped in
      the same checks (``security.guard``); their ``routes`` are matched first too.
      The hot path of a single-record collector (Clear Linux's ``/v2/collector``).
      ``direct_post_prefixes``: the same for ``{prefix: ASGI endpoint}``, serving
      every path made of the prefix (starting and ending with ``/``) and one more
      segment; the endpoint reads its parameter from ``scope["path"]`` (OONI's
      ``POST /report/{report_id}``).
    * ``search(conn, text)``: what the search box finds among the source's data, as
      keys added to ``/search.json``'s ``found`` (from indexes or small tables, never
      a scan); ``search_template``: a template (``"<name>/…"``) rendering them as
      ``<li>`` items of the results (it gets ``f``, the ``found`` mapping).
    * ``record_template``: a template (``"<name>/…"``) adding ``<dt>``/``<dd>`` fields to
      the page of one of the source's records (``/records/{id}``; it gets ``r``, the
      record): Clear Linux links a crash record to its crash group.
    * ``openapi_paths()``: OpenAPI path items of routes FastAPI does not describe
      (plain Starlette ones), merged into ``/openapi.json``.
    * ``ingest_paths`` / ``ingest_websockets``: paths that deliver telemetry (open
      when API tokens are configured, rate-limited as ingest).
      ``ingest_prefixes``: POST path prefixes that deliver telemetry (OONI's
      ``/report/{report_id}``); ``open_reads``: paths open to GET/HEAD without a token
      (a sender's probe such as fuel-stats' ping, a public read API).
    * ``metadata`` / ``migrations``: the source's own tables and the folder of its own
      Alembic revisions (a separate version location and branch; a migration never
      imports live application code).
    * ``consumers``, ``job_kinds``: post-ack processing and background work;
      ``job_drivers``: background jobs that drive their own transactions;
      ``tasks``: periodic background work (:class:`Task`: OONI's hourly archive).
    * ``nav``: navigation tabs; ``templates``/``static``: folders the web shell serves.
    * ``settings``: the source's settings; ``metrics(registry)`` registers its metrics.
    * ``archives``: rows the core's raw archive keeps as gzipped NDJSON by day
      (:class:`Archive`; ``downlink archive``), so that they stay re-processable once
      retention removes them from the database.
    * ``sinks``: the source's write sinks (``downlink.store.sinks.Sink``): its own
      tables written with group commit and the spool, like records.
    * ``server_options(settings)``: options for the uvicorn server (websocket pings
      and frame size), merged by ``downlink serve``.
    * ``purge(conn, before_ts)``: deletes the source's rows older than the retention
      cut-off and returns how many went. Keep each call short (at most a few thousand
      rows): the core calls it again, one transaction each, until it returns 0.
    * ``retention``: the name of one of ``settings`` holding the retention in hours
      (``before_ts`` is now minus that; 0 or less keeps everything, so no purge runs).
      Without it ``purge`` is never called.
    * ``purge_batch``: the name of one of ``settings`` holding the most rows one call
      may delete; when set, the core calls ``purge(conn, before_ts, limit)``.
    * ``records_expiry``: for a source whose ``purge`` deletes some of its rows of the
      core's ``records``, which ones as a ClickHouse condition on the analytics store's
      ``records`` (``source = 'x' AND NOT audit``): they expire there after
      ``retention`` too.
    * ``ws_stall``: the name of one of ``settings`` holding the seconds a websocket
      peer may leave its answers unread while its connection's output buffer is full
      (``downlink.security.protocol``; the largest over sources; none declared:
      ``DOWNLINK_CLIENT_TIMEOUT``).
    * ``analytics_tables``: the source's tables in the optional ClickHouse analytics
      store (:class:`AnalyticsTable`), each filled by a shipper consumer;
      ``analytics_reads(analytics)`` builds the source's ClickHouse implementation of
      its heavy reads from a :class:`downlink.analytics.client.Analytics` (the source
      picks it over its SQL one when the store is configured).
    * ``senders``: the source's sender ids and its rule for posts that do not match
      their binding (:class:`SenderRule`); bound only when ``DOWNLINK_SENDER_BINDING``
      names the source, rate-limited per id when ``DOWNLINK_SENDER_RATE_LIMIT`` is set.
    """

    name: str
    title: str
    routers: Sequence[APIRouter] = ()
    routes: Sequence[BaseRoute] = ()
    ingest_paths: frozenset[str] = frozenset()
    ingest_websockets: frozenset[str] = frozenset()
    ingest_prefixes: tuple[str, ...] = ()
    open_reads: frozenset[str] = frozenset()
    metadata: MetaData | None = None
    migrations: Path | None = None
    consumers: Sequence[Consumer] = ()
    job_kinds: Sequence[JobKind] = ()
    nav: Sequence[NavEntry] = ()
    templates: Path | None = None
    static: Path | None = None
    settings: Sequence[SourceSetting] = ()
    metrics: Callable[[CollectorRegistry], Any] | None = None
    purge: Callable[..., int] | None = None
    retention: str | None = None
    purge_batch: str | None = None
    records_expiry: str | None = None
    ws_stall: str | None = None
    sinks: Sequence[Sink] = ()
    server_options: Callable[[Settings], Mapping[str, Any]] | None = None
    archives: Sequence[Archive] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)
    analytics_tables: Sequence[AnalyticsTable] = ()
    analytics_reads: Callable[[Any], Any] | None = None
    job_drivers: Sequence[JobDriver] = ()
    direct_posts: Mapping[str, Callable[[Scope, Receive, Send], Awaitable[None]]] = field(
        default_factory=dict
    )
    direct_post_prefixes: Mapping[
        str, Callable[[Scope, Receive, Send], Awaitable[None]]
    ] = field(default_factory=dict)
    openapi_paths: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None
    search: Callable[[Connection, str], Mapping[str, Any]] | None = None
    search_template: str | None = None
    record_template: str | None = None
    senders: SenderRule | None = None
    tasks: Sequence[Task] = ()
