"""How many CPU cores this process may use: its CPU affinity, capped by a cgroup CPU quota.

``os.cpu_count()`` counts the host's cores. A Docker container started with ``--cpus 2``, a
Kubernetes pod with a CPU limit, a Gradescope autograder or a Slurm job may use far fewer:
the quota (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``) throttles every thread once the
group has spent its share, and the affinity mask (``taskset``, ``--cpuset-cpus``) leaves the
other cores out. Torch threads and graders at once sized from the host's count then share a
few cores among dozens of threads and run many times slower. Nothing here raises: what
cannot be read counts as no limit.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
MEMBERSHIP = Path("/proc/self/cgroup")


def affinity_cores() -> int:
    """Cores in this thread's affinity mask (the host's count where there is no such mask)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def usable_cores(root: Path = CGROUP_ROOT, membership: Path = MEMBERSHIP) -> int:
    """The cores this process may use: the affinity mask, capped by the CPU quota of its
    cgroup and of every cgroup above it, rounded up (1.5 CPUs: 2)."""
    cores = affinity_cores()
    quota = cpu_quota(root, membership)
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota - 1e-9)))
    return cores


def cpu_quota(root: Path = CGROUP_ROOT, membership: Path = MEMBERSHIP) -> float | None:
    """The tightest CPU quota, in CPUs, of the cgroups this process belongs to (None: no
    quota, or none readable)."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return None
    found: list[float] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and not controllers:  # cgroup v2: alone, or beside v1 ("hybrid")
            unified = root if (root / "cgroup.controllers").exists() else root / "unified"
            found += _walk(unified, path, _v2)
        elif "cpu" in controllers.split(","):  # cgroup v1, the cpu controller's hierarchy
            for mount in dict.fromkeys((root / controllers, root / "cpu", root / "cpu,cpuacct")):
                if mount.is_dir():
                    found += _walk(mount, path, _v1)
                    break
    return min(found) if found else None


def _walk(mount: Path, path: str, read) -> list[float]:
    """Quotas found from the group at ``path`` up to the mount's root. Inside a container the
    path may name the host's group, which the container's mount does not hold; its own group
    is then the mount's root, which the walk reaches last."""
    quotas = []
    rel = Path(path.strip("/")) if path.strip("/") else Path()
    for folder in [rel, *rel.parents]:
        q = read(mount / folder)
        if q is not None:
            quotas.append(q)
    return quotas


def _v2(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else _ratio(int(quota), int(period))
    except (OSError, ValueError):
        return None


def _v1(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text().strip())
        period = int((folder / "cpu.cfs_period_us").read_text().strip())
    except (OSError, ValueError):
        return None
    return None if quota < 0 else _ratio(quota, period)


def _ratio(quota: int, period: int) -> float | None:
    return quota / period if quota > 0 and period > 0 else None
