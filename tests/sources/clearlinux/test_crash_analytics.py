"""The guilty frame computed in ClickHouse is find_guilty's, for any frames and blacklist."""

from __future__ import annotations

import random

from downlink.analytics.client import connect
from downlink.sources.clearlinux.backtrace import find_guilty
from downlink.sources.clearlinux.crash_analytics import guilty_sql, walked_frames
from tests.web.helpers import CRASH, OOPS

FUNCTIONS = ("main()", "f()", "g()", "???", "? oops", "? x", "__libc_start_main()")
MODULES = ("a.so", "kernel", "libc.so.6")


def _payload(rng: random.Random) -> str:
    lines = ["first line #0 never() - [counted]"]
    for run in range(rng.randint(0, 2)):  # frames of the crashing thread, then others
        lines.extend(f"#{i} {rng.choice(FUNCTIONS)} - [{rng.choice(MODULES)}]"
                     for i in range(rng.randint(0, 6)))
        lines.append("" if run == 0 else "Backtrace (TID 2):")
    return "\n".join(lines) + "\n"


def test_guilty_in_clickhouse_is_find_guilty(analytics_url: str) -> None:
    rng = random.Random(14)
    payloads = [CRASH, OOPS, "", "no frames\n"] + [_payload(rng) for _ in range(300)]
    ch = connect(analytics_url)
    table = ch.table("frames_check")
    ch.command(f"CREATE TABLE {table} (id UInt64, frames Array(Tuple(String, String))) "
               "ENGINE = MergeTree ORDER BY id")
    ch.insert("frames_check", [[i, walked_frames(p)] for i, p in enumerate(payloads)],
              ["id", "frames"])
    pairs = [(f, m) for f in FUNCTIONS for m in MODULES]
    blacklists = [set(), {("main()", "a.so")}, set(rng.sample(pairs, 6)), set(pairs),
                  {("??? ", "kernel"), ("? oops", "kernel"), ("f()", "libc.so.6")}]
    for blacklist in blacklists:
        rows = ch.query(
            f"{guilty_sql()}SELECT id, if(notEmpty(frames), g, NULL) FROM {table} ORDER BY id",
            {"bl": sorted(blacklist)},
        )
        found = [None if g is None else tuple(g) for _, g in rows]
        assert found == [find_guilty(p, blacklist) for p in payloads], blacklist
