"""nbgrader configuration for the course (read by every `nbgrader ...` run in this folder).

Works for `course release` (which calls `nbgrader generate_assignment` with this folder as the
working directory) and for an instructor typing plain `nbgrader <command>` in the repository
root. Paths below are relative to the course root, which nbgrader takes to be the current
directory.
"""

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import ClearHiddenTests, GetGrades

c = get_config()  # noqa: F821  (injected by traitlets when nbgrader loads this file)

# --- where things live -------------------------------------------------------------------
c.CourseDirectory.course_id = "unsupervised-learning"
# Hand-edited notebooks: source/<id>/<id>.ipynb (source/header.ipynb is not an assignment).
c.CourseDirectory.source_directory = "source"
# Student versions, generated and committed.
c.CourseDirectory.release_directory = "release"
# nbgrader's default is "solution"; ours is plural like the other step folders.
c.CourseDirectory.solution_directory = "solutions"
# submitted/, autograded/ and feedback/ keep nbgrader's defaults (and are git-ignored).
# Never copy editor and interpreter litter from source/<id>/ into a release.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "__pycache__", "*.pyc", "feedback", ".DS_Store"]

# --- release -----------------------------------------------------------------------------
# The NAME / COLLABORATORS header is kept once, here, and prepended to every notebook.
c.IncludeHeaderFooter.header = "source/header.ipynb"
# What students see in place of a solution region: a stub that fails loudly when run.
c.ClearSolutions.code_stub = {"python": "# your code here\nraise NotImplementedError"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# --- execution (autograde, validate) -----------------------------------------------------
# nbgrader's default is 30 s per cell, far too short for k-means or training on MNIST on a
# laptop CPU. A hung cell is interrupted (and reported) rather than killing the whole run.
c.Execute.timeout = 600
c.Execute.interrupt_on_timeout = True
# The same for anything that uses nbconvert's executor with this configuration.
c.ExecutePreprocessor.timeout = 600
c.ExecutePreprocessor.interrupt_on_timeout = True

# --- stderr that is not an error ---------------------------------------------------------
# nbgrader gives a grade cell zero points if it has ANY stderr output, and PyTorch, NumPy and
# matplotlib write harmless warnings there. IgnorePattern (run by autograde right after
# execution) drops each stderr output whose text matches this regex. It is disabled by
# default, so it must be enabled as well as given a pattern. Matched: Python warnings
# ("file.py:12: UserWarning: ..."), PyTorch's C++ warnings ("[W1124 10:00:00...] ...") and tqdm
# progress bars (" 40%|####"). A real failure is an exception, i.e. an `error` output, which
# this never touches.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"(?m)\w*Warning: |^\[W\d{4} |\d+%\|"

# --- feedback ----------------------------------------------------------------------------
# nbgrader's feedback HTML shows hidden test code unless ClearHiddenTests runs first.
# (Our hidden tests live in autograder/, not in the notebooks; this is a second guard.)
c.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTests, CSSHTMLHeaderPreprocessor]
