"""Apply the Alembic migrations that ship inside the package."""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(engine: Engine) -> Config:
    """Return an Alembic config pointing at the packaged migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def upgrade(engine: Engine, revision: str = "heads") -> None:
    """Bring the database up to ``revision`` (default: every head).

    Each source plug-in may add its own branch of migrations off ``0001``; upgrading
    to ``heads`` applies all of them.
    """
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def pending(engine: Engine) -> list[str]:
    """Return the revisions not yet applied, oldest first."""
    script = ScriptDirectory.from_config(alembic_config(engine))
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    applied: set[str] = set()
    for head in current:
        applied.update(r.revision for r in script.iterate_revisions(head, "base"))
    return [rev for rev in in_order(script) if rev not in applied]


def in_order(script: ScriptDirectory) -> list[str]:
    """Every revision, parents before children, and by name where branches allow.

    ``walk_revisions`` interleaves branches (``0001, 0003, …, 0002``); this is the order
    a person reads: ``0001, 0002_substrate, 0003_rollups, …``.
    """
    revisions = {r.revision: r for r in script.walk_revisions()}
    waiting = {rev: _parents(r.down_revision) & set(revisions) for rev, r in revisions.items()}
    ready = sorted(rev for rev, deps in waiting.items() if not deps)
    out: list[str] = []
    while ready:
        rev = heapq.heappop(ready)
        out.append(rev)
        for child, deps in waiting.items():
            if rev in deps:
                deps.discard(rev)
                if not deps:
                    heapq.heappush(ready, child)
    return out


def _parents(down: str | Sequence[str] | None) -> set[str]:
    if down is None:
        return set()
    return {down} if isinstance(down, str) else set(down)
