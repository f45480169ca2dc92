"""Confinement a worker applies to itself without privilege: Landlock, seccomp, capabilities, uid.

Called by :mod:`course.grading.boot` before the worker imports torch or runs any student code
(while the process has a single thread: Landlock and seccomp bind the calling thread and what
it starts afterwards). Each step is attempted and reported; none needs root except changing
uid and dropping capabilities, which only matter when the grader runs as root.

- Landlock (Linux >= 5.13): an allow-list of paths. The worker may read its Python
  environment, the ``course`` package, the data folder and a few system folders (shared
  libraries, ``/proc``, ``/sys``), and write only its scratch folder. From ABI 4 TCP bind and
  connect are refused; from ABI 6 signals and abstract unix sockets are scoped to the worker
  (it cannot signal the grader or any process it did not start).
- seccomp: ``socket()`` fails with EACCES for every family: no network on any protocol, and
  no connecting to a named unix socket either (``/var/run/docker.sock`` would be root on the
  host; Landlock before ABI 8 does not cover connecting to one). ``socketpair()`` and pipes
  still work (multiprocessing). io_uring (which can open sockets behind seccomp's back),
  ``unshare``, ``setns`` and system calls of a foreign architecture (i386 ``int 0x80`` on
  x86-64) fail the same way.
- capabilities: when the worker runs as root, every capability is dropped, so what remains of
  root is ownership of root's files, which the Landlock allow-list removes.
- uid: when the grader is root and the Python environment is readable by others, the worker
  switches to an unprivileged uid of its own (Gradescope's advice), so it cannot write the
  grader's files even where Landlock is missing.
"""

from __future__ import annotations

import ctypes
import os
import platform
import signal
import stat
import struct
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)

PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP, PR_CAP_AMBIENT = 1, 38, 24, 47
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
_CAP_V3 = 0x20080522

# -- Landlock (include/uapi/linux/landlock.h) -------------------------------------------------
SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446  # same on every arch
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1
FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_REFER, FS_TRUNCATE, FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1
#: rights that make sense on a single file (the others are refused by the kernel for files)
_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV


def _fs_rights(abi: int) -> int:
    """Every filesystem right the kernel's Landlock ABI knows (all of them are handled)."""
    rights = (1 << 13) - 1  # ABI 1: execute ... make_sym
    if abi >= 2:
        rights |= FS_REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    if abi >= 5:
        rights |= FS_IOCTL_DEV
    return rights


def landlock_abi() -> int:
    """The Landlock ABI version this kernel offers (0: none, or not Linux)."""
    if platform.system() != "Linux":
        return 0
    try:
        abi = _libc.syscall(SYS_CREATE_RULESET, None, ctypes.c_size_t(0),
                            ctypes.c_uint32(CREATE_RULESET_VERSION))
    except (AttributeError, OSError):  # pragma: no cover - no syscall() in this libc
        return 0
    return max(int(abi), 0)


def _set_no_new_privs() -> None:
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "no_new_privs")


