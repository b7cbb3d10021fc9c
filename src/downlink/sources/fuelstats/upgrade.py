"""Apply the core migrations and this source's branch together.

Until the core's registry adds every source's version location itself, a server that
runs fuel-stats migrates with :func:`upgrade` (the core's ``upgrade`` alone would not
know this branch's revisions once they are recorded in ``alembic_version``).
"""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from downlink.store import migrate

MIGRATIONS = Path(__file__).with_name("migrations")


def _config(engine: Engine) -> Config:
    cfg = migrate.alembic_config(engine)
    cfg.set_main_option("path_separator", "os")
    locations = (str(migrate.MIGRATIONS / "versions"), str(MIGRATIONS))
    cfg.set_main_option("version_locations", os.pathsep.join(locations))
    return cfg


def upgrade(engine: Engine, revision: str = "heads") -> None:
    """Bring the core and fuel-stats schemas up to ``revision`` (default: every head)."""
    cfg = _config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the schemas down to ``revision`` (``fuelstats@base`` removes this source's)."""
    cfg = _config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
