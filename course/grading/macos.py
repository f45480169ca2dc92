"""The macOS worker sandbox: a deny-by-default ``sandbox-exec`` profile (an allow-list).

macOS has no namespaces, Landlock or seccomp; its Seatbelt sandbox (``sandbox-exec -p``,
deprecated in its manual but what browsers and build tools still use) takes a profile that
denies everything not allowed. The profile below lets the worker read its Python, the
``course`` package, the data and the system's libraries, write only its scratch folder,
signal only processes of its own sandbox, and open no network connection. Written to the
documented SBPL rules; not run on a Mac by this project's CI (no Mac is available to it).
"""

from __future__ import annotations

import os
import shutil
import sys

SYSTEM_READ = ["/usr/lib", "/usr/share", "/System", "/Library/Frameworks",
               "/Library/Developer/CommandLineTools", "/private/var/db/dyld",
               "/private/var/db/timezone", "/opt/homebrew", "/usr/local"]
DEVICES = ["/dev/null", "/dev/urandom", "/dev/random", "/dev/zero"]


def _quote(path: str) -> str:
    return '"' + os.path.realpath(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def profile(read: list[str], write: list[str]) -> str:
    """The SBPL profile for a worker that may read ``read`` and write ``write``."""
    reads = " ".join(f"(subpath {_quote(p)})" for p in [*read, *SYSTEM_READ])
    writes = " ".join(f"(subpath {_quote(p)})" for p in write)
    devices = " ".join(f"(literal {_quote(p)})" for p in DEVICES)
    return "\n".join([
        "(version 1)",
        "(deny default)",
        "(allow process-fork)",
        f"(allow process-exec {reads})",
        "(allow signal (target same-sandbox))",
        "(allow sysctl-read)",
        "(allow file-read-metadata)",
        "(allow ipc-posix-shm)",
        "(allow mach-lookup (global-name \"com.apple.system.logger\"))",
        f"(allow file-read* (literal \"/\") {reads} {devices} {writes})",
        f"(allow file-write* {writes} (literal \"/dev/null\"))",
        "(deny network*)",
    ])


def prefix(read: list[str], write: list[str]) -> tuple[str, ...]:
    """``sandbox-exec -p PROFILE`` where this is macOS and the tool exists, else ()."""
    exe = shutil.which("sandbox-exec")
    if sys.platform != "darwin" or not exe:
        return ()
    return (exe, "-p", profile(read, write))
