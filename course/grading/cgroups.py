"""Per-worker Linux control groups: a cap on processes (fork bombs) and on resident memory
(which, unlike the address-space rlimit, also holds with CUDA), and a freezer that stops the
worker's processes between requests, where the grader may create them (root, cgroup v1 or v2 mounted writable). Elsewhere nothing happens and the rlimits of
:mod:`course.grading.sandbox` remain the only caps.
"""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def _own_path(controller: str) -> str:
    """This process's cgroup path for a v1 controller ('' for v2's unified hierarchy)."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, names, path = line.split(":", 2)
            if controller in names.split(",") or (controller == "" and names == ""):
                return path
    except OSError:
        pass
    return "/"


class WorkerCgroup:
    """Create with limits, ``enter()`` from the child before exec, ``destroy()`` after."""

    def __init__(self, max_pids: int, memory_bytes: int | None, enabled: bool = True) -> None:
        self.name = f"course-worker-{uuid.uuid4().hex[:12]}"
        self.dirs: list[Path] = []
        self.memory_dir: Path | None = None
        if not enabled:
            return
        try:
            self._create(max_pids, memory_bytes)
        except OSError:
            self.destroy()
            self.dirs = []

    def _create(self, max_pids: int, memory_bytes: int | None) -> None:
        if (ROOT / "cgroup.controllers").is_file():  # cgroup v2
            d = ROOT / _own_path("").lstrip("/") / self.name
            d.mkdir()
            self.dirs.append(d)
            (d / "pids.max").write_text(str(max_pids))
            if memory_bytes:
                (d / "memory.max").write_text(str(memory_bytes))
                (d / "memory.swap.max").write_text("0")
                self.memory_dir = d
            return
        pids = ROOT / "pids"
        if pids.is_dir():
            d = pids / _own_path("pids").lstrip("/") / self.name
            d.mkdir()
            self.dirs.append(d)
            (d / "pids.max").write_text(str(max_pids))
        memory = ROOT / "memory"
        if memory_bytes and memory.is_dir():
            d = memory / _own_path("memory").lstrip("/") / self.name
            d.mkdir()
            self.dirs.append(d)
            (d / "memory.limit_in_bytes").write_text(str(memory_bytes))
            self.memory_dir = d
        freezer = ROOT / "freezer"
        if freezer.is_dir():
            d = freezer / _own_path("freezer").lstrip("/") / self.name
            d.mkdir()
            self.dirs.append(d)

    @property
    def active(self) -> bool:
        return bool(self.dirs)

    @classmethod
    def available(cls) -> bool:
        """Whether this machine lets the grader create worker cgroups (a throw-away probe)."""
        probe = cls(8, 2**26)
        ok = probe.active
        probe.destroy()
        return ok

    def enter(self) -> None:
        """Move the calling process into every group (runs in the child before exec)."""
        for d in self.dirs:
            (d / "cgroup.procs").write_text(str(os.getpid()))

    def freeze(self, frozen: bool) -> None:
        """Stop (or resume) every process in the group, including ones that left the worker's
        session; nothing happens where no group has a freezer."""
        for d in self.dirs:
            for name, value in (("cgroup.freeze", "1" if frozen else "0"),
                                ("freezer.state", "FROZEN" if frozen else "THAWED")):
                if (d / name).is_file():
                    try:
                        (d / name).write_text(value)
                    except OSError:
                        pass

    def hit_memory_limit(self) -> bool:
        """Whether the memory cap was reached (the kernel then kills the worker)."""
        if self.memory_dir is None:
            return False
        for name, key in (("memory.events", "oom_kill"), ("memory.failcnt", None)):
            try:
                text = (self.memory_dir / name).read_text()
            except OSError:
                continue
            if key is None:
                return int(text.strip() or 0) > 0
            for line in text.splitlines():
                if line.startswith(key + " "):
                    return int(line.split()[1]) > 0
        return False

    def kill_all(self) -> None:
        for d in self.dirs:
            try:
                pids = (d / "cgroup.procs").read_text().split()
            except OSError:
                continue
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, PermissionError, ValueError):
                    pass

    def destroy(self) -> None:
        """Kill what is left inside and remove the groups."""
        for _ in range(50):
            self.kill_all()
            for d in list(self.dirs):
                try:
                    d.rmdir()
                except FileNotFoundError:
                    pass  # the worker's reaper removed it first
                except OSError:
                    continue
                self.dirs.remove(d)
            if not self.dirs:
                return
            import time

            time.sleep(0.05)
