"""Entry point of a worker process: confine it, tell the grader how, then serve requests.

``python -I -m course.grading.boot FD_IN FD_OUT SPEC`` where SPEC (JSON, from
:mod:`course.grading.sandbox`) says what to apply. Everything here runs before any student
code, in a single thread, and (in a worker started as a process) before torch is imported,
in this order (a worker forked from a template, :mod:`course.grading.zygote`, enters at
:func:`run`):

1. the mount lockdown (only inside fresh mount and PID namespaces: :mod:`lockdown`);
2. the unprivileged uid when the grader is root and can hand one out, else (as root) every
   capability dropped;
3. the Landlock allow-list and the seccomp socket filter (:mod:`confine`).

The first frame the worker sends is what it achieved (``{"op": "hello", ...}``), written
before student code could forge it; the grader decides from it whether to go on.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def confine_self(spec: dict) -> dict:
    """Apply what ``spec`` asks for; return what was applied and what failed (no exception)."""
    from course.grading import confine

    applied: dict = {"lockdown": False, "uid": None, "capabilities_dropped": False,
                     "landlock": 0, "landlock_tcp": False, "landlock_signals": False,
                     "seccomp": False, "seccomp_signals": False, "problems": []}
    problems: list[str] = applied["problems"]
    write = [Path(spec["scratch"])]
    if spec.get("lockdown"):
        from course.grading.lockdown import lock_down

        lock = spec["lockdown"]
        failed = lock_down(Path(lock["hide"]), [Path(p) for p in lock["keep"]],
                           int(lock["scratch_mb"]))
        problems += failed
        applied["lockdown"] = not failed
        write = [Path("/tmp")]  # the fresh tmpfs is the scratch space now
    if spec.get("uid") is not None and os.geteuid() == 0:
        try:
            confine.become(int(spec["uid"]))
            applied["uid"] = int(spec["uid"])
        except OSError as exc:
            problems.append(f"switching to uid {spec['uid']}: {exc}")
    if os.geteuid() == 0 and sys.platform.startswith("linux"):
        try:
            confine.drop_capabilities()
            applied["capabilities_dropped"] = True
        except OSError as exc:
            problems.append(f"dropping capabilities: {exc}")
    rules = spec.get("landlock")
    if rules:
        try:
            got = confine.landlock([Path(p) for p in rules["read"]], write,
                                   [Path(p) for p in rules["devices"]])
            applied.update(landlock=got["abi"], landlock_tcp=got["tcp"],
                           landlock_signals=got["signals"])
        except OSError as exc:
            problems.append(f"Landlock: {exc.strerror or exc}")
    if spec.get("seccomp"):
        try:
            # where Landlock cannot scope signals, seccomp does (not inside a PID namespace:
            # there the worker is PID 1 and cannot see the grader anyway)
            got = confine.seccomp(confine_signals=not applied["landlock_signals"]
                                  and os.getpid() != 1)
            applied["seccomp"] = True
            applied["seccomp_signals"] = got["signals"]
        except OSError as exc:
            problems.append(f"seccomp: {exc.strerror or exc}")
    return applied


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    run(int(argv[0]), int(argv[1]), json.loads(argv[2]))


def run(fd_in: int, fd_out: int, spec: dict) -> None:
    """Confine this process as ``spec`` says, then serve on ``fd_in``/``fd_out``; never return
    (also the entry of a worker forked from a template: :mod:`course.grading.zygote`)."""
    # what the grader put in the scratch folder's matplotlib folder (its font list,
    # course.grading.fonts), read now: the lockdown replaces the scratch folder with a new one
    config = _read_folder(Path(spec["scratch"]) / ".mpl") if spec.get("lockdown") else {}
    applied = confine_self(spec)
    if spec.get("lockdown") or applied["uid"] is not None:
        os.environ.update(HOME=str(Path.cwd()), TMPDIR=str(Path.cwd()),
                          MPLCONFIGDIR=str(Path.cwd() / ".mpl"))
    _write_folder(Path(os.environ.get("MPLCONFIGDIR") or ".mpl"), config)
    # torch is imported only now, confined (a worker forked from a template has it already:
    # imported by trusted code, in a process that has run nothing of anyone's)
    from course.grading import worker

    worker.preload(spec.get("preload") or ())
    worker.serve(fd_in, fd_out, applied)
    leave_now(0)


def _read_folder(folder: Path) -> dict[str, bytes]:
    """The files of ``folder`` (none where it cannot be read)."""
    try:
        return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    except OSError:
        return {}


def _write_folder(folder: Path, files: dict[str, bytes]) -> None:
    """Put ``files`` into ``folder`` where they are not yet (nothing fails the start)."""
    for name, data in files.items():
        try:
            folder.mkdir(exist_ok=True)
            if not (folder / name).exists():
                (folder / name).write_bytes(data)
        except OSError:
            pass


def leave_now(code: int) -> None:
    """End this process at once, its output flushed: an interpreter that imported torch
    spends most of a second tearing its modules down (0.65 s for torch alone, 0.9 s with
    matplotlib or scikit-learn: measured), and a grading ends two of them, its worker's and
    its grader's. Nothing is lost: the report is on disk, the output in the pipes; atexit
    handlers (the student's among them) do not run."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a stream the notebook replaced or closed
            pass
    os._exit(code)


if __name__ == "__main__":
    main()
