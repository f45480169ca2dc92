"""What a request is charged for: the CPU time of a worker's process tree, and whether the
machine, not the submission, is to blame for a slow request.

A request is charged ``min(wall time, CPU time of the tree)``: on an idle machine that is the
wall time (several threads or processes never cost more than the clock), on an overloaded one
it is the CPU time the code actually got, so waiting for a core is never the student's cost.
CPU time is read from ``/proc`` (Linux); elsewhere there is none and the wall time is charged.

Speed tests judge a call by its *compute* time, ``min(wall time, user CPU time of the tree)``:
a Python loop is user time, while the page faults of a large temporary are system time that
other processes' memory traffic inflates several times over (a correct broadcast took 0.5 s
idle and was charged 2.5 s on a loaded machine, against a bound of 2.1 s).
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


def _stat(pid: str) -> tuple[int, float, float, float, float] | None:
    """(parent pid, user and all CPU seconds of the process itself, user and all of its reaped
    children), or None if it is gone."""
    try:
        raw = (PROC / pid / "stat").read_bytes()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces or ')'
    fields = raw[raw.rindex(b")") + 2:].split()
    # fields[0] is the state (field 3): ppid is field 4, utime..cstime are fields 14..17
    utime, stime, cutime, cstime = (int(f) / _TICK for f in fields[11:15])
    return int(fields[1]), utime, utime + stime, cutime, cutime + cstime


def tree_times(root: int) -> tuple[float, float] | None:
    """(user, user + system) CPU seconds used so far by every live descendant of ``root``,
    including the children they and ``root`` have reaped, but not ``root``'s own time (the
    worker's reaper polls: that is the grader's work). None where ``/proc`` is not there.

    User time is the code's own computing (a Python loop is all user time); system time is
    the kernel working for it, mostly page faults of fresh memory, which grow with other
    processes' memory traffic far more than computing does."""
    if root <= 0 or not available():
        return None
    own = _stat(str(root))
    if own is None:
        return None
    user, total = own[3], own[4]
    for pid in descendants(root, quick=True):
        got = _stat(str(pid))
        if got is not None:  # gone meanwhile: its time is in its parent's reaped share
            user += got[1] + got[3]
            total += got[2] + got[4]
    return user, total


def tree_seconds(root: int) -> float | None:
    """CPU seconds (user + system) of ``root``'s tree, as :func:`tree_times` counts them."""
    times = tree_times(root)
    return None if times is None else times[1]


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
