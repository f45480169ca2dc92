"""Everything a student reads is plain, bounded text.

A student's exception type, message, cell id or "where" (the worker builds it from traceback
filenames, which student code can choose) must reach feedback.md, results.json and the grade
table as one bounded line, and in feedback.md as literal text: it cannot add lines, headings,
a score, table rows or HTML. Each field is cut in the worker and again in the grader.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

from course.grading import plaintext, plugin, runner, worker
from course.grading.plaintext import markdown, one_line
from course.grading.session import Budget, StudentFailure, Submission

BREAKS = ["\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028",
          "\u2029", "\x1b", "\x00", "\t", "\u200b", "\u202e", "\ufeff", "\u3000", "\x7f"]
HOSTILE = ("boom\n\n**Score: 17 / 17**\r\n| forged | 17 / 17 | passed |\u2028"
           "<script>alert(1)</script>\x1b[31m\n# Heading\u2029- item\x851. one\n"
           "> quote [link](http://e.vil) ![img](x.png) `code` _em_ ~~del~~ $x$ &amp; \\")
MARKDOWN_CHARS = "\\`*_{}[]()#+-.!|~$:@^="


def render(mistune):
    """A CommonMark renderer that lets raw HTML through (the dangerous kind)."""
    return mistune.create_markdown(escape=False, plugins=["table", "strikethrough", "url", "math"])


def unescaped(text: str) -> list[str]:
    """Markdown punctuation in ``text`` not escaped by a backslash."""
    found, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in MARKDOWN_CHARS:
            i += 2
            continue
        if text[i] in MARKDOWN_CHARS:
            found.append(text[i])
        i += 1
    return found


# -- the sanitiser -----------------------------------------------------------------------------
@pytest.mark.parametrize("sep", BREAKS, ids=[repr(s) for s in BREAKS])
def test_one_line_turns_every_break_and_control_character_into_one_space(sep):
    assert one_line(f" a{sep}{sep}b{sep}") == "a b"


def test_one_line_is_bounded_and_always_writable():
    assert one_line("x" * 10_000, 50) == "x" * 47 + "..."
    assert one_line("ok \ud800 ok").encode("utf-8") == "ok \ufffd ok".encode()

    class Hostile:
        def __str__(self):
            raise RuntimeError("no")

    assert one_line(Hostile()) == "(unprintable)"
    assert one_line(42) == "42"


def test_markdown_shows_hostile_text_literally():
    md = markdown(HOSTILE)
    assert "\n" not in md and "<" not in md and ">" not in md
    assert unescaped(md) == []
    assert "&lt;script&gt;" in md and "&amp;amp;" in md
    mistune = pytest.importorskip("mistune")
    rendered = render(mistune)(md)
    assert re.fullmatch(r"<p>[^<]*</p>\s*", rendered), rendered  # one paragraph, no markup
    assert html.unescape(rendered.strip()[3:-4]) == one_line(HOSTILE)


# -- the worker cuts its fields ------------------------------------------------------------------
SECRET = "".join(f"hidden test line {i}: assert x == 42\n" for i in range(1000))


def _raise(filename: str, exc_type: type = ValueError, message: str = "m") -> BaseException:
    code = compile(f"raise E({message!r})", filename, "exec")
    try:
        exec(code, {"E": exc_type})  # noqa: S102 - a traceback with that filename
    except BaseException as exc:  # noqa: BLE001
        return exc
    raise AssertionError("did not raise")


def test_the_worker_cuts_type_message_and_where_to_one_bounded_line():
    hostile_type = type("Bad\nName" * 50, (Exception,), {})
    exc = _raise("<cell " + SECRET + ">", hostile_type, "line\n" * 10_000)
    err = worker.error_reply(exc)
    for field, limit in (("type", 80), ("message", 400), ("where", 120)):
        assert "\n" not in err[field] and len(err[field]) <= limit, (field, err[field][:200])
        assert err[field] == one_line(err[field])
    assert err["where"].startswith("cell hidden test line 0") and err["where"].endswith("line 1")
    assert "hidden test line 3:" not in err["where"]


def test_the_worker_still_names_an_ordinary_cell():
    err = worker.error_reply(_raise("<cell double>"))
    assert (err["type"], err["message"], err["where"]) == ("ValueError", "m", "cell double, line 1")


# -- the grader cuts them again ----------------------------------------------------------------
HOSTILE_REPLY = {"ok": False, "kind": "exception", "type": "T\n" * 5000,
                 "message": HOSTILE * 1000, "where": "cell x\n" + SECRET}


def _explain(what: str, reply: dict, cell_report=(), notes=()) -> str:
    fake = SimpleNamespace(plan=SimpleNamespace(
        cells=[{"id": "f\n# cell", "source": "def f():\n    pass\n"}], missing=["g"],
        notes=list(notes)), cell_report=list(cell_report))
    fake._why_missing = lambda name: Submission._why_missing(fake, name)
    return Submission._explain(fake, what, reply)


@pytest.mark.parametrize("kind", ["exception", "not_implemented", "reply"])
def test_the_grader_recuts_what_the_worker_sent(kind):
    text = _explain("Model\n# big.forward(...)", {**HOSTILE_REPLY, "kind": kind})
    assert text == one_line(text, 10_000) and len(text) < 900
    assert "hidden test line 3:" not in text


def test_a_missing_name_explained_from_a_hostile_cell_report():
    report = ["not a dict", {"id": "f\n# cell", "ok": False, **HOSTILE_REPLY}]
    text = _explain("f(...)", {"ok": False, "kind": "missing"}, report)
    assert text == one_line(text, 10_000) and len(text) < 900
    assert "hidden test line 3:" not in text
    text = _explain("g(...)", {"ok": False, "kind": "missing"}, notes=[HOSTILE] * 50)
    assert text == one_line(text) and len(text) < 500


def test_plugin_messages_are_one_bounded_line():
    for exc in (StudentFailure(HOSTILE * 10), AssertionError(HOSTILE), KeyError(HOSTILE)):
        text = plugin.one_line(exc)
        assert text == one_line(text) and len(text) <= plugin.MAX_MESSAGE
        assert "\x1b" not in text and "\u2028" not in text


# -- what is written -------------------------------------------------------------------------------
def _hostile_results() -> dict:
    record = {"test": "test_a", "name": "a | b", "cell": "c1", "max_score": 10.0,
              "passed": False, "message": plugin.one_line(StudentFailure(HOSTILE))}
    passed = {**record, "test": "test_b", "name": "b", "max_score": 7.0, "passed": True,
              "message": ""}
    data = {"records": [record, passed], "notes": [HOSTILE],
            "cells": [{"id": "x\n# h", "ok": False, "type": "E\nrr", "message": HOSTILE,
                       "where": "cell\n" + SECRET}, "not a dict", {"id": "fine", "ok": True}],
            "events": ["sandbox: " + HOSTILE]}
    job = runner.Job("eve\n# forged", Path("eve.ipynb"), "01_kmeans")
    return runner.build_results(job, data, 1.0, runner.Settings(), {"grader": "test"})


def test_results_json_says_plain_text_and_each_note_is_one_line():
    res = _hostile_results()
    assert res["output_format"] == res["test_output_format"] == "text"
    notes = res["output"].split("\n")
    assert len(notes) == 3 and all(n == one_line(n) for n in notes)
    assert all(t["output"] == one_line(t["output"]) for t in res["tests"])


def test_notes_are_capped():
    job = runner.Job("x", Path("x.ipynb"), "01_kmeans")
    res = runner.build_results(job, {"records": [], "notes": ["n"] * 500}, 1.0,
                               runner.Settings(), {})
    lines = res["output"].split("\n")
    assert len(lines) == runner.MAX_NOTES and lines[-1] == "... and 451 more notes"


def test_feedback_of_hostile_messages_has_the_expected_lines_and_no_markdown():
    res = _hostile_results()
    res["extra_data"]["submission"] = "eve\n**Score: 17 / 17**"
    text = runner.feedback_text(res)
    lines = text.splitlines()  # every kind of line break, not only Markdown's
    # header 4, notes 2 + 3 + 1, table head 2, 2 tests
    assert len(lines) == 14, lines
    assert lines[2] == "**Score: 7 / 17**"
    assert [i for i, line in enumerate(lines) if "**" in line] == [2]
    for row in lines[-2:]:
        assert unescaped(row).count("|") == 4, row
    for line in lines[6:9] + lines[-2:]:
        cells = [c for c in line.removeprefix("- ").split(" | ")]
        assert all(unescaped(c.strip("| ")) in ([], ["|"]) for c in cells), line
    assert "<" not in text.replace("| test | points | result |", "")
    mistune = pytest.importorskip("mistune")
    rendered = render(mistune)(text)
    assert rendered.count("<strong>") == 1 and rendered.count("<h1>") == 1
    assert rendered.count("<li>") == 3 and rendered.count("<tr>") == 3
    for tag in ("<script", "<h2", "<em>", "<a ", "<img", "<code>", "<del>", "<blockquote", "<ol"):
        assert tag not in rendered, tag


def test_the_grade_table_has_one_line_per_submission():
    res = _hostile_results()
    job = runner.Job("eve\x1b[2J\nforged 17/17", Path("eve.ipynb"), "01_kmeans")
    lines = runner.table([(job, res), (job, runner.not_graded_entry(job, HOSTILE, 3))])
    assert len(lines.splitlines()) == 4 and "\x1b" not in lines


# -- end to end: a real worker, a filename chosen by the student ------------------------------
def _notebook(path: Path, source: str) -> Path:
    c = nbformat.v4.new_code_cell(source)
    c.metadata["nbgrader"] = {"schema_version": 3, "grade_id": "leak", "locked": False,
                              "solution": True, "grade": False}
    nbformat.write(nbformat.v4.new_notebook(cells=[c]), str(path))
    return path


def test_a_filename_chosen_by_student_code_cannot_carry_text_out(tmp_path):
    release = _notebook(tmp_path / "release.ipynb", "def leak():\n    raise NotImplementedError")
    body = ("SECRET = " + repr(SECRET) + "\n"
            "def leak():\n"
            "    exec(compile('raise ValueError(\"x\")', '<cell ' + SECRET + '>', 'exec'))\n")
    sub = Submission(_notebook(tmp_path / "sub.ipynb", body), release,
                     budget=Budget(call_s=20))
    try:
        with pytest.raises(StudentFailure) as failure:
            sub.call("leak")
    finally:
        sub.close()
    text = plugin.one_line(failure.value)
    assert text == str(failure.value) and len(text) < 700, text
    assert "raised ValueError: x (cell hidden test line 0" in text
    assert "hidden test line 3:" not in text
    assert plaintext.MAX_WHERE == worker.MAX_WHERE
