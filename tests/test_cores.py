"""course.cores: the cores a run may use (affinity and cgroup CPU quota), not the host's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from course import cores


def _tree(tmp_path: Path, membership: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    root.mkdir(exist_ok=True)
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(membership)
    return root, proc


@pytest.fixture
def four_cores(monkeypatch):
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)


@pytest.mark.parametrize(("membership", "files", "quota", "usable"), [
    # cgroup v2, a Docker container of --cpus 1.5 (its group is the mount's root)
    ("0::/\n", {"cgroup.controllers": "cpu\n", "cpu.max": "150000 100000\n"}, 1.5, 2),
    # v2 seen from the host: the process's group, and a tighter one above it
    ("0::/a/b\n", {"cgroup.controllers": "", "a/b/cpu.max": "300000 100000\n",
                   "a/cpu.max": "100000 100000\n"}, 1.0, 1),
    # v2 without a quota: the affinity alone
    ("0::/a\n", {"cgroup.controllers": "", "a/cpu.max": "max 100000\n"}, None, 4),
    # v1 (a Kubernetes pod: the host's path, absent from the container's mount: its root)
    ("12:cpu,cpuacct:/kubepods/pod1/c1\n2:memory:/x\n",
     {"cpu,cpuacct/cpu.cfs_quota_us": "200000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"},
     2.0, 2),
    # v1 without a quota (-1), next to an unused v2 hierarchy ("hybrid", as on this machine)
    ("1:cpu:/\n0::/\n", {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n",
                         "unified/cgroup.procs": ""}, None, 4),
    # a quota larger than the affinity mask: the mask
    ("0::/\n", {"cgroup.controllers": "", "cpu.max": "800000 100000\n"}, 8.0, 4),
    # unreadable or malformed: no limit, no exception
    ("0::/\n", {"cgroup.controllers": "", "cpu.max": "lots\n"}, None, 4),
    ("garbage\n", {}, None, 4),
])
def test_quota_and_usable_cores(tmp_path, four_cores, membership, files, quota, usable):
    root, proc = _tree(tmp_path, membership, files)
    assert cores.cpu_quota(root, proc) == quota
    assert cores.usable_cores(root, proc) == usable


def test_no_membership_file_means_no_quota(tmp_path, four_cores):
    assert cores.cpu_quota(tmp_path, tmp_path / "missing") is None
    assert cores.usable_cores(tmp_path, tmp_path / "missing") == 4


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")
def test_a_process_pinned_to_one_core_grades_one_at_a_time_with_one_thread():
    """The real thing: pinned with taskset's mask to one core of this machine, the grading
    defaults (submissions at once, torch threads each, course check's parallel releases)
    count one core, whatever os.cpu_count() says."""
    code = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "from course.cores import usable_cores\n"
        "from course.grading import runner\n"
        "from course.grading.cli import default_jobs\n"
        "print(os.cpu_count(), usable_cores(), default_jobs(memory=2**40), "
        "runner.thread_share(1))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    host, usable, jobs, threads = map(int, out)
    assert (usable, jobs, threads) == (1, 1, 1), (host, out)
