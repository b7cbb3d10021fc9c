"""Rescoring measurements from the raw archive (``downlink ooni reprocess``).

File by file (sorted keys), one transaction each, rows upserted by measurement_uid: a
run is idempotent, and an interrupted run resumes after its last finished file when
started again with the same arguments (the position is kept in ``ooni_state``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select

from downlink.archive.storage import Storage
from downlink.sources.ooni import archive, fastpath, fastpath_store, fingerprint_store
from downlink.sources.ooni.tables import state

_RESUME = "reprocess_position"


@dataclass
class Outcome:
    """What a run did."""

    files: int = 0
    measurements: int = 0
    rows: int = 0
    skipped_files: int = 0


def _job(since: datetime, until: datetime, ccs: Sequence[str], tns: Sequence[str]) -> str:
    return f"{since.isoformat()}|{until.isoformat()}|{','.join(ccs)}|{','.join(tns)}"


def _position(conn: Connection, job: str) -> str | None:
    value = conn.execute(select(state.c.value).where(state.c.key == _RESUME)).scalar()
    if not value or not value.startswith(job + "|"):
        return None
    return str(value[len(job) + 1:])


def _save(conn: Connection, job: str, key: str) -> None:
    conn.execute(state.delete().where(state.c.key == _RESUME))
    conn.execute(state.insert().values(key=_RESUME, value=f"{job}|{key}"))


def run(
    begin: Callable[[], AbstractContextManager[Connection]],
    storage: Storage,
    since: datetime,
    until: datetime,
    ccs: Sequence[str] = (),
    testnames: Sequence[str] = (),
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Outcome:
    """Rescore the measurements received in ``[since, until)``."""
    keys = archive.keys_between(storage, since, until, ccs, testnames)
    job = _job(since, until, ccs, testnames)
    out = Outcome()
    with begin() as conn:
        resume_after = None if dry_run else _position(conn, job)
    lo, hi = since.timestamp(), until.timestamp()
    for i, key in enumerate(keys):
        if resume_after is not None and key <= resume_after:
            out.skipped_files += 1
            continue
        entries = [
            e for e in archive.decode(storage.get(key), key) if lo <= e.ts_reception < hi
        ]
        with begin() as conn:
            fps = fingerprint_store.current(conn)
            rows, received = [], []
            for e in entries:
                row = fastpath.build_row(e.body, e.measurement_uid, e.report_id, fps)
                if row is not None:
                    rows.append(row)
                    received.append(e.ts_reception)
            if not dry_run:
                fastpath_store.upsert(conn, rows, received)
                _save(conn, job, key)
        out.files += 1
        out.measurements += len(entries)
        out.rows += len(rows)
        if progress is not None:
            progress(i + 1, len(keys))
    if not dry_run:
        with begin() as conn:
            conn.execute(state.delete().where(state.c.key == _RESUME))
    return out