def landlock(read: list[Path], write: list[Path], devices: list[Path]) -> dict:
    """Restrict this thread (and all it later starts) to the given paths; deny TCP and scope
    signals where the ABI allows. Returns what was enforced. Raises OSError when Landlock is
    unavailable or a step fails (the caller reports it)."""
    abi = landlock_abi()
    if abi < 1:
        raise OSError(0, "Landlock is not available on this kernel")
    fs = _fs_rights(abi)
    attr = struct.pack("=Q", fs)
    if abi >= 4:
        attr += struct.pack("=Q", NET_BIND_TCP | NET_CONNECT_TCP)
    if abi >= 6:
        attr += struct.pack("=Q", SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL)
    buf = ctypes.create_string_buffer(attr, len(attr))
    ruleset = _libc.syscall(SYS_CREATE_RULESET, buf, ctypes.c_size_t(len(attr)),
                            ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset")
    try:
        readable = FS_READ_FILE | FS_READ_DIR | FS_EXECUTE
        rules = [(p, readable) for p in read] + [(p, fs) for p in write]
        rules += [(p, FS_READ_FILE | FS_WRITE_FILE | (FS_IOCTL_DEV if abi >= 5 else 0))
                  for p in devices]
        for path, rights in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # a path that does not exist needs no rule
            try:
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    rights &= _FILE_RIGHTS
                rights &= fs
                rule = ctypes.create_string_buffer(struct.pack("=Qi", rights, fd), 12)
                if _libc.syscall(SYS_ADD_RULE, ruleset, RULE_PATH_BENEATH, rule,
                                 ctypes.c_uint32(0)) != 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule {path}")
            finally:
                os.close(fd)
        _set_no_new_privs()
        if _libc.syscall(SYS_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self")
    finally:
        os.close(ruleset)
    return {"abi": abi, "tcp": abi >= 4, "signals": abi >= 6}


# -- seccomp ---------------------------------------------------------------------------------
_ARCHES = {  # machine -> (AUDIT_ARCH, {name: syscall number})
    "x86_64": (0xC000003E, {"socket": 41, "unshare": 272, "setns": 308, "io_uring_setup": 425,
                            "io_uring_enter": 426, "io_uring_register": 427, "kill": 62,
                            "tkill": 200, "tgkill": 234, "rt_sigqueueinfo": 129,
                            "rt_tgsigqueueinfo": 297, "pidfd_send_signal": 424}),
    "aarch64": (0xC00000B7, {"socket": 198, "unshare": 97, "setns": 268, "io_uring_setup": 425,
                             "io_uring_enter": 426, "io_uring_register": 427, "kill": 129,
                             "tkill": 130, "tgkill": 131, "rt_sigqueueinfo": 138,
                             "rt_tgsigqueueinfo": 240, "pidfd_send_signal": 424}),
}
#: System calls that send a signal to the process named by their first argument.
_SIGNALLING = ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")
_RET_ALLOW, _RET_ERRNO = 0x7FFF0000, 0x00050000
_EACCES = 13
_LD_W_ABS, _JEQ_K, _JGE_K, _RET_K = 0x20, 0x15, 0x35, 0x06


def _bpf(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def seccomp_filter_program(machine: str | None = None, own_pid: int | None = None
                           ) -> list[bytes]:
    """The BPF program (one instruction per item) that :func:`seccomp` installs. With
    ``own_pid`` it also confines signals: ``kill`` and friends may only name the worker itself
    or its own process group (pid ``own_pid``, 0 or ``-own_pid``), and ``pidfd_send_signal``
    is refused; the signal scoping of Landlock ABI 6 for kernels that lack it."""
    machine = machine or platform.machine()
    if machine not in _ARCHES:
        raise OSError(0, f"no seccomp filter for {machine}")
    arch, nr = _ARCHES[machine]
    deny = _RET_ERRNO | _EACCES
    names = ["socket", "unshare", "setns", "io_uring_setup", "io_uring_enter",
             "io_uring_register"] + (["pidfd_send_signal"] if own_pid is not None else [])
    denied = [nr[n] for n in names]
    prog = [_bpf(_LD_W_ABS, 4),                       # A = arch
            _bpf(_JEQ_K, arch, jt=1),                 # native arch: skip the deny
            _bpf(_RET_K, deny),
            _bpf(_LD_W_ABS, 0)]                       # A = syscall number
    if machine == "x86_64":
        prog += [_bpf(_JGE_K, 0x40000000, jf=1),     # x32 system calls: deny
                 _bpf(_RET_K, deny)]
    for n in denied:
        prog += [_bpf(_JEQ_K, n, jf=1), _bpf(_RET_K, deny)]
    if own_pid is not None:
        allowed = [own_pid, 0, (-own_pid) & 0xFFFFFFFF]
        m = len(allowed)
        for name in _SIGNALLING:
            prog += [_bpf(_JEQ_K, nr[name], jf=m + 3),  # not this call: skip its block
                     _bpf(_LD_W_ABS, 16)]               # A = the pid it names (low 32 bits)
            prog += [_bpf(_JEQ_K, v, jt=m - i) for i, v in enumerate(allowed)]
            prog += [_bpf(_RET_K, deny), _bpf(_RET_K, _RET_ALLOW)]
    return prog + [_bpf(_RET_K, _RET_ALLOW)]


def seccomp(confine_signals: bool = False) -> dict:
    """Install the filter on this thread (and what it later starts); with
    ``confine_signals`` the process must lead its own process group (the worker does)."""
    own = os.getpid() if confine_signals else None
    if own is not None and os.getpgid(0) != own:
        raise OSError(0, "signal confinement needs the worker to lead its process group")
    prog = seccomp_filter_program(own_pid=own)
    code = b"".join(prog)
    filt = ctypes.create_string_buffer(code, len(code))

    class _Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = _Prog(len(prog), ctypes.cast(filt, ctypes.c_void_p))
    _set_no_new_privs()
    if _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "seccomp filter")
    return {"sockets": "none", "signals": own is not None}


# -- identity ---------------------------------------------------------------------------------
def drop_capabilities() -> None:
    """Drop every capability (bounding set, ambient, effective, permitted, inheritable)."""
    _set_no_new_privs()
    _libc.prctl(PR_CAP_AMBIENT, 4, 0, 0, 0)  # clear ambient capabilities (if supported)
    for cap in range(64):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break  # EINVAL: past the last capability this kernel knows (EPERM: not root)
    header = (ctypes.c_uint32 * 2)(_CAP_V3, 0)
    data = (ctypes.c_uint32 * 6)()
    if _libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def become(uid: int) -> None:
    """Switch to ``uid`` (and a group of the same number) for good; keep dying with the grader
    (a uid change clears the parent-death signal)."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if hasattr(_libc, "prctl"):  # Linux
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def readable_by_others(path: Path) -> bool:
    """Whether a user with no relation to the owner can reach ``path`` (every folder above it
    searchable by others, the path itself readable), by the path as spelled and as resolved:
    Python imports through the spelling it was started with (a symlinked venv). Checks mode
    bits only."""
    for spelling in {Path(path).absolute(), Path(path).resolve()}:
        try:
            for parent in reversed(spelling.parents):
                if not os.stat(parent).st_mode & stat.S_IXOTH:
                    return False
            mode = os.stat(spelling).st_mode
        except OSError:
            return False
        need = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) else 0)
        if mode & need != need:
            return False
    return True
