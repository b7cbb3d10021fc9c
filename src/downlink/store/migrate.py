"""Apply the Alembic migrations of the core and of every source.

The core's revisions live in ``store/migrations/versions``; each source with tables of
its own brings a folder of revisions (``Source.migrations``), a separate Alembic
version location whose first revision has ``down_revision = None`` and the source's
name as its branch label. Upgrading to ``heads`` applies every branch; Alembic orders
them by their dependencies (a source revision that needs a core table says
``depends_on = "0001"``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Connection, Engine, MetaData

from downlink.sources import registry
from downlink.sources.registry import Sources
from downlink.store import follow

MIGRATIONS = Path(__file__).with_name("migrations")
VERSIONS = MIGRATIONS / "versions"


def version_locations(sources: Sources) -> list[Path]:
    """The core's revision folder, then each source's, in source order."""
    return [VERSIONS, *(folder for _name, folder in sources.migrations)]


def alembic_config(engine: Engine, sources: Sources | None = None) -> Config:
    """Return an Alembic config over the core's and ``sources``' migrations.

    ``sources`` defaults to the built-in and entry-point ones.
    """
    found = registry.load() if sources is None else sources
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "newline")
    cfg.set_main_option("version_locations", "\n".join(map(str, version_locations(found))))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    cfg.attributes["source_metadata"] = found.metadata()
    return cfg


def upgrade(engine: Engine, revision: str = "heads", sources: Sources | None = None) -> None:
    """Bring the database up to ``revision`` (default: every head, core and sources)."""
    cfg = alembic_config(engine, sources)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def pending(engine: Engine, sources: Sources | None = None) -> list[str]:
    """Return the revisions not yet applied, in a valid order: the core's first, then
    each source's in source order (a revision always after those it depends on)."""
    found = registry.load() if sources is None else sources
    script = ScriptDirectory.from_config(alembic_config(engine, found))
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    applied: set[str] = set()
    for head in current:
        applied.update(r.revision for r in script.iterate_revisions(head, "base"))
    todo = {r.revision: r for r in script.walk_revisions() if r.revision not in applied}
    folders = [str(p.resolve()) for p in version_locations(found)]

    def rank(rev: Script) -> int:
        where = str(Path(rev.path).resolve().parent)
        return folders.index(where) if where in folders else len(folders)

    def needs(rev: Script) -> set[str]:
        out: set[str] = set()
        for ref in (*_as_tuple(rev.down_revision), *_as_tuple(rev.dependencies)):
            target = script.get_revision(ref)
            if target is not None and target.revision in todo:
                out.add(target.revision)
        return out

    waiting = {name: needs(rev) for name, rev in todo.items()}
    ordered: list[str] = []
    while waiting:
        ready = [name for name, deps in waiting.items() if not deps]
        nxt = min(ready, key=lambda name: (rank(todo[name]), name))
        ordered.append(nxt)
        del waiting[nxt]
        for deps in waiting.values():
            deps.discard(nxt)
    return ordered


def schema_diff(conn: Connection, metadatas: Sequence[MetaData]) -> list[Any]:
    """Differences between the database and the tables declared in ``metadatas``.

    The commit-order column ``txid`` of followed tables (and its index) exists on
    PostgreSQL only and is not declared (see ``downlink.store.follow``): left out.
    """

    def include(obj: Any, name: str | None, kind: str, reflected: bool, _other: Any) -> bool:
        if kind == "column" and name == follow.COLUMN and reflected:
            return False
        return not (kind == "index" and reflected and str(name).endswith("_follow"))

    combined = MetaData()
    for md in metadatas:
        for table in md.tables.values():
            table.to_metadata(combined)
    context = MigrationContext.configure(conn, opts={"include_object": include})
    with warnings.catch_warnings():
        # Reflecting the undeclared txid column: SQLAlchemy has no xid8 type.
        warnings.filterwarnings("ignore", "Did not recognize type 'xid8'")
        return list(compare_metadata(context, combined))


def _as_tuple(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)
