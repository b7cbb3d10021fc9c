"""Clear Linux crash payloads: backtrace parsing and the guilty-frame algorithm.

Two payload formats carry backtraces (``shared/reference/clearlinux.md`` §4.7):

* user space, from crashprobe (``org.clearlinux/crash/clr``): ``Process:``, ``PID:`` and
  ``Signal:`` lines, then per thread a ``Backtrace (TID n):`` header and frames
  ``#i function() - [module]`` with an optional `` - file:line``; the crashing thread
  comes first and threads are separated by blank lines;
* kernel oops, from klogscanner/pstore: ``Crash Report:``, ``Reason: …``, a few
  ``Key : value`` lines, ``Backtrace :``, optional ``Register X: …`` lines, then frames
  ``#i function - [kernel]`` (no ``()``; unreliable frames keep their ``? `` prefix).

:func:`find_guilty` reproduces the original backend's ``find_guilty`` bit for bit,
quirks included (the first line is always discarded; a second ``? x`` kernel frame can
be guilty). Frames are matched with :func:`match_frame`, which gives exactly the result
of :data:`FRAME_RE` but in linear time: the regex backtracks quadratically on long lines
full of `` - [``, and payloads come from the network. Nothing here raises on any text.
"""

from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import dataclass
from typing import Final

__all__ = [
    "BACKTRACE_CLASSES",
    "FRAME_RE",
    "NEVER_OFFERED",
    "Frame",
    "ParsedCrash",
    "blacklist_candidates",
    "find_guilty",
    "guilty_label",
    "match_frame",
    "package_of",
    "parse_crash",
]

# Groups: 1 frame number and a space, 2 function, 3 the rest, 4 module, 5 optional
# source suffix. Group 2 is greedy, so a match anchors on the *last* " - [" that has a
# "]" after it.
FRAME_RE: Final = re.compile(r"^(#\d+ )(.+)( - \[(.*)\](.*))$")

# The classes whose records get a guilty (processing pipeline, §3.4).
BACKTRACE_CLASSES: Final[tuple[str, ...]] = (
    "org.clearlinux/crash/clr",
    "org.clearlinux/kernel/bug",
    "org.clearlinux/kernel/stackoverflow",
    "org.clearlinux/kernel/warning",
)

# Frames never offered for the blacklist (§3.5), as (function prefix, module substring)
# rules, like the original UI's re.search("^_start()") and
# re.search("^__libc_start_main()") + "libc.so.6" (its "()" is an empty regex group, so
# they are prefix tests: "__libc_start_main@@GLIBC_2.34()" is covered too).
NEVER_OFFERED: Final[tuple[tuple[str, str], ...]] = (
    ("_start", ""),
    ("__libc_start_main", "libc.so.6"),
)

UNKNOWN_FUNCTION: Final = "???"

_FRAME_PREFIX_RE: Final = re.compile(r"#\d+ ")
_TID_HEADER_RE: Final = re.compile(r"Backtrace \(TID [0-9]+\):")
_INT_MAX: Final = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Frame:
    """One backtrace frame; ``location`` is the ``file:line`` suffix or ``""``."""

    function: str
    module: str
    location: str


@dataclass(frozen=True, slots=True)
class ParsedCrash:
    """Header values and crashing-thread frames of one crash payload."""

    process: str | None
    pid: int | None
    signal: int | None
    frames: list[Frame]
    kernel_reason: str | None


def match_frame(line: str) -> tuple[str, str, str] | None:
    """Return groups (2, 4, 5) of ``FRAME_RE.match(line)``, computed in linear time."""
    if line.endswith("\n"):  # "$" also matches before one final newline
        line = line[:-1]
    if "\n" in line:  # "." never matches a newline
        return None
    prefix = _FRAME_PREFIX_RE.match(line)
    if prefix is None:
        return None
    close = line.rfind("]")
    if close < 0:
        return None
    # The last " - [" that leaves a non-empty function and ends at or before the "]".
    sep = line.rfind(" - [", prefix.end() + 1, close)
    if sep < 0:
        return None
    return line[prefix.end() : sep], line[sep + 4 : close], line[close + 1 :]


def find_guilty(
    payload: str, blacklist: Container[tuple[str, str]]
) -> tuple[str, str] | None:
    """Return the guilty (function, module) of a crash payload, as the original did."""
    first_unknown: tuple[str, str] | None = None
    prev_frame: tuple[str, str] | None = None
    in_backtrace = False
    for line in payload.splitlines()[1:]:  # the first line is never a candidate
        groups = match_frame(line)
        if groups is None:
            if in_backtrace:
                break  # end of the crashing thread: other threads never count
            continue
        in_backtrace = True
        pair = (groups[0], groups[1])
        func = pair[0]
        if pair in blacklist:
            prev_frame = pair
        elif (func == UNKNOWN_FUNCTION or func.startswith("? ")) and first_unknown is None:
            first_unknown = prev_frame = pair
        elif func == UNKNOWN_FUNCTION:
            prev_frame = pair
        else:
            return pair
    if first_unknown is not None:
        return first_unknown
    return prev_frame


def _small_int(text: str) -> int | None:
    if not text or len(text) > 10 or not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if value <= _INT_MAX else None


def _location(suffix: str) -> str:
    return suffix[3:] if suffix.startswith(" - ") else suffix


def parse_crash(payload: str) -> ParsedCrash:
    """Parse header values and the crashing thread's frames; never raises."""
    process: str | None = None
    pid: int | None = None
    signal: int | None = None
    reason: str | None = None
    frames: list[Frame] = []
    seen_tid_header = False
    for line in payload.splitlines():
        groups = match_frame(line)
        if groups is not None:
            frames.append(Frame(groups[0], groups[1], _location(groups[2])))
            continue
        if frames:
            break  # the blank line (or anything else) ending the first thread
        if _TID_HEADER_RE.fullmatch(line):
            if seen_tid_header:
                break
            seen_tid_header = True
        elif line.startswith("Process: "):
            process = line[len("Process: ") :]
        elif line.startswith("PID: "):
            pid = _small_int(line[len("PID: ") :])
        elif line.startswith("Signal: "):
            signal = _small_int(line[len("Signal: ") :])
        elif line.startswith("Reason: "):
            reason = line[len("Reason: ") :]
    return ParsedCrash(process, pid, signal, frames, reason)


def _never_offered(frame: Frame) -> bool:
    if frame.function == UNKNOWN_FUNCTION:
        return True
    return any(
        frame.function.startswith(prefix) and part in frame.module
        for prefix, part in NEVER_OFFERED
    )


def blacklist_candidates(payload: str) -> list[Frame]:
    """Crashing-thread frames a user may mark "never guilty", first occurrence only."""
    seen: set[tuple[str, str]] = set()
    out: list[Frame] = []
    for frame in parse_crash(payload).frames:
        pair = (frame.function, frame.module)
        if pair in seen or _never_offered(frame):
            continue
        seen.add(pair)
        out.append(frame)
    return out


def package_of(module: str) -> str:
    """The package a frame is in, as the backtrace names it: the file name of its
    module, the library or binary (``/usr/lib64/libc.so.6`` and ``libc.so.6`` are
    ``libc.so.6``, ``/usr/bin/sleep`` is ``sleep``), ``kernel`` for a kernel frame.

    Crash payloads name no distribution package or bundle, so this is the nearest the
    data comes to one."""
    return module.rstrip("/").rsplit("/", 1)[-1]


def guilty_label(function: str, module: str) -> str:
    """Return the display form ``function - [module]`` used throughout the UI."""
    return f"{function} - [{module}]"
