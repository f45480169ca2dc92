"""What a request is charged for: the CPU time of a worker's process tree, and whether the
machine, not the submission, is to blame for a slow request.

A request is charged ``min(wall time, CPU time of the tree)``: on an idle machine that is the
wall time (several threads or processes never cost more than the clock), on an overloaded one
it is the CPU time the code actually got, so waiting for a core is never the student's cost.
CPU time is read from ``/proc`` (Linux); elsewhere there is none and the wall time is charged.
"""

from __future__ import annotations

import os
from pathlib import Path

from course.grading.reaper import descendants

PROC = Path("/proc")
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

#: The CPUs a request could run on count as "busy" when at least this share of their time
#: went to running something (the request included) while it waited for its reply.
BUSY_SHARE = 0.9
#: A request that got at least this share of one core while its CPUs were busy was computing
#: (starved by the machine); below it, it was waiting on something of its own (``sleep``, a
#: lock, a pipe), which is the submission's doing.
COMPUTING_SHARE = 0.02


def available() -> bool:
    return (PROC / "self" / "stat").is_file()


def _stat(pid: str) -> tuple[int, float, float] | None:
    """(parent pid, CPU seconds of the process itself, of its reaped children), or None if
    it is gone."""
    try:
        raw = (PROC / pid / "stat").read_bytes()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces or ')'
    fields = raw[raw.rindex(b")") + 2:].split()
    # fields[0] is the state (field 3): ppid is field 4, utime..cstime are fields 14..17
    ppid = int(fields[1])
    own = (int(fields[11]) + int(fields[12])) / _TICK
    reaped = (int(fields[13]) + int(fields[14])) / _TICK
    return ppid, own, reaped


def tree_seconds(root: int) -> float | None:
    """CPU seconds (user + system) used so far by every live descendant of ``root``,
    including the children they and ``root`` have reaped, but not ``root``'s own time (the
    worker's reaper polls: that is the grader's work). None where ``/proc`` is not there."""
    if root <= 0 or not available():
        return None
    own = _stat(str(root))
    if own is None:
        return None
    total = own[2]
    for pid in descendants(root, quick=True):
        got = _stat(str(pid))
        if got is not None:  # gone meanwhile: its time is in its parent's reaped share
            total += got[1] + got[2]
    return total


def cpu_ticks() -> dict[int, tuple[int, int]]:
    """Per CPU: (ticks spent running something, ticks in all) since boot, from /proc/stat;
    ``{}`` where there is no /proc."""
    out: dict[int, tuple[int, int]] = {}
    try:
        lines = (PROC / "stat").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        name, _, rest = line.partition(" ")
        if name.startswith("cpu") and name[3:].isdigit():
            ticks = [int(x) for x in rest.split()[:8]]  # user nice system idle iowait irq softirq steal
            idle = ticks[3] + ticks[4]
            out[int(name[3:])] = (sum(ticks) - idle, sum(ticks))
    return out


def busy_share(before: dict[int, tuple[int, int]], cpus: set[int] | None = None) -> float | None:
    """Share of the time the CPUs in ``cpus`` (all by default) spent running something since
    ``before`` (a :func:`cpu_ticks` reading); None when it cannot be told."""
    after = cpu_ticks()
    keys = [c for c in after if c in before and (cpus is None or c in cpus)]
    busy = sum(after[c][0] - before[c][0] for c in keys)
    total = sum(after[c][1] - before[c][1] for c in keys)
    return busy / total if total > 0 else None


def machine_busy(before: dict[int, tuple[int, int]] | None = None,
                 cpus: set[int] | None = None) -> bool:
    """Whether the CPUs a process may use were (nearly) always running something since
    ``before``; without a reading, whether the load average exceeds the number of cores."""
    share = busy_share(before, cpus) if before else None
    if share is not None:
        return share >= BUSY_SHARE
    try:
        return os.getloadavg()[0] > (os.cpu_count() or 1)
    except (OSError, AttributeError):
        return False


def starved(cpu_s: float | None, wall_s: float, before: dict[int, tuple[int, int]] | None = None,
            cpus: set[int] | None = None) -> bool:
    """Whether a request that ran ``wall_s`` seconds and got ``cpu_s`` CPU seconds was held up
    by the machine (its CPUs busy, and it was computing) rather than waiting on its own."""
    computing = cpu_s is None or (wall_s > 0 and cpu_s / wall_s >= COMPUTING_SHARE)
    return computing and machine_busy(before, cpus)
