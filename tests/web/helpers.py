"""Record builders and loaders shared by the web tests."""

from __future__ import annotations

import itertools
import time
from typing import Any

from downlink.store.database import Store
from downlink.store.inserts import insert_records
from downlink.testing.consumers import catch_up

Row = dict[str, Any]
_serial = itertools.count(1)

CRASH = (
    "Process: /usr/bin/sleep\nPID: 32455\nSignal: 11\n\n"
    "Backtrace (TID 32455):\n"
    "#0 clock_nanosleep@GLIBC_2.2.5() - [libc.so.6]"
    " - ../sysdeps/unix/sysv/linux/clock_nanosleep.c:71\n"
    "#1 __nanosleep() - [libc.so.6] - ../sysdeps/unix/sysv/linux/nanosleep.c:25\n"
    "#2 ??? - [/usr/bin/sleep]\n"
    "#3 ??? - [/usr/bin/sleep]\n"
    "#4 __libc_start_call_main() - [libc.so.6] - ../sysdeps/nptl/libc_start_call_main.h:58\n"
    "#5 __libc_start_main@@GLIBC_2.34() - [libc.so.6] - ../csu/libc-start.c:360\n"
    "#6 ??? - [/usr/bin/sleep]\n"
)
OOPS = (
    "Crash Report:\nReason: WARNING: CPU: 1 PID: 0 at net/sched/sch_generic.c:316 dev_watchdog\n"
    "Kernel Version : 4.14.0\nTainted : G W\nModules : e1000e\nBacktrace :\n"
    "#0 dump_stack - [kernel]\n#1 warn_slowpath_common - [kernel]\n"
    "#2 warn_slowpath_fmt - [kernel]\n#3 dev_watchdog - [kernel]\n#4 call_timer_fn - [kernel]\n"
)
MCE = "CPU 2 BANK 7\nSTATUS 9c00004000010090 MCGSTATUS 0\nMCGCAP 1000c14\n"


def rec(**fields: Any) -> Row:
    """Return a complete Clear Linux record with ``fields`` overriding the defaults."""
    now = time.time()
    n = next(_serial)
    row: Row = {
        "source": "clearlinux",
        "record_version": 4,
        "classification": "org.clearlinux/heartbeat/ping",
        "severity": 1,
        "machine_id": "machine-a",
        "ts_capture": now,
        "ts_reception": now,
        "arch": "x86_64",
        "host_type": "Intel Corporation|NUC7i5BNH|J31144-313",
        "build": "31000",
        "kernel_version": "6.1.38",
        "payload_version": 1,
        "system_name": "clear-linux-os",
        "board_name": "",
        "cpu_model": "",
        "bios_version": "",
        "event_id": f"{n:032x}",
        "external": False,
        "tid": "6907c830-eed9-4ce9-81ae-76daf8d88f0f",
        "payload": "hello",
        "attrs": None,
        "dedup_key": f"web-test-{n}-{now}",
    }
    row.update(fields)
    return row


def load(store: Store, rows: list[Row]) -> list[Row]:
    """Store ``rows`` through insert_records (the writer's path), then run the consumers
    (crash grouping, rollups) until they are caught up."""
    stored = store.run_write(insert_records, rows)
    catch_up(store)
    return stored


def sample_fleet(script_payload: str, second_build: str) -> list[Row]:
    """Return a small fleet's records touching every view: builds (integer and not),
    two crashes of one group on two machines, a kernel oops, an MCE, a thermal event,
    and a record whose payload is ``script_payload`` (to check escaping)."""
    return [
        rec(build="31000"),
        rec(build=second_build, machine_id="b"),
        rec(build="16.04"),
        rec(classification="org.clearlinux/crash/clr", payload=CRASH, severity=3),
        rec(
            classification="org.clearlinux/crash/clr",
            payload=CRASH,
            severity=3,
            machine_id="b",
            build="31001",
        ),
        rec(classification="org.clearlinux/kernel/warning", payload=OOPS, severity=2),
        rec(classification="org.clearlinux/mce/corrected", payload=MCE, severity=2),
        rec(classification="org.clearlinux/mce/thermal", payload="THERMAL event"),
        rec(classification="org.clearlinux/journal/error", payload=script_payload, severity=2),
    ]
