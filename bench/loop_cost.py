"""What a few microseconds of event-loop work per post cost per record, in process.

Sender binding adds one call per collector post for a known sender
(``SenderGuard.known``: about 1 us in a tight loop), yet the in-process A/B of
``bench/senders.py`` shows about 20 us more CPU per record. This runs, in one process
and on fresh SQLite databases, in an order that rotates every round:

* *off*: binding off (the default);
* *spin*: binding off, plus a busy loop of ``--spin-us`` microseconds per post where
  the guard runs (``SenderGuard.rate_wait``, patched): a cost known exactly, not binding;
* *on*: ``DOWNLINK_SENDER_BINDING=clearlinux``, every post a known sender;
* *known timed*: *on*, with the time spent in ``known`` itself measured per post with
  a per-thread CPU clock (two ``thread_time_ns`` calls of about 1 us each around it,
  one of them inside the figure).

``bench/ingest_cpu.py``'s driver: the collector app called directly, 64 posts at a
time, consumers off, ``--records`` records per run after 2,000 warm-up posts, CPU by
thread from ``/proc``. If *spin*/off exceeds ``--spin-us`` per record, event-loop work
per post costs more than itself here, and binding's cost is read against *spin*.

    python bench/loop_cost.py [--rounds 6] [--records 20000] [--spin-us 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest_cpu  # noqa: E402
import senders  # noqa: E402
from common import machine, table, write_section  # noqa: E402
from spread import Spread, change  # noqa: E402

from downlink.app import create_app  # noqa: E402
from downlink.security.senders import SenderGuard  # noqa: E402
from downlink.settings import Settings  # noqa: E402

MODES = ("off", "spin", "on", "known timed")
MACHINES = 1000
WARM = 2000
_RATE_WAIT = SenderGuard.rate_wait
_KNOWN = SenderGuard.known


class _Patches:
    """The guard's methods for one mode: a busy loop, or ``known`` timed."""

    def __init__(self, spin_s: float) -> None:
        self.spin_s = spin_s
        self.known_ns = 0
        self.known_calls = 0

    def apply(self, mode: str) -> None:
        patches = self

        def spin(self: SenderGuard, source: str, sender_ids: Iterable[str]) -> float:
            end = time.perf_counter() + patches.spin_s
            while time.perf_counter() < end:
                pass
            return _RATE_WAIT(self, source, sender_ids)

        def timed(self: SenderGuard, source: str, sender_id: str, secret_sent: bool,
                  client: Any) -> bool:
            began = time.thread_time_ns()
            try:
                return _KNOWN(self, source, sender_id, secret_sent, client)
            finally:
                patches.known_ns += time.thread_time_ns() - began
                patches.known_calls += 1

        SenderGuard.rate_wait = spin if mode == "spin" else _RATE_WAIT  # type: ignore[method-assign]
        SenderGuard.known = timed if mode == "known timed" else _KNOWN  # type: ignore[method-assign]


