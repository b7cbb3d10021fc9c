"""Backtrace parsing and the guilty algorithm (reference §3.5 and §4.7)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from downlink.sources.clearlinux.backtrace import (
    BACKTRACE_CLASSES,
    FRAME_RE,
    Frame,
    blacklist_candidates,
    find_guilty,
    guilty_label,
    match_frame,
    package_of,
    parse_crash,
)

LIBC = "libc.so.6"
PY = "/usr/bin/python3.11"
NONE: frozenset[tuple[str, str]] = frozenset()


@pytest.fixture(scope="module")
def sleep_core(fixtures_dir: Path) -> str:
    """The payload of the real captured crash request (body after the blank line)."""
    raw = (fixtures_dir / "clearlinux" / "v2-headers-crash.http").read_bytes()
    return raw.split(b"\r\n\r\n", 1)[1].decode()


PYTHON_CORE = """\
Process: /usr/bin/python3.11
PID: 41211
Signal: 11

Backtrace (TID 41211):
#0 clock_nanosleep@GLIBC_2.2.5() - [libc.so.6] - ../sysdeps/unix/sysv/linux/clock_nanosleep.c:78
#1 ??? - [/usr/bin/python3.11]
#2 ??? - [/usr/bin/python3.11]
#3 PyObject_Vectorcall() - [/usr/bin/python3.11] - ../Objects/call.c:299
#4 _PyEval_EvalFrameDefault() - [/usr/bin/python3.11] - ../Python/ceval.c:4772
#5 ??? - [/usr/bin/python3.11]
#6 PyEval_EvalCode() - [/usr/bin/python3.11] - ../Python/ceval.c:1148
#7 ??? - [/usr/bin/python3.11]
#8 _PyRun_SimpleFileObject() - [/usr/bin/python3.11] - ../Python/pythonrun.c:439
#9 Py_RunMain() - [/usr/bin/python3.11] - ../Modules/main.c:689
#10 __libc_start_call_main() - [libc.so.6] - ../sysdeps/nptl/libc_start_call_main.h:58
#11 __libc_start_main@@GLIBC_2.34() - [libc.so.6] - ../csu/libc-start.c:360
#12 _start() - [/usr/bin/python3.11]

Backtrace (TID 41212):
#0 __futex_abstimed_wait_common() - [libc.so.6] - ./nptl/futex-internal.c:57
#1 __new_sem_wait_slow64.constprop.0() - [libc.so.6] - ./nptl/sem_waitcommon.c:183
#2 PyThread_acquire_lock_timed() - [/usr/bin/python3.11] - ../Python/thread_pthread.h:483
#3 ??? - [/usr/bin/python3.11]
#4 start_thread() - [libc.so.6] - ./nptl/pthread_create.c:442
#5 clone3() - [libc.so.6] - ../sysdeps/unix/sysv/linux/x86_64/clone3.S:81

Backtrace (TID 41213):
#0 __GI___poll() - [libc.so.6] - ../sysdeps/unix/sysv/linux/poll.c:29
#1 ??? - [/usr/lib/python3.11/lib-dynload/select.cpython-311-x86_64-linux-gnu.so]
#2 start_thread() - [libc.so.6] - ./nptl/pthread_create.c:442

Backtrace (TID 41214):
#0 clock_nanosleep@GLIBC_2.2.5() - [libc.so.6] - ../sysdeps/unix/sysv/linux/clock_nanosleep.c:78
#1 ??? - [/usr/bin/python3.11]
#2 start_thread() - [libc.so.6] - ./nptl/pthread_create.c:442

