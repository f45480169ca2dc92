"""course.device, course.seed and the scale profiles."""

from __future__ import annotations

import numbers
import random

import numpy as np
import pytest
import torch

import course
from course.profiles import PROFILES, profile_name


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    monkeypatch.delenv("COURSE_SCALE", raising=False)


# --------------------------------------------------------------------------- device


ACCELERATOR = torch.cuda.is_available() or torch.backends.mps.is_available()


@pytest.mark.skipif(ACCELERATOR, reason="an accelerator is present on this machine")
def test_device_default_is_cpu_without_accelerator() -> None:
    assert course.device() == torch.device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA on this machine")
def test_device_default_is_cuda_when_present() -> None:
    assert course.device().type == "cuda"


def test_course_device_env_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert course.device() == torch.device("cpu")


def test_prefer_argument_beats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURSE_DEVICE", "cuda:7")
    assert course.device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present on this machine")
def test_course_device_cuda_without_cuda_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURSE_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        course.device()


# --------------------------------------------------------------------------- seed


def draws(generator: torch.Generator) -> tuple[list[float], ...]:
    return (torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random()],
            torch.rand(3, generator=generator).tolist())


def test_seed_makes_every_source_reproducible() -> None:
    first = draws(course.seed(0))
    second = draws(course.seed(0))
    assert first == second


def test_different_seeds_differ() -> None:
    first = draws(course.seed(0))
    other = draws(course.seed(1))
    assert all(a != b for a, b in zip(first, other, strict=True))


def test_seed_returns_a_seeded_generator() -> None:
    generator = course.seed(5)
    assert isinstance(generator, torch.Generator)
    assert generator.initial_seed() == 5


@pytest.mark.parametrize("bad", [-1, 1.5, "0", True, None])
def test_bad_seed_raises(bad: object) -> None:
    with pytest.raises(ValueError, match="non-negative int"):
        course.seed(bad)


# --------------------------------------------------------------------------- scale

ASSIGNMENTS = sorted({a for knobs in PROFILES.values() for a in knobs})


def test_default_profile_is_full() -> None:
    assert profile_name() == "full"
    assert course.scale(ASSIGNMENTS[0]).profile == "full"


def test_course_scale_ci_is_picked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURSE_SCALE", "ci")
    knobs = course.scale(ASSIGNMENTS[0])
    assert knobs.profile == "ci"
    assert {k: knobs[k] for k in knobs if k != "profile"} == PROFILES["ci"][ASSIGNMENTS[0]]


def test_unknown_profile_names_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURSE_SCALE", "huge")
    with pytest.raises(ValueError, match=r"'huge'.*\['ci', 'full'\]"):
        course.scale(ASSIGNMENTS[0])


def test_unknown_assignment_raises() -> None:
    with pytest.raises(KeyError, match="no_such_assignment"):
        course.scale("no_such_assignment")


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_profile_has_the_same_knobs(assignment: str) -> None:
    keys = {name: set(profile.get(assignment, {"<absent>": None}))
            for name, profile in PROFILES.items()}
    assert len({frozenset(k) for k in keys.values()}) == 1, keys


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_ci_never_exceeds_full(assignment: str) -> None:
    full, ci = (PROFILES[p][assignment] for p in ("full", "ci"))
    bigger = {k: (ci[k], full[k]) for k in full
              if isinstance(full[k], numbers.Real) and not isinstance(full[k], bool)
              and ci[k] > full[k]}
    assert not bigger, f"{assignment}: ci knobs larger than full (ci, full): {bigger}"
