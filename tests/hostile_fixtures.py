"""What the hostile corpus (tests/corpus.py, tests/test_corpus.py) attacks, and how the test
sees whether an attack got through: decoy copies of the course (a second clone, a backup
under the real home folder, classmates' notebooks in an nbgrader exchange and an LMS export),
listening sockets that record whoever reaches them, a monitor of the grader processes' memory,
digests of the installation, and the processes a case may leave behind.

Every decoy lives in a folder named after the run's token (``corpus-<hex>``), and the hostile
cases only ever write to, or signal, what carries that token: if a case escapes the sandbox,
it damages its own decoys and graders, never the checkout, the Python environment or another
user's files (writes to the real installation are probes that change no byte)."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import secrets
import select
import shutil
import signal
import site
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from corpus import ASSIGNMENT, CANARY

REPO = Path(__file__).resolve().parents[1]


def new_token() -> str:
    return f"corpus-{secrets.token_hex(4)}"


def real_home() -> Path:
    """The home folder of this user (workers get a scratch folder as $HOME)."""
    try:
        return Path(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:  # pragma: no cover
        return Path.home()


# -- decoys ----------------------------------------------------------------------------------
@dataclass
class Decoys:
    """Copies of what students must never read, outside the repository the grader uses."""

    clone: Path  # a second clone of the course repository (hidden tests, solutions, package)
    home: Path  # a backup under the real home folder, and an LMS export
    exchange: Path  # an nbgrader exchange folder holding a classmate's submission
    canary: str
    before: dict[str, str] = field(default_factory=dict)

    def files(self) -> list[Path]:
        out = []
        for top in (self.clone, self.home, self.exchange):
            for folder, dirs, names in os.walk(top):
                dirs[:] = [d for d in dirs if d != ".git"]
                out += [Path(folder, n) for n in names if Path(folder, n).is_file()]
        return sorted(out)

    def digest(self) -> dict[str, str]:
        return {str(p): sha256(p) for p in self.files()}

    def changes(self) -> list[str]:
        """Decoy files changed, removed or added since :func:`make_decoys`."""
        now = self.digest()
        return sorted(f"{p} ({'added' if p not in self.before else 'removed' if p not in now else 'modified'})"
                      for p in set(self.before) | set(now) if self.before.get(p) != now.get(p))

    def remove(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)


def _with_canary_in_pca(nb: dict, canary: str) -> dict:
    for cell in nb["cells"]:
        meta = (cell.get("metadata") or {}).get("nbgrader") or {}
        if meta.get("grade_id") == "pca":
            src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            cell["source"] = f"# {canary}: solution of a backup copy\n" + src
    return nb


def make_decoys(root: Path, token: str) -> Decoys:
    """A clone of the repository in ``root``, a backup of its hidden tests and solutions and an
    LMS export under the real home folder, a classmate's notebook in an nbgrader exchange in
    ``root``; every hidden test and solution in them carries the canary."""
    from course.submissions import reference_submission

    canary = f"{CANARY}{token}"
    clone = root / "backup-clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    home = real_home() / f"{token}-course-backup"
    for base in (clone, home):
        tests = base / "autograder" / f"test_{ASSIGNMENT}.py"
        original = (REPO / "autograder" / f"test_{ASSIGNMENT}.py").read_text()
        tests.parent.mkdir(parents=True, exist_ok=True)
        tests.write_text(f"# {canary}: hidden tests of a backup copy\n" + original)
        sol = base / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        sol.parent.mkdir(parents=True, exist_ok=True)
        nb = json.loads((REPO / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text())
        sol.write_text(json.dumps(_with_canary_in_pca(nb, canary), indent=1))
    shutil.copytree(REPO / "course", home / "course",
                    ignore=shutil.ignore_patterns("__pycache__"))
    classmate = json.dumps(_with_canary_in_pca(reference_submission(ASSIGNMENT), canary))
    exchange = root / "exchange"
    inbound = exchange / "ml101" / "inbound" / f"alice+{ASSIGNMENT}+2024-10-01 09:00:00.000000 UTC"
    inbound.mkdir(parents=True)
    (inbound / f"{ASSIGNMENT}.ipynb").write_text(classmate)
    lms = home / "lms-export" / ASSIGNMENT
    lms.mkdir(parents=True)
    (lms / f"bob_{ASSIGNMENT}_attempt_2024-10-01.ipynb").write_text(classmate)
    decoys = Decoys(clone, home, exchange, canary)
    decoys.before = decoys.digest()
    return decoys


# -- listeners -------------------------------------------------------------------------------
class Listeners:
    """A TCP port and a UDP port on 127.0.0.1, two named unix sockets (stand-ins for
    /var/run/docker.sock: one in the run's folder, one under the real home folder) and an
    abstract unix socket, all recording whoever reaches them."""

    def __init__(self, root: Path, home: Path, token: str) -> None:
        self.hits: list[str] = []
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(16)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.unix_paths = [p for p in (str(root / "docker.sock"), str(home / "docker.sock"))
                           if len(p.encode()) < 100]  # sun_path holds 108 bytes
        self.unix = []
        for path in self.unix_paths:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(path)
            s.listen(16)
            self.unix.append(s)
        self.abstract_name = f"{token}-socket"
        self.abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.abstract.bind("\0" + self.abstract_name)
        self.abstract.listen(16)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def tcp_port(self) -> int:
        return self.tcp.getsockname()[1]

    @property
    def udp_port(self) -> int:
        return self.udp.getsockname()[1]

    def _serve(self) -> None:
        names = {self.tcp: "tcp 127.0.0.1", self.abstract: "abstract unix socket",
                 **{s: f"unix socket {p}" for s, p in zip(self.unix, self.unix_paths, strict=True)}}
        servers = [self.tcp, self.udp, self.abstract, *self.unix]
        while not self._stop.is_set():
            ready, _, _ = select.select(servers, [], [], 0.2)
            for s in ready:
                try:
                    if s is self.udp:
                        data, _ = s.recvfrom(4096)
                        self.hits.append(f"udp 127.0.0.1: {data[:60]!r}")
                        continue
                    conn, _ = s.accept()
                    conn.settimeout(1.0)
                    try:
                        data = conn.recv(4096)
                    except OSError:
                        data = b""
                    conn.close()
                    self.hits.append(f"{names[s]}: {data[:60]!r}")
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for s in (self.tcp, self.udp, self.abstract, *self.unix):
            s.close()
        for path in self.unix_paths:
            Path(path).unlink(missing_ok=True)


# -- processes -------------------------------------------------------------------------------
def _pids() -> list[str]:
    """Every process id, from /proc (none where there is no /proc)."""
    try:
        return [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return []


# -- grader memory ---------------------------------------------------------------------------
def _status_kib(pid: str, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class GraderMonitor:
    """Samples the resident memory of the grader processes (the pytest runs of the hidden
    tests) whose submission lies under ``submitted``, by submission name; kills one that
    goes past its cap (``caps_mb`` by name, else ``default_cap_mb``) to keep the machine alive
    (the case then loses its results, and its verdict says why)."""

    def __init__(self, submitted: Path, caps_mb: dict[str, float], default_cap_mb: float) -> None:
        self.marker = (str(submitted) + "/").encode()
        self.caps_mb, self.default_cap_mb = caps_mb, default_cap_mb
        self.peak_mb: dict[str, float] = {}
        self.killed: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _graders(self) -> list[tuple[str, str]]:
        found = []
        for pid in _pids():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"--submission" in cmd and self.marker in cmd:  # a grader (started or forked)
                name = cmd.split(self.marker, 1)[1].split(b"/", 1)[0].decode(errors="replace")
                found.append((pid, name))
        return found

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            for pid, name in self._graders():
                mb = max(_status_kib(pid, "VmHWM"), _status_kib(pid, "VmRSS")) / 1024
                self.peak_mb[name] = max(self.peak_mb.get(name, 0.0), mb)
                if mb > self.caps_mb.get(name, self.default_cap_mb):
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                        self.killed[name] = mb
                    except OSError:
                        pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


# -- the installation ------------------------------------------------------------------------
def site_packages() -> list[Path]:
    return [Path(p) for p in site.getsitepackages() if Path(p).is_dir()]


def installation_files() -> list[Path]:
    """What a submission must not be able to change: the course package, the hidden tests,
    the start-up hooks of site-packages and a sample of the libraries the grader imports."""
    from course.paths import PACKAGE_DIR

    files = sorted(PACKAGE_DIR.rglob("*.py")) + sorted((REPO / "autograder").glob("*.py"))
    for sp in site_packages():
        files += sorted(sp.glob("*.pth")) + [sp / "sitecustomize.py", sp / "usercustomize.py"]
        files += [sp / rel for rel in ("torch/__init__.py", "torch/serialization.py",
                                       "numpy/__init__.py", "sklearn/__init__.py",
                                       "_pytest/python.py", "pytest/__init__.py")]
    return files


def sha256(path: Path) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"


def installation_digest() -> dict[str, str]:
    digest = {str(p): sha256(p) for p in installation_files()}
    for sp in site_packages():  # a file added at the top of site-packages (a .pth, a module)
        digest[f"{sp}/ (listing)"] = hashlib.sha256(
            "\n".join(sorted(os.listdir(sp))).encode()).hexdigest()
    return digest


def digest_changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))


# -- processes left behind -------------------------------------------------------------------
def processes_with(mark: str) -> dict[int, list[str]]:
    """Processes whose command line holds ``mark``: pid -> arguments."""
    found = {}
    for pid in _pids():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if mark.encode() in cmd and int(pid) != os.getpid():
            found[int(pid)] = [a.decode(errors="replace") for a in cmd.split(b"\0") if a]
    return found


def kill_processes(pids: list[int]) -> None:
    """End processes a case left behind (found by their mark; they are this run's)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    time.sleep(0.2)


# -- files a case planted --------------------------------------------------------------------
def files_holding(top: Path, marker: str, originals: dict[str, str] | None = None,
                  skip_suffix: str = ".ipynb") -> list[str]:
    """Files under ``top`` whose bytes contain ``marker``; notebooks aside (a case's source
    holds its own markers), and decoy files still as they were (``originals``: digests)."""
    found = []
    needle = marker.encode()
    originals = originals or {}
    for folder, dirs, names in os.walk(top):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in names:
            path = Path(folder, name)
            if name.endswith(skip_suffix) or not path.is_file():
                continue
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if needle in data and originals.get(str(path)) != hashlib.sha256(data).hexdigest():
                found.append(str(path))
    return sorted(found)
