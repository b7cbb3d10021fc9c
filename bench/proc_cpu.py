"""CPU time and run-queue wait of other processes, from /proc, by role.

``/proc/PID/task/TID/schedstat`` gives each thread's time on a CPU and time waiting for
one (nanoseconds, not the 10 ms ticks of ``/proc/PID/stat``). A snapshot sums them per
role: a server's process session (``LiveServer`` starts the server as a session
leader, its workers in its session), and a PostgreSQL cluster's postmaster and its
children, told apart by their titles (``postgres: startup recovering …`` is a replica's
WAL replay, ``walreceiver``/``walsender`` the stream, ``postgres: USER DB HOST(PORT)
…`` a client backend, the rest background work: checkpointer, WAL writer, autovacuum).
Time on a CPU is what a loaded machine does not inflate; the wait is how long the
processes were ready to run but found no free core.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")


@dataclass
class Cpu:
    """Seconds on a CPU and seconds waiting for one."""

    run_s: float = 0.0
    wait_s: float = 0.0

    def __add__(self, other: Cpu) -> Cpu:
        return Cpu(self.run_s + other.run_s, self.wait_s + other.wait_s)

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(self.run_s - other.run_s, self.wait_s - other.wait_s)


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, session) of a process, None if it is gone."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), int(fields[3])


def _tasks_cpu(pid: int) -> dict[int, Cpu]:
    """Each thread's time of a process, by thread id (none if it is gone)."""
    out: dict[int, Cpu] = {}
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            run, wait, _ = (task / "schedstat").read_text().split()
        except (OSError, ValueError):
            continue
        out[int(task.name)] = Cpu(int(run) / 1e9, int(wait) / 1e9)
    return out


def _title(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(
            "utf-8", "replace").strip()
    except OSError:
        return ""


def postgres_role(title: str) -> str:
    """The role of a PostgreSQL child process by its title."""
    if title.startswith("postgres: startup"):
        return "replay"
    if "walreceiver" in title:
        return "walreceiver"
    if "walsender" in title:
        return "walsender"
    parts = title.split()
    # "postgres: USER DATABASE HOST(PORT) STATE": a client backend.
    if len(parts) >= 4 and parts[0] == "postgres:" and "(" in parts[3]:
        return "backends"
    return "background"


@dataclass
class Snapshot:
    """CPU so far of each thread by thread id, with its process's role."""

    by_task: dict[int, tuple[str, Cpu]] = field(default_factory=dict)

    def roles(self) -> dict[str, Cpu]:
        out: dict[str, Cpu] = {}
        for role, cpu in self.by_task.values():
            out[role] = out.get(role, Cpu()) + cpu
        return out


def snapshot(server_pid: int | None = None, postmasters: dict[str, int] | None = None
             ) -> Snapshot:
    """The server's session as role ``server``; each named cluster's processes as
    ``NAME ROLE`` (``primary backends``, ``replica replay`` …)."""
    shot = Snapshot()
    by_parent = {pid: name for name, pid in (postmasters or {}).items()}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        found = _stat(pid)
        if found is None:
            continue
        ppid, session = found
        role = None
        if server_pid is not None and session == server_pid:
            role = "server"
        elif pid in by_parent:
            role = f"{by_parent[pid]} background"
        elif ppid in by_parent:
            role = f"{by_parent[ppid]} {postgres_role(_title(pid))}"
        if role is not None:
            for tid, cpu in _tasks_cpu(pid).items():
                shot.by_task[tid] = (role, cpu)
    return shot


def between(before: Snapshot, after: Snapshot) -> dict[str, Cpu]:
    """CPU per role spent between two snapshots, thread by thread (a thread started in
    between counts from zero; one that ended in between is lost, never negative)."""
    out: dict[str, Cpu] = {}
    for tid, (role, cpu) in after.by_task.items():
        start = before.by_task.get(tid)
        spent = cpu - start[1] if start is not None and start[0] == role else cpu
        out[role] = out.get(role, Cpu()) + spent
    return out


def postmaster_pid(datadir: Path) -> int:
    """The postmaster's pid, from ``postmaster.pid``'s first line."""
    return int((datadir / "postmaster.pid").read_text().split()[0])
