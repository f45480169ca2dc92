"""The grader's trust checks: a manifest of its code, tests and gradebook; signed results."""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import importlib.machinery
import importlib.util
import json
import marshal
import os
import site
import stat
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from course.errors import CourseError
from course.paths import PACKAGE_DIR, repo_root

MISSING = "missing"
#: Files at the repository root that configure the pytest run of the hidden tests.
PYTEST_CONFIG = ("conftest.py", "pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini",
                 "setup.cfg")
#: Files in site-packages that every Python process (the grader's too) runs at start-up.
STARTUP_HOOKS = ("*.pth", "sitecustomize.py", "usercustomize.py", "__editable__*")
SIGNATURE = "signature"
_SIGN_CONTEXT = b"course-grader results v1\n"


class IntegrityError(CourseError):
    """A file the grader trusts changed: no result may be written."""


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file; ``MISSING`` when absent, ``directory`` for a folder (or a link
    to one). Never blocks on a FIFO planted in its place."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return MISSING
    try:
        h = hashlib.sha256()
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
        return h.hexdigest()
    except IsADirectoryError:
        return "directory"
    finally:
        os.close(fd)


def _importable(name: str) -> bool:
    return name.endswith(tuple(importlib.machinery.all_suffixes()))


# -- bytecode -------------------------------------------------------------------------------
def _pyc_source(pyc: Path) -> tuple[Path, int] | None:
    """The source a ``__pycache__/<mod>.<tag>[.opt-N].pyc`` of this interpreter stands for,
    and its optimisation level; None for files this interpreter never loads."""
    if pyc.parent.name != "__pycache__" or pyc.suffix != ".pyc":
        return None
    parts = pyc.name[:-4].split(".")
    opt = 0
    if parts and parts[-1].startswith("opt-") and parts[-1][4:].isdigit():
        opt = int(parts.pop()[4:])
    if len(parts) < 2 or parts[-1] != sys.implementation.cache_tag:
        return None
    return pyc.parent.parent / (".".join(parts[:-1]) + ".py"), opt


def bytecode_problem(pyc: Path) -> str:
    """Why Python would load bytecode from ``pyc`` that is not its source's ("" when fine).

    A ``.pyc`` is only used when its header matches the source (or is an unchecked hash-based
    one); such a file must hold exactly what compiling the source gives."""
    found = _pyc_source(pyc)
    if found is None:
        return ""
    source, opt = found
    try:
        data = pyc.read_bytes()
        src = source.read_bytes()
        st = source.stat()
    except FileNotFoundError:
        return ""  # no source next to it: never loaded from __pycache__
    if len(data) < 16 or data[:4] != importlib.util.MAGIC_NUMBER:
        return ""  # Python ignores (and rewrites) it
    flags = int.from_bytes(data[4:8], "little")
    if flags & 1:  # hash-based: checked against the source unless told not to
        if flags & 2 and data[8:16] != importlib.util.source_hash(src):
            return ""
    elif (int.from_bytes(data[8:12], "little") != int(st.st_mtime) & 0xFFFFFFFF
          or int.from_bytes(data[12:16], "little") != st.st_size & 0xFFFFFFFF):
        return ""  # stale: Python recompiles the source instead
    try:
        code = marshal.loads(data[16:])
        same = code == compile(src, str(source), "exec", dont_inherit=True, optimize=opt)
    except Exception:  # noqa: BLE001 - anything unreadable that Python would still try
        same = False
    return "" if same else "bytecode that does not match its source"


