"""Broken and hostile submissions (tests/corpus.py) are contained: each finishes within its
time bound, earns no point its code did not, gets a one-line message, and leaves the scores
of honest submissions graded in the same run exactly as they are alone. Nothing a case starts
outlives the grading, and the grader never runs code a case sends back.

The corpus runs in each isolation setting this machine can simulate (``COURSE_SANDBOX_DISABLE``,
see course.grading.sandbox): "full" (every layer; `make test`), and in the extended suite
"no-unshare" (no namespaces and no mount lockdown: macOS, Docker, Gradescope), "no-cgroups"
(no writable cgroups) and "neither". Broken
notebooks and tricks on the grader's own checks do not depend on the sandbox and run once, in
"full"; the cases the sandbox contains (``Case.sandbox``) run in every setting, each setting
with its own decoys (a second clone of the course, a backup and an LMS export under the real
home folder, an nbgrader exchange), listening sockets, grader key and folders
(tests/hostile_fixtures.py), and an honest submission graded after all of them (the victim
of tampering and planted results). The summary line at the end of the run says how many
cases were contained of those tried, per setting, and how long each setting took."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import corpus
import hostile_fixtures as hf
import pytest

from course.grading import confine, forkserver, integrity, runner
from course.grading.cgroups import WorkerCgroup
from course.grading.sandbox import _probe_unshare
from course.paths import data_dir

#: Time budget of one submission, per assignment: the references take 15 to 50 s alone on two
#: busy cores; cases that hang have a smaller budget of their own (they spend all of it).
BUDGET_S = {corpus.ASSIGNMENT: 40.0, corpus.GD: 120.0, corpus.AE: 120.0}
#: Isolation settings: the layers switched off (COURSE_SANDBOX_DISABLE) in each.
SETTINGS = {"full": "", "no-unshare": "unshare", "no-cgroups": "cgroups",
            "neither": "unshare,cgroups"}
#: Honest submissions graded alone once (in "full"), to compare with their crowded scores (a
#: reference needs no such run: it must score full marks wherever it is graded).
ALONE = ("baseline_zeros",)
#: The reference of each assignment (graded beside the cases of that assignment).
REFERENCES = {corpus.ASSIGNMENT: "baseline_reference", corpus.GD: "gd_baseline_reference",
              corpus.AE: "ae_baseline_reference"}
#: Graded first, side by side: the daemon that kills graders, and an honest submission.
FIRST = ("daemon_attacks_graders", "baseline_reference")
#: A grader process using more memory than this is killed (the machine is shared).
GRADER_CAP_MB = 6144

pytestmark = pytest.mark.skipif(
    not (data_dir() / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file(),
    reason="MNIST is not staged: run `make data`",
)


def available(setting: str) -> dict[str, bool]:
    """Which isolation a case may need exists in ``setting`` on this machine."""
    off = set(SETTINGS[setting].split(",")) - {""}
    prefix = () if "unshare" in off else _probe_unshare()
    return {
        "": True,
        "cgroups": "cgroups" not in off and WorkerCgroup.available(),
        "pidns": "--pid" in prefix,
        "lockdown": "--mount" in prefix,
        "signals": "--pid" in prefix or confine.landlock_abi() >= 6,
    }


def cases_for(setting: str) -> list[corpus.Case]:
    """Every available case in "full"; the ones the sandbox contains in the other settings."""
    have = available(setting)
    return [c for c in corpus.cases()
            if have[c.needs] and (setting == "full" or c.sandbox)]


def pytest_generate_tests(metafunc):
    """Each test runs per setting (``setting``), test_case_is_contained per case tried in it;
    the corpus of a setting is graded once, when its first test needs it (``runs``). The
    reduced settings belong to the extended suite (`make test` proves "full")."""
    if "setting" not in metafunc.fixturenames:
        return

    def marks(setting: str) -> tuple:
        return () if setting == "full" else (pytest.mark.extended,)
    if "case" in metafunc.fixturenames:
        pairs = [pytest.param(s, c.name, marks=marks(s), id=f"{s}-{c.name}")
                 for s in SETTINGS for c in cases_for(s)]
        metafunc.parametrize(("setting", "case"), pairs)
    else:
        metafunc.parametrize("setting", [pytest.param(s, marks=marks(s), id=s) for s in SETTINGS])


# -- grading --------------------------------------------------------------------------------
def _jobs(folder: Path, notebooks: dict[str, tuple[str, bytes]]) -> list[runner.Job]:
    jobs = []
    for name, (assignment, content) in notebooks.items():
        path = folder / name / assignment / f"{assignment}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        jobs.append(runner.Job(name, path, assignment))
    return jobs


def _grade_one(job: runner.Job, out: Path, budget: float, threads: int,
               pool: forkserver.GraderPool | None) -> dict:
    try:
        return runner.grade_job(job, out, runner.Settings(budget_s=budget, threads=threads),
                                pool=pool)
    except Exception as exc:  # noqa: BLE001 - a verdict, not a crash of the whole run
        return {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"}


def _grade(jobs: list[runner.Job], out: Path, parallel: int, budgets: dict[str, float],
           first: tuple[str, ...] = ()) -> dict[str, dict]:
    """Grade each job with its budget, ``parallel`` at a time: ``first`` first (in that order),
    then the largest budgets. Each gets its share of the cores, as in `course grade --jobs`
    (runner.grade_jobs): with 2 torch threads each on 2 cores, an AE case took 47 to 66 s
    instead of 29 to 34 s, and "full" 749 s instead of 513. Two or more at once: the graders
    fork from servers, as a class run's do; one at a time (the honest baselines graded
    alone): each grader is its own process, so the two ways are compared."""
    rank = {name: i for i, name in enumerate(first)}
    jobs = sorted(jobs, key=lambda j: (rank.get(j.name, len(rank)), -budgets[j.name]))
    threads = runner.thread_share(parallel)
    with ThreadPoolExecutor(max_workers=parallel) as pool, \
            (forkserver.GraderPool() if parallel > 1 else contextlib.nullcontext()) as servers:
        futures = {job.name: pool.submit(_grade_one, job, out, budgets[job.name], threads,
                                         servers)
                   for job in jobs}
        return {name: fut.result() for name, fut in futures.items()}


@pytest.fixture(scope="session")
def alone(tmp_path_factory):
    """Scores of honest baselines graded on their own (once, in "full"), by name."""
    tmp = tmp_path_factory.mktemp("corpus-alone")
    scores: dict[str, float] = {}

    def score(names: list[str]) -> dict[str, float]:
        missing = [n for n in names if n not in scores]
        if missing:
            base = corpus.baselines()
            budgets = {n: BUDGET_S[base[n][0]] for n in missing}
            with pytest.MonkeyPatch.context() as mp:
                mp.delenv("COURSE_SANDBOX_DISABLE", raising=False)
                graded = _grade(_jobs(tmp / "submitted", {n: base[n] for n in missing}),
                                tmp / "grades", 1, budgets)
            for name, res in graded.items():
                assert "error" not in res, (name, res["error"])
                scores[name] = res["score"]
        return {n: scores[n] for n in names}

    return score


class Runs:
    """The graded corpus of each setting, graded on first use and kept for the session."""

    def __init__(self, tmp_path_factory, config, alone) -> None:
        self.tmp_path_factory, self.config, self.alone = tmp_path_factory, config, alone
        self.done: dict[str, dict | BaseException] = {}

    def __call__(self, setting: str) -> dict:
        if setting not in self.done:
            try:
                self.done[setting] = grade_setting(setting, self.tmp_path_factory, self.alone)
            except Exception as exc:  # every test of the setting fails with it, none regrades
                self.done[setting] = exc
            counts = {s: (o["contained"], len(o["verdicts"]), o["wall_s"], _slowest(o))
                      for s, o in self.done.items() if isinstance(o, dict)}
            self.config._corpus_summary = (  # printed at the end of the run (conftest.py)
                "hostile/broken corpus, cases contained of cases tried per isolation setting: "
                + ", ".join(f"{s} {n}/{m} ({w:.0f} s; slowest {slow})"
                            for s, (n, m, w, slow) in counts.items()))
        done = self.done[setting]
        if isinstance(done, BaseException):
            raise RuntimeError(f"grading the corpus in setting {setting!r} failed") from done
        return done


def _slowest(outcome: dict, n: int = 3) -> str:
    """The ``n`` submissions of a graded setting that took longest, with their seconds."""
    times = sorted(((res.get("execution_time", 0.0), name)
                    for name, res in outcome["results"].items() if "error" not in res),
                   reverse=True)
    return ", ".join(f"{name} {t:.0f} s" for t, name in times[:n])


@pytest.fixture(scope="session")
def runs(tmp_path_factory, request, alone) -> Runs:
    return Runs(tmp_path_factory, request.config, alone)


@pytest.fixture
def outcome(runs, setting) -> dict:
    return runs(setting)


def grade_setting(setting: str, tmp_path_factory, alone) -> dict:
    """Grade the corpus of ``setting`` against fresh targets, gather the evidence and the
    verdicts, then remove the targets and end what the cases left running."""
    cases = cases_for(setting)
    base = corpus.baselines()
    honest = sorted({REFERENCES[c.assignment] for c in cases}
                    | {c.at_most for c in cases if c.at_most}
                    | {"baseline_zeros" for c in cases if c.score == "at_most_zeros"})
    alone_scores = alone(list(ALONE))
    token = hf.new_token()
    root = tmp_path_factory.mktemp(f"{token}-{setting}")
    mp = pytest.MonkeyPatch()
    mp.setenv("COURSE_SANDBOX_DISABLE", SETTINGS[setting])
    # the graders keep references (course.grading.kept) in a folder of this run, which the
    # cases may aim at for real (its path holds the token), not in the machine's own cache
    mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
    Path(corpus.PWNED).unlink(missing_ok=True)
    survivors: dict[int, list[str]] = {}
    decoys = listeners = None
    try:
        decoys = hf.make_decoys(root, token)
        listeners = hf.Listeners(root, decoys.home, token)
        corpus.aim(corpus.Targets(
            token=token, root=str(root), tcp_port=listeners.tcp_port,
            udp_port=listeners.udp_port, unix_sockets=tuple(listeners.unix_paths),
            abstract_socket=listeners.abstract_name))
        installed = hf.installation_digest()
        notebooks = {**{c.name: (c.assignment, c.build()) for c in cases},
                     **{n: base[n] for n in honest}, corpus.VICTIM: base[corpus.VICTIM]}
        jobs = _jobs(root / "submitted", notebooks)  # all on disk before grading starts
        budgets = {**{n: BUDGET_S[a] for n, (a, _) in notebooks.items()},
                   **{c.name: c.budget_s or BUDGET_S[c.assignment] for c in cases}}
        monitor = hf.GraderMonitor(root / "submitted",
                                   {c.name: c.grader_mb + 1024 for c in cases if c.grader_mb},
                                   GRADER_CAP_MB)
        late = {c.name for c in cases if c.late} | {corpus.VICTIM}
        out = root / "grades"
        t0 = time.monotonic()
        try:
            results = _grade([j for j in jobs if j.name not in late], out, 2, budgets, FIRST)
            results.update(_grade([j for j in jobs if j.name in late], out, 2, budgets,
                                  (corpus.VICTIM,)))
        finally:
            monitor.stop()
        wall = time.monotonic() - t0
        survivors = hf.processes_with(corpus.DAEMON_MARK)
        evidence = {
            "out": out,
            "alone": alone_scores,
            "hits": list(listeners.hits),
            "planted": hf.files_holding(root, corpus.PLANTED, decoys.before)
            + hf.files_holding(decoys.home, corpus.PLANTED, decoys.before),
            "tampered": (hf.digest_changes(installed, hf.installation_digest())
                         + decoys.changes()),
            "survivors": survivors,
            "peak_mb": dict(monitor.peak_mb),
            "killed_mb": dict(monitor.killed),
        }
        verdicts = {c.name: _verdict(c, results[c.name], results, budgets[c.name], evidence)
                    for c in cases}
        return {"setting": setting, "results": results, "verdicts": verdicts, "out": out,
                "evidence": evidence, "honest": honest, "wall_s": wall,
                "contained": sum(v is None for v in verdicts.values()),
                "pwned": Path(corpus.PWNED).exists()}
    finally:
        hf.kill_processes(list(survivors) + list(hf.processes_with(corpus.DAEMON_MARK)))
        if listeners is not None:
            listeners.close()
        if decoys is not None:
            decoys.remove()
        corpus.aim(corpus.Targets())
        mp.undo()


# -- verdicts -------------------------------------------------------------------------------
def _failed(res: dict) -> set[str]:
    return {t["extra_data"]["test"] for t in res["tests"] if t["status"] != "passed"}


def _artefacts(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text(errors="replace") for p in sorted(folder.glob("*"))
            if p.is_file()}


#: A forged score heading or table row at the start of a line (after list or quote marks).
FORGED_HEADING = re.compile(r"^\W*\*\*Score")
FORGED_ROW = re.compile(r"^\s*\|\s*forged\s*\|")


def _markdown_problems(folder: Path, res: dict) -> list[str]:
    lines = (folder / runner.FEEDBACK).read_text().splitlines()
    problems = []
    headings = [ln for ln in lines if FORGED_HEADING.match(ln)]
    if len(headings) != 1:
        problems.append(f"feedback.md has {len(headings)} score lines: {headings[:3]}")
    problems += [f"feedback.md has the table row {ln!r}" for ln in lines if FORGED_ROW.match(ln)]
    problems += [f"results.json's output has the line {ln!r}" for ln in res["output"].splitlines()
                 if FORGED_HEADING.match(ln) or FORGED_ROW.match(ln)]
    return problems


def _verdict(case: corpus.Case, res: dict, everything: dict, budget: float,
             evidence: dict) -> str | None:
    """None when the case is contained as expected, else what went wrong."""
    if "error" in res:
        return f"grading it raised {res['error']}"
    if case.name in evidence["killed_mb"]:
        return (f"its grader process was killed at {evidence['killed_mb'][case.name]:.0f} MiB "
                "of memory")
    if case.grader_mb and evidence["peak_mb"].get(case.name, 0) > case.grader_mb:
        return (f"its grader process used {evidence['peak_mb'][case.name]:.0f} MiB "
                f"(allowed {case.grader_mb:.0f})")
    if res["execution_time"] > budget + 90:
        return f"took {res['execution_time']:.0f} s"
    if case.score == "zero" and res["score"] != 0:
        return f"scored {res['score']} instead of 0"
    if case.score == "full" and res["score"] != res["max_score"]:
        return f"scored {res['score']} of {res['max_score']}: {sorted(_failed(res))}"
    limit = "baseline_zeros" if case.score == "at_most_zeros" else case.at_most
    if limit and "error" in everything[limit]:
        return f"its honest baseline {limit} could not be graded: {everything[limit]['error']}"
    if limit and res["score"] > everything[limit]["score"]:
        return (f"scored {res['score']}, more than its honest code earns "
                f"({everything[limit]['score']}): passed "
                f"{sorted(_failed(everything[limit]) - _failed(res))}")
    if case.fail is not None:
        failed = _failed(res)
        if not case.fail <= failed <= case.fail | case.may_fail:
            return f"failed {sorted(failed)} instead of {sorted(case.fail)}"
    if any("\n" in t["output"] for t in res["tests"]):
        return "a message spans several lines"
    if case.message:
        texts = [t["output"] for t in res["tests"] if t["status"] != "passed"] + [res["output"]]
        if not any(case.message in text for text in texts):
            return f"no message mentions {case.message!r}: {texts[:2]}"
    folder = evidence["out"] / case.name
    for name, text in _artefacts(folder).items():
        for marker in case.forbidden:
            if marker in text:
                at = text.index(marker)
                return f"its {name} holds {marker!r}: ...{text[max(0, at - 60):at + 140]!r}"
    for check in case.checks:
        problem = _check(check, case, everything, evidence, folder)
        if problem:
            return problem
    return None


def _check(check: str, case: corpus.Case, everything: dict, evidence: dict,
           folder: Path) -> str:
    if check == "listeners" and evidence["hits"]:
        return f"reached the listening sockets: {evidence['hits'][:4]}"
    if check == "planted" and evidence["planted"]:
        return f"planted {len(evidence['planted'])} files, e.g. {evidence['planted'][:3]}"
    if check == "tampered" and evidence["tampered"]:
        return f"changed {len(evidence['tampered'])} files: {evidence['tampered'][:4]}"
    if check == "victim":
        victim = everything[corpus.VICTIM]
        if "error" in victim:
            return f"the honest submission graded after it could not be graded: {victim['error']}"
        if victim["score"] != evidence["alone"]["baseline_zeros"] or victim["extra_data"].get(
                "reused"):
            return (f"the honest submission graded after it scored {victim['score']} "
                    f"(alone: {evidence['alone']['baseline_zeros']}, reused: "
                    f"{victim['extra_data'].get('reused', False)})")
    if check == "concurrent":
        for name in ("baseline_reference", "baseline_zeros"):
            res = everything.get(name)
            if res is None:
                continue
            if "error" in res:
                return f"the honest {name} graded beside it could not be graded: {res['error']}"
            want = evidence["alone"].get(name, res["max_score"])
            if res["score"] != want:
                return f"the honest {name} graded beside it scored {res['score']} (alone: {want})"
    if check == "markdown":
        problems = _markdown_problems(folder, everything[case.name])
        if problems:
            return "; ".join(problems[:3])
    if check == "survivor":
        left = [pid for pid, argv in evidence["survivors"].items() if case.daemon_mark in argv]
        if left:
            return f"left processes running after grading: {left}"
    return ""


# -- the tests ------------------------------------------------------------------------------
def test_case_is_contained(outcome, case):
    assert outcome["verdicts"][case] is None, outcome["verdicts"][case]


def test_honest_submissions_score_as_when_graded_alone(outcome):
    """The honest submissions graded among the cases (and the victim, graded after them)
    score what they score alone; the references full marks."""
    res, alone = outcome["results"], outcome["evidence"]["alone"]
    for name in [*outcome["honest"], corpus.VICTIM]:
        assert "error" not in res[name], (name, res[name]["error"])
        if name in REFERENCES.values():
            assert res[name]["score"] == res[name]["max_score"], (name, sorted(_failed(res[name])))
    for name, score in alone.items():
        if name in res:
            assert res[name]["score"] == score, (name, res[name]["score"], score)
    assert res[corpus.VICTIM]["score"] == alone["baseline_zeros"], res[corpus.VICTIM]["score"]


def test_nothing_on_disk_was_forged(outcome):
    for name, res in outcome["results"].items():
        if "error" in res:
            continue
        folder = outcome["out"] / name
        on_disk = json.loads((folder / runner.RESULTS).read_text())
        assert on_disk == res, name
        assert integrity.is_signed(on_disk), name
        assert (folder / runner.FEEDBACK).read_text() == runner.feedback_text(res), name


def test_nothing_a_case_started_outlives_grading(outcome):
    left = outcome["evidence"]["survivors"]
    assert not left, f"still running: {left}"


def test_the_grader_never_ran_code_a_case_sent_back(outcome):
    assert not outcome["pwned"]


def test_installation_and_decoys_are_unchanged(outcome):
    """The course package, the hidden tests, site-packages and every decoy copy are byte for
    byte what they were before the run, and no case planted a file anywhere in it."""
    assert not outcome["evidence"]["tampered"], outcome["evidence"]["tampered"][:10]
    assert not outcome["evidence"]["planted"], outcome["evidence"]["planted"][:10]


def test_grader_refuses_weak_isolation(tmp_path, monkeypatch):
    """Without an allow-list of paths and any signal confinement (no unshare, no Landlock)
    the sandbox is "weak": the grader runs no student code, writes no result, and says why."""
    monkeypatch.setenv("COURSE_SANDBOX_DISABLE", "unshare,landlock")
    nb = tmp_path / "submitted" / "weak" / corpus.ASSIGNMENT / f"{corpus.ASSIGNMENT}.ipynb"
    nb.parent.mkdir(parents=True)
    nb.write_bytes(corpus._dump(corpus.release()))
    with pytest.raises(runner.NotGraded, match="refusing to run student code"):
        runner.grade_job(runner.Job("weak", nb, corpus.ASSIGNMENT), tmp_path / "grades",
                         runner.Settings(budget_s=30))
    proc = subprocess.run([sys.executable, "-m", "course", "grade", str(nb), "--out",
                           str(tmp_path / "cli")], capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and "'weak'" in lines[0], proc.stderr
    assert not list(tmp_path.rglob(runner.RESULTS))


def test_weak_isolation_trusts_no_kept_reference(tmp_path, monkeypatch):
    """References kept by a sandboxed grading; then, with every layer off (allowed on
    purpose), the kept-reference forger of the corpus reads the grader key and overwrites
    them with signed forgeries; the run allows weak isolation, so no grader of it reads them:
    the same wrong kmeans graded next still fails test_kmeans_matches_sklearn."""
    token = hf.new_token()
    root = tmp_path / token
    monkeypatch.setenv("XDG_CACHE_HOME", str(root / "cache"))
    corpus.aim(corpus.Targets(token=token, root=str(root)))
    try:
        cases = {c.name: c for c in corpus.cases()}
        graded = {}
        for name in ("baseline_reference", "kept_reference_forged",
                     "kept_reference_forged_regraded"):
            nb = root / "submitted" / name / f"{corpus.ASSIGNMENT}.ipynb"
            nb.parent.mkdir(parents=True)
            honest = name.startswith("baseline")
            nb.write_bytes(corpus.baselines()[name][1] if honest else cases[name].build())
            monkeypatch.setenv("COURSE_SANDBOX_DISABLE",
                               "" if honest else "unshare,cgroups,landlock,seccomp,uid")
            graded[name] = runner.grade_job(
                runner.Job(name, nb, corpus.ASSIGNMENT), root / "grades",
                runner.Settings(force=True, allow_weak_isolation=not honest))
    finally:
        corpus.aim(corpus.Targets())
    output = (root / "grades" / "kept_reference_forged" / "worker-output.txt").read_text()
    assert "ESCAPED: forged the kept reference" in output  # the attack did happen
    for name in ("kept_reference_forged", "kept_reference_forged_regraded"):
        assert _failed(graded[name]) == {"test_kmeans_matches_sklearn"}, name
