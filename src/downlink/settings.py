"""Settings: one typed object, read from the environment, each entry documented.

Every setting is listed in ``SETTINGS`` with its environment variable, default and help
text; ``docs/settings.md`` is checked against this registry by the test suite.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from downlink.sources import registry
from downlink.sources.base import SourceSetting
from downlink.sources.registry import Sources

log = logging.getLogger(__name__)

CLEAR_LINUX_TID = "6907c830-eed9-4ce9-81ae-76daf8d88f0f"
# DOWNLINK_RUN_CONSUMERS: the background work in every `serve` worker, or none there.
RUN_CONSUMERS = ("in-process", "off")


class SettingsError(ValueError):
    """A setting has a value that cannot be used."""


@dataclass(frozen=True)
class Setting:
    """One entry of the settings registry."""

    name: str
    env: str
    default: Any
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "database_url",
        "DATABASE_URL",
        "sqlite:///downlink.db",
        "SQLAlchemy URL of the store: a SQLite file (default) or postgresql://…",
    ),
    Setting(
        "database_read_url",
        "DATABASE_READ_URL",
        "",
        "postgresql://… of a streaming replica of DATABASE_URL: pages, reports, exports and "
        "API reads go there, writes (and reads that must see them) to the primary. Empty: "
        "everything on DATABASE_URL.",
    ),
    Setting(
        "telemetry_ids",
        "DOWNLINK_TELEMETRY_IDS",
        (CLEAR_LINUX_TID,),
        "Comma-separated X-Telemetry-TID values the collector accepts; '*' accepts any.",
    ),
    Setting(
        "batch_max",
        "DOWNLINK_BATCH_MAX",
        512,
        "Most records committed in one group-commit transaction.",
    ),
    Setting(
        "batch_wait_ms",
        "DOWNLINK_BATCH_WAIT_MS",
        2.0,
        "How long the writer waits for more records before committing a batch (ms).",
    ),
    Setting(
        "queue_max",
        "DOWNLINK_QUEUE_MAX",
        20000,
        "Records waiting for commit before the collector answers 503 with Retry-After.",
    ),
    Setting(
        "max_body_bytes",
        "DOWNLINK_MAX_BODY_BYTES",
        8 * 1024 * 1024,
        "Largest request body accepted by any ingest endpoint; larger gets 413.",
    ),
    Setting(
        "sqlite_synchronous",
        "DOWNLINK_SQLITE_SYNCHRONOUS",
        "FULL",
        "SQLite PRAGMA synchronous: FULL fsyncs every commit (durable on power loss).",
    ),
    Setting(
        "api_limit_max",
        "DOWNLINK_API_LIMIT_MAX",
        10000,
        "Largest and default `limit` of GET /api/records.",
    ),
    Setting(
        "api_page_bytes",
        "DOWNLINK_API_PAGE_BYTES",
        32 * 1024 * 1024,
        "Most record bytes in one JSON page of GET /api/records; the rest is on next pages.",
    ),
    # -- hardening (security, limits, spool) --------------------------------------
    Setting(
        "api_tokens",
        "DOWNLINK_API_TOKENS",
        (),
        "Comma-separated Bearer tokens; when set, the query API and admin paths need one.",
    ),
    Setting(
        "collector_auth",
        "DOWNLINK_COLLECTOR_AUTH",
        False,
        "Require one of DOWNLINK_API_TOKENS on the ingest endpoints too (default: open).",
    ),
    Setting(
        "rate_limit",
        "DOWNLINK_RATE_LIMIT",
        0.0,
        "Requests per second allowed per client address (token bucket); 0 turns it off.",
    ),
    Setting(
        "rate_burst",
        "DOWNLINK_RATE_BURST",
        100,
        "Requests a client address may send at once before DOWNLINK_RATE_LIMIT applies.",
    ),
    Setting(
        "sender_binding",
        "DOWNLINK_SENDER_BINDING",
        (),
        "Comma-separated sources whose sender ids are bound on first use (fuelstats, "
        "clearlinux, substrate); later posts that do not match are refused or flagged "
        "as each source's rule says (docs/senders.md). Empty: no binding.",
    ),
    Setting(
        "sender_ipv4_prefix",
        "DOWNLINK_SENDER_IPV4_PREFIX",
        24,
        "Prefix length of the IPv4 network a sender id is bound to (0: any network).",
    ),
    Setting(
        "sender_ipv6_prefix",
        "DOWNLINK_SENDER_IPV6_PREFIX",
        56,
        "Prefix length of the IPv6 network a sender id is bound to (0: any network).",
    ),
    Setting(
        "sender_cert_header",
        "DOWNLINK_SENDER_CERT_HEADER",
        "",
        "Request header in which the TLS-terminating proxy passes the client certificate's "
        "fingerprint (it must overwrite any the client sends); empty: none.",
    ),
    Setting(
        "sender_rate_limit",
        "DOWNLINK_SENDER_RATE_LIMIT",
        0.0,
        "Posts per second allowed per sender id of a source that names its senders, "
        "beside the per-address limit (0: unlimited). Over it: 429 with Retry-After.",
    ),
    Setting(
        "sender_rate_burst",
        "DOWNLINK_SENDER_RATE_BURST",
        20,
        "Posts a sender id may send at once before DOWNLINK_SENDER_RATE_LIMIT applies.",
    ),
    Setting(
        "max_header_bytes",
        "DOWNLINK_MAX_HEADER_BYTES",
        32 * 1024,
        "Largest total size of a request's headers; larger gets 431.",
    ),
    Setting(
        "client_timeout",
        "DOWNLINK_CLIENT_TIMEOUT",
        10.0,
        "Seconds a client may pause while sending a request, or leave its answers unread.",
    ),
    Setting(
        "request_timeout",
        "DOWNLINK_REQUEST_TIMEOUT",
        60.0,
        "Seconds a request body may take in all, however steadily it trickles; then 408.",
    ),
    Setting(
        "connection_buffer_bytes",
        "DOWNLINK_CONNECTION_BUFFER_BYTES",
        256 * 1024,
        "Answer bytes buffered per connection; past it the connection's requests wait unread.",
    ),
    Setting(
        "spool_dir",
        "DOWNLINK_SPOOL_DIR",
        "",
        "Directory of the local durable spool used while the database is down; empty: off.",
    ),
    Setting(
        "archive",
        "DOWNLINK_ARCHIVE",
        "",
        "Raw archive of the sources' rows (gzipped NDJSON by UTC day, kept by the server's "
        "archive consumers; `downlink archive` catches up by hand): a directory or "
        "s3://bucket/prefix; empty: off.",
    ),
    Setting(
        "archive_grace_s",
        "DOWNLINK_ARCHIVE_GRACE_S",
        3600.0,
        "Seconds after a UTC day ends before the archive closes it (writes its final files "
        "from its open segments); a row of a closed day committed later reopens it.",
    ),
    Setting(
        "archive_linger_s",
        "DOWNLINK_ARCHIVE_LINGER_S",
        10.0,
        "Seconds the archive consumer waits after a partial batch, so that each open "
        "segment (one object per batch and hour) holds more rows.",
    ),
    Setting(
        "archive_batch_max",
        "DOWNLINK_ARCHIVE_BATCH_MAX",
        5000,
        "Most rows the archive consumer stages per transaction.",
    ),
    Setting(
        "archive_close_s",
        "DOWNLINK_ARCHIVE_CLOSE_S",
        60.0,
        "Seconds between the server's looks for archive days to close; 0: never (then "
        "`downlink archive` closes them).",
    ),
    Setting(
        "archive_s3_endpoint",
        "DOWNLINK_ARCHIVE_S3_ENDPOINT",
        "",
        "Endpoint URL of S3-compatible storage (MinIO, Ceph…) for an s3:// DOWNLINK_ARCHIVE; "
        "empty: AWS.",
    ),
    Setting(
        "spool_max_bytes",
        "DOWNLINK_SPOOL_MAX_BYTES",
        256 * 1024 * 1024,
        "Most bytes of records the spool holds; when full the collector answers 503.",
    ),
    Setting(
        "bulk_max_items",
        "DOWNLINK_BULK_MAX_ITEMS",
        10000,
        "Most records in one POST /api/v1/records/bulk request.",
    ),
    # -- background work: the retention purge, jobs, consumers ----------------------
    Setting(
        "purge_interval_s",
        "DOWNLINK_PURGE_INTERVAL_S",
        600.0,
        "Seconds between runs of the background purge of expired rows (every source with "
        "a retention); 0 turns it off.",
    ),
    Setting(
        "job_poll_s",
        "DOWNLINK_JOB_POLL_S",
        1.0,
        "Seconds between looks for queued background jobs (crash regrouping); 0: none here.",
    ),
    Setting(
        "consumer_poll_s",
        "DOWNLINK_CONSUMER_POLL_S",
        0.25,
        "Seconds between looks for rows the consumers (processing after the ack) have not "
        "handled; 0: no consumer runs in this process.",
    ),
    Setting(
        "run_consumers",
        "DOWNLINK_RUN_CONSUMERS",
        "in-process",
        "Where the background work runs (consumers, jobs, the archive closer): in-process (every "
        "`downlink serve` worker) or off (none in `serve`: run `downlink consume` beside it; "
        "docs/deployment.md).",
    ),
    Setting(
        "consumer_retry_max_s",
        "DOWNLINK_CONSUMER_RETRY_MAX_S",
        60.0,
        "Longest wait before a failing consumer tries its batch again (it doubles from 0.5 s).",
    ),
    Setting(
        "task_lease_s",
        "DOWNLINK_TASK_LEASE_S",
        15.0,
        "How long a process's claim on a background task (OONI's archive) lasts unless "
        "renewed (every third of it): a process killed mid-task has its task taken over "
        "this long after.",
    ),
    Setting(
        "gc_freeze",
        "DOWNLINK_GC_FREEZE",
        True,
        "Freeze the objects alive after startup out of the garbage collector's scans "
        "(gc.freeze): a full collection then pauses the server for milliseconds, not a "
        "tenth of a second (docs/performance.md).",
    ),
    Setting(
        "access_log",
        "DOWNLINK_ACCESS_LOG",
        "off",
        "Access log on standard output: off, plain (a text line per request) or json (JSON lines).",
    ),
    Setting(
        "web_plugins",
        "DOWNLINK_WEB_PLUGINS",
        ("downlink.sources.clearlinux.severity_plugin",),
        "Comma-separated modules of web plug-in views (see docs/web.md); 'none' for none.",
    ),
    Setting(
        "analytics_url",
        "DOWNLINK_ANALYTICS_URL",
        "",
        "Optional ClickHouse analytics store: clickhouse://user:pw@host:8123/db, "
        "clickhouses://… (HTTPS) or chdb://PATH (in-process engine, one worker); shippers copy "
        "the event tables there and the heavy reads come from it (docs/clickhouse.md).",
    ),
    Setting(
        "source_modules",
        "DOWNLINK_SOURCES",
        (),
        "Comma-separated modules of extra sources, beside the built-in and entry-point ones "
        "(see docs/architecture.md, Adding a source).",
    ),
)

_BY_NAME = {s.name: s for s in SETTINGS}


def _parse(setting: Setting | SourceSetting, raw: str) -> Any:
    default = setting.default
    try:
        if isinstance(default, bool):
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, tuple):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise SettingsError(f"{setting.env}={raw!r} is not a valid value: {exc}") from exc
    return raw


@dataclass(frozen=True)
class Settings:
    """The effective configuration of one Downlink server."""

    database_url: str = "sqlite:///downlink.db"
    database_read_url: str = ""
    telemetry_ids: tuple[str, ...] = (CLEAR_LINUX_TID,)
    batch_max: int = 512
    batch_wait_ms: float = 2.0
    queue_max: int = 20000
    max_body_bytes: int = 8 * 1024 * 1024
    sqlite_synchronous: str = "FULL"
    api_limit_max: int = 10000
    api_page_bytes: int = 32 * 1024 * 1024
    api_tokens: tuple[str, ...] = ()
    collector_auth: bool = False
    rate_limit: float = 0.0
    rate_burst: int = 100
    sender_binding: tuple[str, ...] = ()
    sender_ipv4_prefix: int = 24
    sender_ipv6_prefix: int = 56
    sender_cert_header: str = ""
    sender_rate_limit: float = 0.0
    sender_rate_burst: int = 20
    max_header_bytes: int = 32 * 1024
    client_timeout: float = 10.0
    request_timeout: float = 60.0
    connection_buffer_bytes: int = 256 * 1024
    spool_dir: str = ""
    archive: str = ""
    archive_s3_endpoint: str = ""
    archive_grace_s: float = 3600.0
    archive_linger_s: float = 10.0
    archive_batch_max: int = 5000
    archive_close_s: float = 60.0
    spool_max_bytes: int = 256 * 1024 * 1024
    bulk_max_items: int = 10000
    purge_interval_s: float = 600.0
    job_poll_s: float = 1.0
    consumer_poll_s: float = 0.25
    run_consumers: str = "in-process"
    consumer_retry_max_s: float = 60.0
    task_lease_s: float = 15.0
    gc_freeze: bool = True
    access_log: str = "off"
    web_plugins: tuple[str, ...] = ("downlink.sources.clearlinux.severity_plugin",)
    source_modules: tuple[str, ...] = ()
    analytics_url: str = ""
    # Per-source settings, ``sources[<source>][<setting>]``: every source's defaults
    # overlaid with what was given (filled in by __post_init__ from the registry).
    sources: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.batch_max < 1:
            raise SettingsError("DOWNLINK_BATCH_MAX must be at least 1")
        if self.queue_max < self.batch_max:
            raise SettingsError("DOWNLINK_QUEUE_MAX must be at least DOWNLINK_BATCH_MAX")
        if self.batch_wait_ms < 0:
            raise SettingsError("DOWNLINK_BATCH_WAIT_MS must not be negative")
        _check_database_url(self.database_url)
        _check_read_url(self.database_url, self.database_read_url)
        _check_analytics_url(self.analytics_url)
        _check_archive(self.archive)
        if self.sqlite_synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise SettingsError("DOWNLINK_SQLITE_SYNCHRONOUS must be OFF, NORMAL, FULL or EXTRA")
        _check_background(self)
        _check_hardening(self)
        if self.access_log not in ("off", "plain", "json"):
            raise SettingsError("DOWNLINK_ACCESS_LOG must be off, plain or json")
        object.__setattr__(self, "sources", _source_settings(self))

    @property
    def registry(self) -> Sources:
        """The sources of this server (built-in, entry points, ``DOWNLINK_SOURCES``)."""
        return _load_sources(self.source_modules)

    @property
    def any_tid(self) -> bool:
        """True when the collector accepts every telemetry id."""
        return "*" in self.telemetry_ids or not self.telemetry_ids

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with some values changed."""
        if "source_modules" in changes and "sources" not in changes:
            kept = _load_sources(tuple(changes["source_modules"])).names
            changes["sources"] = {k: v for k, v in self.sources.items() if k in kept}
        return dataclasses.replace(self, **changes)

    def public(self) -> dict[str, Any]:
        """Return the effective values, with the database password hidden."""
        out: dict[str, Any] = {}
        for s in SETTINGS:
            value = getattr(self, s.name)
            if s.name in ("database_url", "database_read_url", "analytics_url") and value:
                value = _hide_password(str(value))
            if s.name == "api_tokens":
                value = tuple("***" for _ in value)
            out[s.name] = list(value) if isinstance(value, tuple) else value
        out["sources"] = {
            name: {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
            for name, values in self.sources.items()
        }
        return out


def _load_sources(modules: tuple[str, ...]) -> Sources:
    try:
        return registry.load(modules)
    except registry.SourceError as exc:
        raise SettingsError(f"DOWNLINK_SOURCES: {exc}") from exc


def _source_settings(s: Settings) -> dict[str, dict[str, Any]]:
    sources = _load_sources(s.source_modules)
    try:
        values = registry.merged(sources, s.sources)
    except registry.SourceError as exc:
        raise SettingsError(str(exc)) from exc
    for source, setting in sources.settings:
        if setting.check is not None:
            try:
                setting.check(values[source.name][setting.name])
            except ValueError as exc:
                raise SettingsError(f"{setting.env}: {exc}") from None
    return values


def _check_database_url(url: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError as exc:
        raise SettingsError(f"DATABASE_URL {url!r} is not a database URL: {exc}") from None
    if backend not in ("sqlite", "postgresql"):
        raise SettingsError(
            f"DATABASE_URL must be sqlite:///… or postgresql://…, not {backend}://"
        )


def _check_archive(url: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("", "file", "s3") or (parts.scheme == "s3" and not parts.netloc):
        raise SettingsError(
            f"DOWNLINK_ARCHIVE: {url!r} is not a directory, file:// or s3://bucket/prefix URL"
        )


def _check_analytics_url(url: str) -> None:
    if not url:
        return
    from downlink.analytics.client import AnalyticsError, parse_url

    try:
        parse_url(url)
    except AnalyticsError as exc:
        raise SettingsError(str(exc)) from None


def _check_read_url(url: str, read_url: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if not read_url:
        return
    try:
        backend = make_url(read_url).get_backend_name()
    except ArgumentError as exc:
        raise SettingsError(
            f"DATABASE_READ_URL {_hide_password(read_url)!r} is not a database URL: {exc}"
        ) from None
    if backend != "postgresql" or make_url(url).get_backend_name() != "postgresql":
        raise SettingsError(
            "DATABASE_READ_URL names a PostgreSQL replica of a PostgreSQL DATABASE_URL"
            f" (here {backend}:// of {make_url(url).get_backend_name()}://)"
        )


def _check_background(s: Settings) -> None:
    for name in ("purge_interval_s", "job_poll_s", "consumer_poll_s", "archive_grace_s",
                 "archive_linger_s", "archive_close_s"):
        if getattr(s, name) < 0:
            raise SettingsError(f"{_BY_NAME[name].env} must not be negative")
    if s.archive_batch_max < 1:
        raise SettingsError(f"{_BY_NAME['archive_batch_max'].env} must be at least 1")
    if s.run_consumers not in RUN_CONSUMERS:
        raise SettingsError("DOWNLINK_RUN_CONSUMERS must be in-process or off")
    if s.consumer_retry_max_s < 0.5:
        raise SettingsError("DOWNLINK_CONSUMER_RETRY_MAX_S must be at least 0.5")
    if s.task_lease_s < 1.0:
        raise SettingsError("DOWNLINK_TASK_LEASE_S must be at least 1")


def _check_hardening(s: Settings) -> None:
    if s.rate_limit < 0 or s.rate_burst < 1:
        raise SettingsError("DOWNLINK_RATE_LIMIT must not be negative, DOWNLINK_RATE_BURST >= 1")
    if s.client_timeout <= 0 or s.request_timeout <= 0:
        raise SettingsError("DOWNLINK_CLIENT_TIMEOUT and DOWNLINK_REQUEST_TIMEOUT must be positive")
    if s.connection_buffer_bytes < 4096:
        raise SettingsError("DOWNLINK_CONNECTION_BUFFER_BYTES must be at least 4096")
    if s.api_page_bytes < 1:
        raise SettingsError("DOWNLINK_API_PAGE_BYTES must be at least 1")
    if s.max_header_bytes < 1024:
        raise SettingsError("DOWNLINK_MAX_HEADER_BYTES must be at least 1024")
    if s.spool_max_bytes < 1 or s.bulk_max_items < 1:
        raise SettingsError("DOWNLINK_SPOOL_MAX_BYTES and DOWNLINK_BULK_MAX_ITEMS must be >= 1")
    if s.collector_auth and not s.api_tokens:
        raise SettingsError("DOWNLINK_COLLECTOR_AUTH needs DOWNLINK_API_TOKENS")
    _check_senders(s)


def _check_senders(s: Settings) -> None:
    if not 0 <= s.sender_ipv4_prefix <= 32:
        raise SettingsError("DOWNLINK_SENDER_IPV4_PREFIX must be between 0 and 32")
    if not 0 <= s.sender_ipv6_prefix <= 128:
        raise SettingsError("DOWNLINK_SENDER_IPV6_PREFIX must be between 0 and 128")
    if s.sender_rate_limit < 0 or s.sender_rate_burst < 1:
        raise SettingsError(
            "DOWNLINK_SENDER_RATE_LIMIT must not be negative, DOWNLINK_SENDER_RATE_BURST >= 1"
        )
    header = s.sender_cert_header
    if header and not all(c.isalnum() or c in "-_" for c in header):
        raise SettingsError(f"DOWNLINK_SENDER_CERT_HEADER: {header!r} is not a header name")


def _hide_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL is shown as given, minus nothing secret
        return "<unparseable>"


def _source_env(setting: SourceSetting, env: Mapping[str, str]) -> str | None:
    """The value given for a source setting: its variable, else a former name of it."""
    if env.get(setting.env, "") != "":
        return env[setting.env]
    for old in setting.old_env:
        if env.get(old, "") != "":
            log.warning("%s is deprecated: use %s (same meaning)", old, setting.env)
            return env[old]
    return None


def from_env(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from environment variables, then apply explicit overrides."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for s in SETTINGS:
        if s.env in env and env[s.env] != "":
            values[s.name] = _parse(s, env[s.env])
    for key, value in overrides.items():
        if key not in _BY_NAME and key != "sources":
            raise SettingsError(f"unknown setting {key!r}")
        if value is not None:
            values[key] = value
    modules = values.get("source_modules", _BY_NAME["source_modules"].default)
    given: dict[str, dict[str, Any]] = {}
    for source, setting in _load_sources(tuple(modules)).settings:
        raw = _source_env(setting, env)
        if raw is not None:
            given.setdefault(source.name, {})[setting.name] = _parse(setting, raw)
    for name, explicit in dict(values.pop("sources", {})).items():
        given.setdefault(name, {}).update(explicit)
    return Settings(**values, sources=given)