# -- the manifest ---------------------------------------------------------------------------
@dataclass
class Manifest:
    """Digests of everything the grader trusts, taken once; :meth:`verify` checks them again.

    Watched: every file of the ``course`` package (a file added there is a change too), the
    ``autograder/`` folder (hidden tests, conftest), the release notebooks graded against, the
    pytest configuration at the repository root, the start-up hooks of site-packages, and the
    gradebook (with its journal files) when one is in use. Bytecode in ``__pycache__`` may
    appear or change only as the compiled form of its source."""

    root: Path
    package_dir: Path
    files: list[str] = field(default_factory=list)
    trees: list[str] = field(default_factory=list)
    globs: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    assignments: set[str] = field(default_factory=set)
    digests: dict[str, str] = field(default_factory=dict)  # absolute path -> sha256
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def take(cls, assignments: Iterable[str] = (), gradebook: Path | None = None,
             root: Path | None = None, package_dir: Path | None = None) -> Manifest:
        root = Path(root or repo_root()).resolve()
        m = cls(root=root, package_dir=Path(package_dir or PACKAGE_DIR).resolve())
        m.trees = [str(m.package_dir), str(root / "autograder")]
        m.files = [str(root / name) for name in PYTEST_CONFIG]
        if gradebook is not None:
            db = str(Path(gradebook).resolve())
            m.files += [db, db + "-journal", db + "-wal"]
        m.globs = [(d, STARTUP_HOOKS) for d in _site_dirs()]
        m.digests = m._snapshot()
        for a in assignments:
            m.add_assignment(a)
        bad = [f"{_show(p, root)} ({why})" for p in m.digests
               if p.endswith(".pyc") and (why := bytecode_problem(Path(p)))]
        if bad:
            raise IntegrityError(f"the grader's installation holds {', '.join(bad)}; delete "
                                 "those __pycache__ files and check `git status` before grading")
        return m

    def add_assignment(self, assignment: str) -> None:
        """Watch the hidden tests (already under autograder/) and the release notebook."""
        from course.grading.runner import hidden_tests
        from course.submissions import release_path

        with self._lock:
            if assignment in self.assignments:
                return
            hidden_tests(assignment, self.root)  # a clear error when they are missing
            release = str(release_path(assignment, self.root).resolve())
            self.files.append(release)
            self.digests[release] = sha256_file(release)
            self.assignments.add(assignment)

    def _paths(self) -> list[str]:
        with self._lock:
            paths = list(self.files)
        join = os.path.join
        for tree in self.trees:
            everything = tree != str(self.package_dir)  # in the package: what can be imported
            for folder, dirs, names in os.walk(tree):
                paths += [join(folder, d) for d in dirs if os.path.islink(join(folder, d))]
                if os.path.basename(folder) == "__pycache__":
                    paths += [p for n in names if _pyc_source(Path(p := join(folder, n)))]
                else:
                    paths += [join(folder, n) for n in names if everything or _importable(n)]
        for folder, patterns in self.globs:
            try:
                names = os.listdir(folder)
            except OSError:
                continue
            paths += [join(folder, n) for n in names
                      if any(fnmatch.fnmatchcase(n, pat) for pat in patterns)]
        return paths

    def _snapshot(self) -> dict[str, str]:
        return {p: sha256_file(p) for p in self._paths()}

    def changes(self) -> list[str]:
        """What differs from the manifest, one ``path (what)`` per file; empty when nothing."""
        with self._lock:
            before = dict(self.digests)
        now = self._snapshot()
        out = []
        for path in sorted(set(before) | set(now)):
            old, new = before.get(path, MISSING), now.get(path, MISSING)
            if old == new:
                continue
            if _pyc_source(Path(path)) is not None:
                if new == MISSING or not (why := bytecode_problem(Path(path))):
                    continue  # removed or (re)compiled from its source by Python
                out.append(f"{_show(path, self.root)} ({why})")
            elif old == MISSING:
                out.append(f"{_show(path, self.root)} (added)")
            elif new == MISSING:
                out.append(f"{_show(path, self.root)} (deleted)")
            else:
                out.append(f"{_show(path, self.root)} (modified)")
        return out

    def verify(self, context: str = "", consequence: str = "no result was written") -> None:
        """Raise :class:`IntegrityError` naming every trusted file that changed."""
        changed = self.changes()
        if not changed:
            return
        where = f" {context}" if context else ""
        shown = ", ".join(changed[:8]) + (f" and {len(changed) - 8} more" if len(changed) > 8
                                          else "")
        raise IntegrityError(
            f"grading stopped{where}: files the grader trusts changed during the run: {shown}; "
            f"{consequence}. Restore the installation before grading again (`git status` / "
            f"`git diff` in {self.root}, reinstall the course package, `course release ID` "
            "for a release notebook; a gradebook you edited yourself needs no fix), then "
            "rerun: finished results are reused")

    def __len__(self) -> int:
        return len(self.digests)


