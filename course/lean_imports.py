"""The course's own processes (its CLI, the nbgrader runs it starts) skip a slow optional import.

Importing ``nbformat`` imports ``jsonschema``, which compiles the RFC 3987 grammar of the
optional ``rfc3987_syntax`` package with Lark when that package is installed (jupyter-events
pulls it in): 2.2 s of the 2.5 s ``import nbformat`` takes on 2 cores, and of the 5 s nbgrader
takes to start, for the ``iri`` and ``iri-reference`` format checks of jsonschema that nbformat,
nbgrader and nbconvert never ask for (they validate notebooks without a format checker).
Marking the module as absent before anything imports it makes jsonschema leave those two
checks out, as it does wherever the package is not installed. Other programs (JupyterLab, a
student's kernel, an instructor's own ``nbgrader``) are left as they are.
"""

from __future__ import annotations

import sys

#: The optional module left out (jsonschema imports it inside ``suppress(ImportError)``).
SKIPPED = "rfc3987_syntax"

#: Python source that does :func:`skip_slow_imports` first thing in a new interpreter.
PRELUDE = f"import sys; sys.modules.setdefault({SKIPPED!r}, None)"


def skip_slow_imports() -> None:
    """Leave :data:`SKIPPED` out of this process (no effect once it was imported)."""
    sys.modules.setdefault(SKIPPED, None)


def nbgrader_command(*args: str) -> list[str]:
    """``python -m nbgrader ARGS`` for this interpreter, with :data:`PRELUDE` first."""
    return [sys.executable, "-c",
            f"{PRELUDE}; from nbgrader.apps.nbgraderapp import main; sys.argv[0] = 'nbgrader'; "
            "main()", *args]