"""

KERNEL_WARN_ON = """\
Crash Report:
Reason: WARNING: CPU: 1 PID: 0 at net/sched/sch_generic.c:303 dev_watchdog+0x237/0x240()
Kernel Version : 4.2.3-120.native
Tainted : Not tainted
Modules : e1000e ptp pps_core i915 drm_kms_helper drm
Backtrace :
Register RIP: Non-zero
Register RSP: Non-zero
Register RAX: Zero
#1 dump_stack - [kernel]
#2 warn_slowpath_common - [kernel]
#3 warn_slowpath_fmt - [kernel]
#4 dev_watchdog - [kernel]
#5 ? dev_graft_qdisc - [kernel]
#6 call_timer_fn - [kernel]
#7 run_timer_softirq - [kernel]
#8 __do_softirq - [kernel]
#9 irq_exit - [kernel]
"""

KERNEL_GPF = """\
Crash Report:
Reason: general protection fault: 0000 [#1] SMP
Kernel Version : 4.9.0-12.native
Tainted : Not tainted
Modules : nf_conntrack_ipv4 nf_defrag_ipv4 xt_conntrack nf_conntrack
Backtrace :
Register RIP: Non-zero
Register RSP: Non-zero
#1 ? alloc_pipe_info - [kernel]
#2 alloc_pipe_info - [kernel]
#3 create_pipe_files - [kernel]
#4 __do_pipe_flags - [kernel]
#5 SyS_pipe2 - [kernel]
#6 entry_SYSCALL_64_fastpath - [kernel]
"""

KERNEL_BUG_AT = """\
Crash Report:
Reason: kernel BUG at mm/slub.c:3574!
Kernel Version : 4.9.0-12.native
Tainted : G           O
Modules : vboxdrv(O) snd_hda_intel
Register RIP: Non-zero
Register RSP: Non-zero
"""

ONLY_UNKNOWN = """\
Process: /usr/bin/stripped
PID: 77
Signal: 6

Backtrace (TID 77):
#0 ??? - [/usr/lib64/libstripped.so.1]
#1 ??? - [/usr/bin/stripped]
#2 ??? - [/usr/bin/stripped]
"""

BLACKLISTED_PAIRS = frozenset(
    {
        ("raise()", LIBC),
        ("abort()", LIBC),
        ("__libc_start_main()", LIBC),
    }
)

ONLY_BLACKLISTED = """\
Process: /usr/bin/aborter
PID: 88
Signal: 6

Backtrace (TID 88):
#0 raise() - [libc.so.6] - ../sysdeps/unix/sysv/linux/raise.c:51
#1 abort() - [libc.so.6] - stdlib/abort.c:79
#2 __libc_start_main() - [libc.so.6]
"""

SECOND_THREAD_GOOD = """\
Process: /usr/bin/worker
PID: 99
Signal: 6

Backtrace (TID 99):
#0 raise() - [libc.so.6] - ../sysdeps/unix/sysv/linux/raise.c:51
#1 abort() - [libc.so.6] - stdlib/abort.c:79

Backtrace (TID 100):
#0 do_work() - [/usr/bin/worker] - src/worker.c:12
#1 start_thread() - [libc.so.6]
"""


# --- §4.7 verification table, row by row ---------------------------------------------


def test_sleep_core_no_blacklist(sleep_core: str) -> None:
    assert find_guilty(sleep_core, NONE) == ("clock_nanosleep@GLIBC_2.2.5()", LIBC)


def test_sleep_core_clock_nanosleep_blacklisted(sleep_core: str) -> None:
    bl = {("clock_nanosleep@GLIBC_2.2.5()", LIBC)}
    assert find_guilty(sleep_core, bl) == ("__nanosleep()", LIBC)


def test_sleep_core_nanosleep_blacklisted_skips_unknowns(sleep_core: str) -> None:
    bl = {("clock_nanosleep@GLIBC_2.2.5()", LIBC), ("__nanosleep()", LIBC)}
    assert find_guilty(sleep_core, bl) == ("__libc_start_call_main()", LIBC)


def test_sleep_core_all_named_blacklisted_gives_first_unknown(sleep_core: str) -> None:
    bl = {
        ("clock_nanosleep@GLIBC_2.2.5()", LIBC),
        ("__nanosleep()", LIBC),
        ("__libc_start_call_main()", LIBC),
        ("__libc_start_main@@GLIBC_2.34()", LIBC),
    }
    assert find_guilty(sleep_core, bl) == ("???", "/usr/bin/sleep")


def test_python_core_skips_two_unknowns() -> None:
    bl = {("clock_nanosleep@GLIBC_2.2.5()", LIBC)}
    assert find_guilty(PYTHON_CORE, bl) == ("PyObject_Vectorcall()", PY)


def test_kernel_warn_on_no_blacklist() -> None:
    assert find_guilty(KERNEL_WARN_ON, NONE) == ("dump_stack", "kernel")


def test_kernel_warn_on_with_blacklist() -> None:
    bl = {
        ("dump_stack", "kernel"),
        ("warn_slowpath_common", "kernel"),
        ("warn_slowpath_fmt", "kernel"),
    }
    assert find_guilty(KERNEL_WARN_ON, bl) == ("dev_watchdog", "kernel")


def test_kernel_gpf_question_frame_is_first_unknown() -> None:
    assert find_guilty(KERNEL_GPF, NONE) == ("alloc_pipe_info", "kernel")


def test_only_unknown_frames_gives_first_module() -> None:
    assert find_guilty(ONLY_UNKNOWN, NONE) == ("???", "/usr/lib64/libstripped.so.1")


def test_only_blacklisted_frames_gives_last_blacklisted() -> None:
    assert find_guilty(ONLY_BLACKLISTED, BLACKLISTED_PAIRS) == ("__libc_start_main()", LIBC)


def test_second_thread_is_ignored() -> None:
    assert find_guilty(SECOND_THREAD_GOOD, BLACKLISTED_PAIRS) == ("abort()", LIBC)


def test_kernel_bug_at_without_frames_has_no_guilty() -> None:
    assert find_guilty(KERNEL_BUG_AT, NONE) is None


# --- quirks of the original kept on purpose ---------------------------------------------


def test_first_line_is_discarded_even_if_a_frame() -> None:
    payload = "#0 crasher() - [/usr/bin/x]\n#1 caller() - [/usr/bin/x]\n"
    assert find_guilty(payload, NONE) == ("caller()", "/usr/bin/x")
    assert find_guilty("#0 crasher() - [/usr/bin/x]", NONE) is None


def test_second_question_kernel_frame_can_be_guilty() -> None:
    payload = "Crash Report:\n#1 ? first - [kernel]\n#2 ? second - [kernel]\n#3 x - [kernel]\n"
    assert find_guilty(payload, NONE) == ("? second", "kernel")


def test_unknown_after_question_frame_is_skipped() -> None:
    payload = "Crash Report:\n#1 ? first - [kernel]\n#2 ??? - [kernel]\n"
    assert find_guilty(payload, NONE) == ("? first", "kernel")


def test_blacklisted_unknown_is_not_first_unknown() -> None:
    payload = "Process: p\n#0 ??? - [a]\n#1 ??? - [b]\n"
    assert find_guilty(payload, {("???", "a")}) == ("???", "b")


def test_match_anchors_on_last_separator() -> None:
    payload = "Process: p\n#0 operator-() - [x] - [/usr/lib/libfoo.so] - foo.c:3\n"
    assert find_guilty(payload, NONE) == ("operator-() - [x]", "/usr/lib/libfoo.so")


@pytest.mark.parametrize("payload", ["", "\n", "Process: x", "garbage\n\n\n", "#0 - []\n"])
def test_no_frames_no_guilty(payload: str) -> None:
    assert find_guilty(payload, NONE) is None


# --- parse_crash ---------------------------------------------------------------------------


def test_parse_sleep_core(sleep_core: str) -> None:
    crash = parse_crash(sleep_core)
    assert (crash.process, crash.pid, crash.signal) == ("/usr/bin/sleep", 32455, 11)
    assert crash.kernel_reason is None
    assert len(crash.frames) == 8
    assert crash.frames[0] == Frame(
        "clock_nanosleep@GLIBC_2.2.5()", LIBC, "../sysdeps/unix/sysv/linux/clock_nanosleep.c:71"
    )
    assert crash.frames[-1] == Frame("???", "/usr/bin/sleep", "")


def test_parse_python_core_first_thread_only() -> None:
    crash = parse_crash(PYTHON_CORE)
    assert (crash.process, crash.pid, crash.signal) == (PY, 41211, 11)
    assert len(crash.frames) == 13
    assert crash.frames[-1] == Frame("_start()", PY, "")


def test_parse_stops_at_second_tid_header_without_blank_line() -> None:
    payload = SECOND_THREAD_GOOD.replace("\n\nBacktrace (TID 100)", "\nBacktrace (TID 100)")
    assert [f.function for f in parse_crash(payload).frames] == ["raise()", "abort()"]


def test_parse_kernel_payloads() -> None:
    warn = parse_crash(KERNEL_WARN_ON)
    assert warn.kernel_reason is not None and warn.kernel_reason.startswith("WARNING: CPU: 1")
    assert (warn.process, warn.pid, warn.signal) == (None, None, None)
    assert warn.frames[4] == Frame("? dev_graft_qdisc", "kernel", "")
    assert len(warn.frames) == 9
    bug = parse_crash(KERNEL_BUG_AT)
    assert bug.kernel_reason == "kernel BUG at mm/slub.c:3574!" and bug.frames == []


@pytest.mark.parametrize("line", ["PID: abc", "PID: ", "PID: 99999999999999999999", "PID: ٣"])
def test_parse_bad_numbers_are_none(line: str) -> None:
    assert parse_crash(f"Process: p\n{line}\nSignal: x\n").pid is None


def test_parse_empty() -> None:
    crash = parse_crash("")
    assert crash.frames == [] and crash.process is None and crash.kernel_reason is None


# --- blacklist candidates, labels, classes ----------------------------------------------


def test_blacklist_candidates_sleep_core(sleep_core: str) -> None:
    assert [(f.function, f.module) for f in blacklist_candidates(sleep_core)] == [
        ("clock_nanosleep@GLIBC_2.2.5()", LIBC),
        ("__nanosleep()", LIBC),
        ("__libc_start_call_main()", LIBC),
    ]


def test_blacklist_candidates_python_core_excludes_start_and_dedupes() -> None:
    names = [f.function for f in blacklist_candidates(PYTHON_CORE)]
    assert "_start()" not in names and "???" not in names
    assert "__libc_start_main@@GLIBC_2.34()" not in names
    assert names[:2] == ["clock_nanosleep@GLIBC_2.2.5()", "PyObject_Vectorcall()"]
    assert "start_thread()" not in names  # other threads never offered
    looped = "Process: p\n#0 f() - [m]\n#1 f() - [m]\n#2 __libc_start_main() - [other.so]\n"
    assert [(f.function, f.module) for f in blacklist_candidates(looped)] == [
        ("f()", "m"),
        ("__libc_start_main()", "other.so"),
    ]


def test_blacklist_candidates_kernel_keeps_question_frames() -> None:
    assert Frame("? alloc_pipe_info", "kernel", "") in blacklist_candidates(KERNEL_GPF)


def test_guilty_label_and_classes() -> None:
    assert guilty_label("dump_stack", "kernel") == "dump_stack - [kernel]"
    assert len(BACKTRACE_CLASSES) == 4 and "org.clearlinux/crash/clr" in BACKTRACE_CLASSES
    assert "org.clearlinux/kernel/panic" not in BACKTRACE_CLASSES


def test_long_pathological_line_is_fast() -> None:
    line = "#1 " + " - [" * 200_000
    payload = "Process: p\n" + line + "\n"
    assert find_guilty(payload, NONE) is None
    assert parse_crash(payload).frames == []


# --- properties ------------------------------------------------------------------------------

_FRAMEISH = st.text(alphabet="#0123 -[]?x\n\r٣", max_size=40)


@settings(max_examples=500)
@given(_FRAMEISH)
def test_match_frame_equals_regex(line: str) -> None:
    m = FRAME_RE.match(line)
    expected = None if m is None else (m.group(2), m.group(4), m.group(5))
    assert match_frame(line) == expected


@given(st.text(), st.frozensets(st.tuples(st.text(max_size=5), st.text(max_size=5))))
def test_never_raises_on_any_text(payload: str, bl: frozenset[tuple[str, str]]) -> None:
    result = find_guilty(payload, bl)
    assert result is None or isinstance(result, tuple)
    assert isinstance(parse_crash(payload).frames, list)
    blacklist_candidates(payload)


@given(st.lists(_FRAMEISH, max_size=12).map("\n".join))
def test_never_raises_on_frameish_text(payload: str) -> None:
    find_guilty(payload, NONE)
    parse_crash(payload)
    blacklist_candidates(payload)


@pytest.mark.parametrize(
    "module, package",
    [
        ("libc.so.6", "libc.so.6"),
        ("/usr/lib64/libglib-2.0.so.0", "libglib-2.0.so.0"),
        ("/usr/bin/sleep", "sleep"),
        ("kernel", "kernel"),
        ("", ""),
    ],
)
def test_package_is_the_file_name_of_the_guilty_frames_module(module: str, package: str) -> None:
    assert package_of(module) == package