def run_one(tmp: Path, mode: str, round_: int, records: int, patches: _Patches
            ) -> tuple[ingest_cpu.Run, float]:
    """One run: its measurements, and the microseconds per post inside ``known``
    (measured in the window only, for *known timed*)."""
    patches.apply(mode)
    binding = mode in ("on", "known timed")
    env: dict[str, Any] = {"sender_binding": ("clearlinux",)} if binding else {}
    name = mode.replace(" ", "_")
    settings = Settings(database_url=f"sqlite:///{tmp / f'{name}-{round_}.db'}",
                        telemetry_ids=(ingest_cpu.TID,), consumer_poll_s=0.0, **env)
    reqs = senders._requests(WARM + records, f"{(round_ + 1) % 10}{MODES.index(mode)}",
                             MACHINES)
    drive = ingest_cpu._drive
    calls = 0

    async def counted(*args: Any, **kwargs: Any) -> None:  # the second drive is the window
        nonlocal calls
        calls += 1
        if calls == 2:
            patches.known_ns = patches.known_calls = 0
        await drive(*args, **kwargs)

    ingest_cpu._drive = counted
    try:
        res = ingest_cpu._run_loop(ingest_cpu.run(create_app(settings), reqs, records, 64,
                                                  None, WARM))
    finally:
        ingest_cpu._drive = drive
        patches.apply("off")
    assert set(res.statuses) == {201}, res.statuses
    known_us = patches.known_ns / 1e3 / patches.known_calls if patches.known_calls else 0.0
    return res, known_us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--spin-us", type=float, default=5.0)
    parser.add_argument("--no-write", action="store_true", help="do not touch the docs")
    args = parser.parse_args()
    about = machine()
    tmp = Path(tempfile.mkdtemp(prefix="downlink-bench-loop-"))
    patches = _Patches(args.spin_us / 1e6)
    runs: dict[str, list[ingest_cpu.Run]] = {m: [] for m in MODES}
    known_us: list[float] = []
    for r in range(-1, args.rounds):  # round -1: a warm-up run, not counted
        order = MODES[r % len(MODES):] + MODES[:r % len(MODES)] if r >= 0 else ("off",)
        for mode in order:
            res, in_known = run_one(tmp, mode, r, args.records, patches)
            if r < 0:
                continue
            runs[mode].append(res)
            if mode == "known timed":
                known_us.append(in_known)
            print(r, mode, f"{res.per_record_us(res.cpu_s):.1f} us/record",
                  {k: round(res.per_record_us(v), 1) for k, v in res.threads.items() if v},
                  f"batch {res.per_commit:.1f}", f"known {in_known:.2f} us" if in_known else "",
                  flush=True)
    off = runs["off"]
    rows: list[list[object]] = []
    for mode in MODES:
        got = runs[mode]
        cpu = [x.per_record_us(x.cpu_s) for x in got]
        loop = [x.per_record_us(x.threads["event loop"]) for x in got]
        writer = [x.per_record_us(x.threads["writer"]) for x in got]
        extra = [a - b for a, b in zip(cpu, [x.per_record_us(x.cpu_s) for x in off], strict=True)]
        ratio = Spread(tuple(a.cpu_s / b.cpu_s for a, b in zip(got, off, strict=True)))
        rows.append([
            mode, f"{statistics.median(cpu):.1f}", f"{statistics.median(loop):.1f}",
            f"{statistics.median(writer):.1f}",
            f"{statistics.median(x.per_commit for x in got):.1f}",
            "" if mode == "off" else f"{statistics.median(extra):+.1f}",
            "" if mode == "off" else ratio.text(),
            "" if mode == "off" else ratio.interval_text(),
            "" if mode == "off" else change(ratio, lower_is_better=True),
        ])
    result = table(["mode", "CPU us/record", "event loop", "writer", "records a commit",
                    "against off: us/record (median of rounds)", "against off: ratio",
                    "ratio: interval", "change"], rows)
    print(result)
    in_known = f"{statistics.median(known_us):.2f}" if known_us else "-"
    body = (
        "## A few microseconds in the event loop, per post (`python bench/loop_cost.py`)\n\n"
        f"`python bench/loop_cost.py --rounds {args.rounds} --records {args.records} "
        f"--spin-us {args.spin_us:g}` — {about}\n\n"
        "Why sender binding's in-process cost (section `senders`) is larger than the "
        "guard's own. `bench/ingest_cpu.py`'s driver on SQLite (the collector app called "
        f"directly, 64 posts at a time, consumers off, {args.records:,} records a run "
        f"after {WARM:,} warm-up posts of {MACHINES:,} machine ids), every round each "
        "mode in a rotating order: *off* (binding off), *spin* (binding off plus a busy "
        f"loop of {args.spin_us:g} us per post where the guard runs), *on* (binding "
        "on, every post a known sender: a cache hit), *known timed* (*on* with the "
        "guard's `known` call timed with a per-thread CPU clock: its median, "
        f"**{in_known} us per post**, includes about 1 us of the clock itself). CPU "
        "of the process by thread; ratios per round against *off* with a "
        "distribution-free interval of the median (`bench/spread.py`).\n\n" + result
    )
    if not args.no_write:
        write_section("loop-cost", body)


if __name__ == "__main__":
    main()
