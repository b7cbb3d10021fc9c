"""Realistic Clear Linux records for tests and benchmarks.

Many machines on many builds, a classification mix like a real fleet (heartbeats,
user-space crashes with crashprobe backtraces, kernel warnings and oopses, machine
checks, thermal events, update reports), platforms in ``sys_vendor|product_name|
product_version`` form, and reception times spread over a number of days. Everything
is drawn from a seeded ``random.Random``, so a seed always gives the same records.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

Row = dict[str, Any]

DAY = 86400

# (classification, severity, weight)
CLASSES: tuple[tuple[str, int, int], ...] = (
    ("org.clearlinux/heartbeat/ping", 1, 400),
    ("org.clearlinux/swupd-client/update", 1, 90),
    ("org.clearlinux/journal/error", 2, 80),
    ("org.clearlinux/crash/clr", 3, 150),
    ("org.clearlinux/crash/clr-build", 2, 10),
    ("org.clearlinux/crash/unknown", 2, 15),
    ("org.clearlinux/kernel/warning", 2, 50),
    ("org.clearlinux/kernel/bug", 4, 8),
    ("org.clearlinux/kernel/stackoverflow", 4, 2),
    ("org.clearlinux/mce/corrected", 2, 60),
    ("org.clearlinux/mce/SRAO", 3, 4),
    ("org.clearlinux/mce/SRAR", 4, 2),
    ("org.clearlinux/mce/UCNA", 3, 4),
    ("org.clearlinux/mce/thermal", 2, 20),
    ("org.clearlinux/bert/debug", 2, 3),
    ("org.clearlinux/hprobe/dmesg", 1, 30),
)

PLATFORMS = tuple(
    f"{v}|{p}|{r}"
    for v, p, r in (
        ("Intel Corporation", "NUC7i5BNH", "J31144-313"),
        ("Intel Corporation", "NUC8i7HVK", "J71485-502"),
        ("Intel Corporation", "S2600WFT", "R1208WFTYS"),
        ("Dell Inc.", "XPS 13 9370", "1.0"),
        ("Dell Inc.", "PowerEdge R740", "1.2"),
        ("LENOVO", "20KHCTO1WW", "ThinkPad X1 Carbon 6th"),
        ("LENOVO", "20L8S02D00", "ThinkPad T480s"),
        ("HP", "HP EliteBook 840 G5", "SBKPF"),
        ("QEMU", "Standard PC (i440FX + PIIX, 1996)", "pc-i440fx-4.2"),
        ("Microsoft Corporation", "Virtual Machine", "7.0"),
        ("Supermicro", "X11SPi-TF", "0123456789"),
        ("ASUS", "All Series", "System Version"),
        ("Gigabyte Technology Co., Ltd.", "Z390 AORUS PRO", "Default string"),
        ("Amazon EC2", "c5.xlarge", "1.0"),
        ("Google", "Google Compute Engine", "n1-standard-4"),
        ("no_sv_file", "no_pn_file", "no_pvr_file"),
    )
)

PROGRAMS = (
    ("/usr/bin/python3.11", "python3.11"),
    ("/usr/bin/gnome-shell", "gnome-shell"),
    ("/usr/bin/Xwayland", "Xwayland"),
    ("/usr/bin/swupd", "swupd"),
    ("/usr/bin/sleep", "sleep"),
    ("/usr/libexec/tracker-miner-fs-3", "tracker-miner-fs-3"),
    ("/usr/bin/firefox", "firefox"),
    ("/usr/bin/node", "node"),
    ("/usr/bin/dockerd", "dockerd"),
    ("/usr/bin/mutter", "mutter"),
)
LIB_FRAMES = (
    ("raise()", "libc.so.6", "../sysdeps/unix/sysv/linux/raise.c:50"),
    ("abort()", "libc.so.6", "abort.c:79"),
    ("__GI___poll()", "libc.so.6", "../sysdeps/unix/sysv/linux/poll.c:29"),
    (
        "clock_nanosleep@GLIBC_2.2.5()",
        "libc.so.6",
        "../sysdeps/unix/sysv/linux/clock_nanosleep.c:71",
    ),
    ("__nanosleep()", "libc.so.6", "../sysdeps/unix/sysv/linux/nanosleep.c:25"),
    ("g_main_context_iterate()", "libglib-2.0.so.0", "../glib/gmain.c:4217"),
    ("g_main_loop_run()", "libglib-2.0.so.0", "../glib/gmain.c:4413"),
    ("g_closure_invoke()", "libgobject-2.0.so.0", "../gobject/gclosure.c:832"),
    ("meta_window_unmanage()", "libmutter-11.so.0", "../src/core/window.c:1450"),
    ("wl_resource_post_event()", "libwayland-server.so.0", "src/wayland-server.c:236"),
    ("PyObject_Vectorcall()", "/usr/bin/python3.11", "Objects/call.c:299"),
    ("_PyEval_EvalFrameDefault()", "/usr/bin/python3.11", "Python/ceval.c:4181"),
    ("curl_multi_perform()", "libcurl.so.4", "multi.c:2690"),
    ("SSL_read()", "libssl.so.3", "ssl/ssl_lib.c:1846"),
    ("malloc_consolidate()", "libc.so.6", "malloc.c:4757"),
    ("_int_free()", "libc.so.6", "malloc.c:4616"),
)
KERNEL_FRAMES = (
    "dump_stack",
    "warn_slowpath_common",
    "warn_slowpath_fmt",
    "dev_watchdog",
    "call_timer_fn",
    "run_timer_softirq",
    "__do_softirq",
    "irq_exit",
    "smp_apic_timer_interrupt",
    "alloc_pipe_info",
    "create_pipe_files",
    "__do_pipe_flags",
    "do_pipe2",
    "i915_gem_do_execbuffer",
    "drm_ioctl",
    "intel_atomic_commit_tail",
    "nvme_timeout",
    "blk_mq_check_expired",
    "ext4_journal_check_start",
    "btrfs_commit_transaction",
)
MCE_STATUS = ("9c00004000010090", "cc00008000010091", "bd80000000100134", "8c00004000010150")


class RecordGenerator:
    """Draws realistic records; ``rows(n)`` yields them, reception times spread over days."""

    def __init__(
        self,
        *,
        seed: int = 1,
        machines: int = 5000,
        days: int = 60,
        now: float | None = None,
        first_build: int = 31000,
        builds_per_week: int = 3,
        random_mce_status: float = 0.0,
    ) -> None:
        self.rng = random.Random(seed)
        # The share of machine checks whose STATUS is a random 64-bit word (a status is
        # sender-controlled text: the scale bench's payloads, or a hostile sender), the
        # others one of the four MCE_STATUS; 0 draws nothing more, so seeds stay as
        # they were.
        self.random_mce_status = random_mce_status
        self.now = time.time() if now is None else now
        self.days = days
        self.first_build = first_build
        self.builds_per_week = builds_per_week
        self.machines = [f"{self.rng.getrandbits(128):032x}" for _ in range(machines)]
        self.machine_platform = [self.rng.choice(PLATFORMS) for _ in range(machines)]
        # Machine checks come from the few machines with flaky hardware, not from all.
        self._faulty = self.rng.sample(range(machines), max(1, machines // 50))
        self._classes = [c for c, _, _ in CLASSES]
        self._severity = {c: s for c, s, _ in CLASSES}
        self._weights = [w for _, _, w in CLASSES]
        self._crashes = [self._user_crash() for _ in range(300)]
        self._oopses = [self._kernel_oops() for _ in range(80)]
        self._serial = 0

    # -- payloads -----------------------------------------------------------------

    def _user_crash(self) -> str:
        rng = self.rng
        path, name = rng.choice(PROGRAMS)
        pid = rng.randint(300, 4_000_000)
        lines = [f"Process: {path}", f"PID: {pid}", f"Signal: {rng.choice((6, 11, 11, 11, 7))}", ""]
        threads = rng.randint(1, 3)
        for t in range(threads):
            lines.append(f"Backtrace (TID {pid + t}):")
            depth = rng.randint(3, 9)
            frames = [rng.choice(LIB_FRAMES) for _ in range(depth)]
            i = 0
            for function, module, loc in frames:
                lines.append(f"#{i} {function} - [{module}] - {loc}")
                i += 1
                if rng.random() < 0.3:
                    lines.append(f"#{i} ??? - [{path}]")
                    i += 1
            lines.append(
                f"#{i} __libc_start_call_main() - [libc.so.6]"
                " - ../sysdeps/nptl/libc_start_call_main.h:58"
            )
            lines.append(
                f"#{i + 1} __libc_start_main@@GLIBC_2.34() - [libc.so.6] - ../csu/libc-start.c:360"
            )
            lines.append(f"#{i + 2} _start() - [{path}]")
            lines.append("")
        return "\n".join(lines).rstrip("\n") + "\n"

    def _kernel_oops(self) -> str:
        rng = self.rng
        culprit = rng.choice(KERNEL_FRAMES)
        frames = (
            ["dump_stack", "warn_slowpath_common", "warn_slowpath_fmt"]
            if rng.random() < 0.5
            else []
        )
        if rng.random() < 0.3:
            frames.append(f"? {rng.choice(KERNEL_FRAMES)}")
        frames += [culprit, *rng.sample(KERNEL_FRAMES, 4)]
        lines = [
            "Crash Report:",
            f"Reason: WARNING: CPU: {rng.randint(0, 15)} PID: {rng.randint(1, 9999)} at "
            f"drivers/gpu/drm/i915/{culprit}.c:{rng.randint(10, 4000)} "
            f"{culprit}+0x{rng.randint(16, 999):x}/0x{rng.randint(1000, 2000):x}",
            "Kernel Version : 6.1.38-1299.native",
            "Tainted : G        W",
            "Modules : i915 drm_kms_helper e1000e nvme",
            "Backtrace :",
        ]
        lines += [f"#{i} {f} - [kernel]" for i, f in enumerate(frames)]
        return "\n".join(lines) + "\n"

    def _payload(self, cls: str) -> str:
        rng = self.rng
        if cls == "org.clearlinux/crash/clr":
            return rng.choice(self._crashes)
        if cls.startswith("org.clearlinux/kernel/"):
            return rng.choice(self._oopses)
        if cls.startswith("org.clearlinux/mce/"):
            if self.random_mce_status and rng.random() < self.random_mce_status:
                status = f"{rng.getrandbits(64):016x}"
            else:
                status = rng.choice(MCE_STATUS)
            return (
                f"CPU {rng.randint(0, 63)} BANK {rng.randint(0, 22)} TSC {rng.getrandbits(40):x}\n"
                f"MISC {rng.getrandbits(32):x} ADDR {rng.getrandbits(36):x}\n"
                f"TIME {int(self.now)} \nMCG status:\n"
                f"STATUS {status} MCGSTATUS 0\n"
                f"MCGCAP 1000c14 APICID {rng.randint(0, 63)} SOCKETID 0\n"
                f"CPUID Vendor Intel Family 6 Model 85\n"
            )
        if cls == "org.clearlinux/swupd-client/update":
            v = rng.randint(31000, 31100)
            new = v + rng.randint(1, 20)
            return f"result=0\nbytes=12345\ncurrent_version={v}\nserver_version={new}\n"
        if cls == "org.clearlinux/heartbeat/ping":
            return "hello"
        return f"{cls.rsplit('/', 1)[-1]}: event {rng.getrandbits(32):08x}\n"

    # -- records --------------------------------------------------------------------

    def _build(self, age_days: float) -> str:
        rng = self.rng
        if rng.random() < 0.01:
            return rng.choice(("16.04", "rolling", "31000-custom"))
        newest = self.first_build + int((self.days - age_days) * self.builds_per_week / 7)
        return str(max(self.first_build, newest - int(rng.expovariate(0.4))))

    def row(self) -> Row:
        """Return one record as a dict of ``records`` columns."""
        rng = self.rng
        self._serial += 1
        cls = rng.choices(self._classes, self._weights)[0]
        if cls.startswith("org.clearlinux/mce/"):
            m = rng.choice(self._faulty)
        else:
            m = rng.randrange(len(self.machines))
        age = rng.random() * self.days
        received = self.now - age * DAY
        return {
            "source": "clearlinux",
            "record_version": 4,
            "classification": cls,
            "severity": self._severity[cls],
            "machine_id": self.machines[m],
            "ts_capture": received - rng.random() * 30,
            "ts_reception": received,
            "arch": "x86_64",
            "host_type": self.machine_platform[m],
            "build": self._build(age),
            "kernel_version": "6.1.38-1299.native",
            "payload_version": 1,
            "system_name": "clear-linux-os",
            "board_name": "NUC7i5BNB|J31145-306",
            "cpu_model": "Intel(R) Core(TM) i5-7260U CPU @ 2.20GHz",
            "bios_version": "BNKBL357.86A.0088.2022.0125.1102",
            "event_id": f"{rng.getrandbits(128):032x}",
            "external": rng.random() < 0.8,
            "tid": "6907c830-eed9-4ce9-81ae-76daf8d88f0f",
            "payload": self._payload(cls),
            "attrs": None,
            "dedup_key": f"gen-{self._serial}-{rng.getrandbits(64):016x}",
        }

    def rows(self, n: int) -> Iterator[Row]:
        """Yield ``n`` records."""
        for _ in range(n):
            yield self.row()
