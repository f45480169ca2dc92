"""matplotlib's font list, built once per machine by trusted code and handed to each worker.

A worker's matplotlib configuration folder is new for every grading (in its scratch folder),
so importing matplotlib there scanned every installed font to build the list again: 0.2 s of
each grading on this machine's 87 fonts, seconds on a desktop with hundreds. ``course grade``
builds the list here once (:func:`ensure`: matplotlib itself, in a process of its own, started
``-I``) and each worker finds a copy in its matplotlib folder when it starts (:func:`give`;
behind the mount lockdown the worker carries it into its new scratch space,
:mod:`course.grading.boot`). The list names font files
and their properties, nothing else; it is rebuilt when a folder of fonts has changed since (a
font installed or removed), or when matplotlib has. A worker never writes it (it is out of its
reach as the grader's other files are) and never needs it: without one, matplotlib builds its
own as before.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from course.paths import user_cache_dir

#: Where matplotlib looks for fonts besides its own (its X11 and macOS folders, fontconfig's
#: defaults): a change to any of them, or below, makes the list old.
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "/usr/X11R6/lib/X11/fonts",
             "/usr/X11/lib/X11/fonts", "/usr/lib/openoffice/share/fonts", "~/.local/share/fonts",
             "~/.fonts", "/Library/Fonts", "/Network/Library/Fonts", "/System/Library/Fonts",
             "/opt/local/share/fonts", "~/Library/Fonts")
BUILD = "import matplotlib.font_manager"
BUILD_TIMEOUT_S = 300.0


def folder() -> Path:
    return user_cache_dir() / "matplotlib-fonts"


def _matplotlib_dir() -> Path | None:
    spec = importlib.util.find_spec("matplotlib")
    return Path(spec.origin).parent if spec is not None and spec.origin else None


def _newest_change(mpl: Path) -> float:
    """The latest modification time of matplotlib's package and of every folder of fonts."""
    newest = os.stat(mpl).st_mtime
    for top in FONT_DIRS:
        for dirpath, _dirs, _files in os.walk(os.path.expanduser(top)):
            try:
                newest = max(newest, os.stat(dirpath).st_mtime)
            except OSError:
                continue
    return newest


def current() -> Path | None:
    """The font list to hand to workers, or None (none built, or older than a change to the
    fonts or to matplotlib)."""
    mpl = _matplotlib_dir()
    if mpl is None:
        return None
    lists = sorted(folder().glob("fontlist-v*.json"))
    if len(lists) != 1:
        return None
    try:
        fresh = lists[0].stat().st_mtime >= _newest_change(mpl)
    except OSError:
        return None
    return lists[0] if fresh else None


def ensure() -> Path | None:
    """The current font list, built first where there is none (0.5 to 1 s, once); None where
    matplotlib is missing or the list could not be built (workers then build their own)."""
    found = current()
    if found is not None or _matplotlib_dir() is None:
        return found
    base = folder()
    try:
        base.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=base, prefix=".build-"))
    except OSError:
        return None
    try:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work),
               "MPLCONFIGDIR": str(work), "MPLBACKEND": "Agg"}
        proc = subprocess.run([sys.executable, "-I", "-c", BUILD], env=env, cwd=work,
                              capture_output=True, timeout=BUILD_TIMEOUT_S)
        built = sorted(work.glob("fontlist-v*.json"))
        if proc.returncode != 0 or len(built) != 1:
            return None
        target = base / built[0].name
        os.replace(built[0], target)
        for old in base.glob("fontlist-v*.json"):  # another matplotlib's format
            if old.name != target.name:
                old.unlink(missing_ok=True)
        return target
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def give(config_dir: Path) -> bool:
    """Put the current font list into a worker's matplotlib folder (before it starts);
    whether there was one to give."""
    found = current()
    if found is None:
        return False
    try:
        config_dir.mkdir(exist_ok=True)
        shutil.copyfile(found, config_dir / found.name)
    except OSError:
        return False
    return True
