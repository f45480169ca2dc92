"""Every clause of every student-facing docstring is checked by a hidden test (issue 13).

``tests/contracts/<id>.toml`` quotes each clause of the docstrings of the functions students
write (``text``), names the hidden tests that check it (``tests``) and the mistaken variants
that break it (``variants``, from ``tests/variants/<id>/``), or says why it is not checked
(``unchecked``). This file fails when a docstring gains a clause nobody mapped, a test or
variant named there does not exist, or a variant is expected to fail tests outside the
clauses it is listed under (one fault, one charge). Whether each variant really fails
exactly those tests is tests/test_grading.py's job.
"""

from __future__ import annotations

import ast
import json
import re
import tomllib

import pytest

from course.grading.notebook import nbgrader_meta, read_notebook, source_of
from course.paths import assignment_ids, repo_root
from course.submissions import release_path

ROOT = repo_root()
#: Assignments whose contract table is still to write (issue 13 is done when this is empty).
PENDING: set[str] = set()
HEADERS = re.compile(r"\b(Args|Arguments|Returns|Rules|Raises|Methods|Example|Examples|Note):")


def norm(text: str) -> str:
    return " ".join(text.split())


def docstrings(assignment: str) -> dict[str, str]:
    """Docstrings of the functions and classes in the release's solution cells."""
    out = {}
    for cell in read_notebook(release_path(assignment))["cells"]:
        if cell.get("cell_type") != "code" or not nbgrader_meta(cell).get("solution"):
            continue
        try:
            tree = ast.parse(source_of(cell))
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and ast.get_docstring(node):
                out[node.name] = norm(ast.get_docstring(node))
            if isinstance(node, ast.ClassDef):
                for sub in node.body:
                    if isinstance(sub, ast.FunctionDef) and ast.get_docstring(sub):
                        out[f"{node.name}.{sub.name}"] = norm(ast.get_docstring(sub))
    return out


def hidden_test_names(assignment: str) -> set[str]:
    tree = ast.parse((ROOT / "autograder" / f"test_{assignment}.py").read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef)
            and n.name.startswith("test_")}


def contract(assignment: str) -> list[dict]:
    path = ROOT / "tests" / "contracts" / f"{assignment}.toml"
    return tomllib.loads(path.read_text())["clause"]


WRITTEN = sorted(a for a in assignment_ids() if a not in PENDING)


def test_every_assignment_has_a_contract_table_or_is_pending():
    for a in assignment_ids():
        exists = (ROOT / "tests" / "contracts" / f"{a}.toml").is_file()
        assert exists != (a in PENDING), (a, "table written: remove it from PENDING" if exists
                                          else "no contract table")


@pytest.mark.parametrize("assignment", WRITTEN)
def test_the_quoted_clauses_cover_every_docstring(assignment):
    docs = docstrings(assignment)
    clauses = contract(assignment)
    unknown = {c["function"] for c in clauses} - set(docs)
    assert not unknown, f"clauses for functions the release does not define: {unknown}"
    for name, doc in docs.items():
        covered = [False] * len(doc)
        for c in (c for c in clauses if c["function"] == name):
            text = norm(c["text"])
            at = doc.find(text)
            while at >= 0 and all(covered[at:at + len(text)]):  # a phrase said twice: the
                at = doc.find(text, at + 1)                     # next occurrence not quoted yet
            assert at >= 0, f"{name}: clause not in the docstring (edited?): {text!r}"
            covered[at:at + len(text)] = [True] * len(text)
        header_free = list(covered)
        for m in HEADERS.finditer(doc):
            header_free[m.start():m.end()] = [True] * (m.end() - m.start())
        left = "".join(ch for ch, ok in zip(doc, header_free, strict=True) if not ok)
        assert not re.sub(r"[\s.,;:*()-]", "", left), (
            f"{name}: docstring text no clause quotes: {left.strip()[:200]!r}")


@pytest.mark.parametrize("assignment", WRITTEN)
def test_every_clause_is_checked_or_says_why(assignment):
    names = hidden_test_names(assignment)
    expected = json.loads((ROOT / "tests" / "variants" / assignment / "expected.json").read_text())
    for c in contract(assignment):
        where = f"{c['function']}: {c['text'][:60]!r}"
        if "unchecked" in c:
            assert c["unchecked"].strip() and not c.get("tests"), where
            continue
        assert c.get("tests"), f"{where}: no hidden test and no reason why"
        assert set(c["tests"]) <= names, f"{where}: unknown tests {set(c['tests']) - names}"
        assert c.get("variants") or c.get("unchecked_variant", "").strip(), (
            f"{where}: no mistaken variant breaks it (or say why in unchecked_variant)")
        for v in c.get("variants", []):
            assert v in expected, f"{where}: variant {v!r} is not in expected.json"
            assert set(expected[v]["fail"]) & set(c["tests"]), (
                f"{where}: variant {v!r} is not expected to fail any of this clause's tests")


@pytest.mark.parametrize("assignment", WRITTEN)
def test_each_variant_fails_only_the_tests_of_its_clauses(assignment):
    """A variant listed under clauses may fail their tests and nothing else (may_fail: tests
    of functions that call the broken one, by the notebook's design, as the clause notes)."""
    expected = json.loads((ROOT / "tests" / "variants" / assignment / "expected.json").read_text())
    allowed: dict[str, set[str]] = {}
    for c in contract(assignment):
        for v in c.get("variants", []):
            allowed.setdefault(v, set()).update(c.get("tests", []))
    for v, rule in expected.items():
        if v in allowed:
            extra = set(rule["fail"]) - allowed[v]
            assert not extra, f"{v} is expected to fail {extra}, outside the clauses it breaks"


@pytest.mark.parametrize("assignment", WRITTEN)
def test_every_hidden_test_checks_some_clause(assignment):
    used = {t for c in contract(assignment) for t in c.get("tests", [])}
    assert hidden_test_names(assignment) <= used, hidden_test_names(assignment) - used