def _site_dirs() -> list[str]:
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return [d for d in dirs if os.path.isdir(d)]


def _show(path: str, root: Path) -> str:
    prefix = str(root) + os.sep
    return path[len(prefix):] if path.startswith(prefix) else path


# -- the manifest of a grading run ----------------------------------------------------------
_run: Manifest | None = None
_run_lock = threading.Lock()


def start_run(assignments: Iterable[str], gradebook: Path | None = None,
              **where: Any) -> Manifest:
    """Take the manifest of a grading run in this process; every ``grade_job`` without a
    manifest of its own checks against it until :func:`end_run` (or the next start).
    ``where``: ``root`` / ``package_dir`` of :meth:`Manifest.take`."""
    global _run
    manifest = Manifest.take(assignments, gradebook=gradebook, **where)
    with _run_lock:
        _run = manifest
    return manifest


def end_run() -> None:
    global _run
    with _run_lock:
        _run = None


def run_manifest(assignment: str) -> Manifest:
    """The manifest of the current run (watching ``assignment`` too), else a fresh one."""
    with _run_lock:
        manifest = _run
    if manifest is None:
        return Manifest.take([assignment])
    manifest.add_assignment(assignment)
    return manifest


# -- signed results ---------------------------------------------------------------------------
def key_path() -> Path:
    """Where this machine's grader key lives: ``COURSE_GRADER_KEY_FILE``, else
    ``$XDG_CONFIG_HOME/course-grader/key`` (``~/.config/course-grader/key``)."""
    env = os.environ.get("COURSE_GRADER_KEY_FILE")
    if env:
        return Path(env).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config).expanduser() / "course-grader" / "key"


_keys: dict[Path, bytes] = {}
_key_lock = threading.Lock()


def grader_key() -> bytes:
    """This machine's secret signing key, created (0600, 32 random bytes) on first use."""
    path = key_path()
    with _key_lock:
        if path in _keys:
            return _keys[path]
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            key = _read_key(path)
        except FileNotFoundError:
            key = _create_key(path)
        _keys[path] = key
        return key


def _read_key(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise CourseError(f"the grader key {path} must be a file of this user that nobody "
                              "else can read or write (chmod 600)")
        key = fh.read(4096)
    if len(key) < 32:
        raise CourseError(f"the grader key {path} is too short; delete it to make a new one "
                          "(results signed with it will be regraded)")
    return key


def _create_key(path: Path) -> bytes:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(32))
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # atomic; loses cleanly to another grader creating it first
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
    return _read_key(path)


def _canonical(results: dict[str, Any]) -> bytes:
    data = dict(results)
    extra = dict(data.get("extra_data") or {})
    extra.pop(SIGNATURE, None)
    data["extra_data"] = extra
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def signature(results: dict[str, Any]) -> str:
    """HMAC-SHA256 (hex) of the results' canonical JSON, the signature itself left out."""
    return hmac.new(grader_key(), _SIGN_CONTEXT + _canonical(results), hashlib.sha256).hexdigest()


def sign(results: dict[str, Any]) -> dict[str, Any]:
    """Store the signature in ``results["extra_data"]`` and return ``results``."""
    results.setdefault("extra_data", {})[SIGNATURE] = signature(results)
    return results


def is_signed(results: Any) -> bool:
    """Whether ``results`` carries a valid signature of this machine's grader."""
    if not isinstance(results, dict) or not isinstance(results.get("extra_data"), dict):
        return False
    claimed = results["extra_data"].get(SIGNATURE)
    if not isinstance(claimed, str):
        return False
    try:
        return hmac.compare_digest(claimed, signature(results))
    except (TypeError, ValueError):
        return False
