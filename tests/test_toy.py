"""course.toy (the toy npz files shipped in the package) and course.data.load_toy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures

from course import toy
from course.data import TOY_NAMES, DataError, load_toy

COMMITTED = Path(__file__).resolve().parents[1] / "course" / "datasets"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return toy.generate(tmp_path_factory.mktemp("toy"))


def test_generate_writes_the_three_files(generated: list[Path]) -> None:
    assert [p.name for p in generated] == [f"{name}.npz" for name in TOY_NAMES]


@pytest.mark.parametrize("index", range(len(TOY_NAMES)), ids=TOY_NAMES)
def test_generate_reproduces_committed_bytes(generated: list[Path], index: int) -> None:
    path = generated[index]
    assert path.read_bytes() == (COMMITTED / path.name).read_bytes(), (
        f"course/datasets/{path.name} differs from what course.toy generates; run "
        "`python -m course.toy`")


def test_main_writes_to_given_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert toy.main([str(tmp_path)]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / f"{n}.npz") for n in TOY_NAMES]


def test_main_rejects_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert toy.main(["--help"]) == 2
    assert "usage" in capsys.readouterr().err


@pytest.mark.parametrize("name", [*TOY_NAMES, "toy_data.npz"])
def test_load_toy_shapes_dtypes_labels(name: str) -> None:
    x_train, x_test, y_train, y_test = load_toy(name)
    assert x_train.shape == (400, 2) and x_test.shape == (200, 2)
    assert y_train.shape == (400, 1) and y_test.shape == (200, 1)
    assert all(t.dtype == torch.float32 for t in (x_train, x_test, y_train, y_test))
    labels = torch.cat([y_train, y_test])
    assert set(labels.unique().tolist()) == {0.0, 1.0}


def test_load_toy_prefers_committed_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    np.savez(tmp_path / "toy_data.npz", *good_arrays())  # a stale copy in the data dir
    assert load_toy("toy_data")[0].shape == (400, 2)


def test_load_toy_falls_back_to_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("course.data.TOY_DIR", tmp_path / "no-package-copy")
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    np.savez(tmp_path / "toy_data.npz", *good_arrays())
    assert load_toy("toy_data")[0].shape == (4, 2)


def test_load_toy_unknown_name() -> None:
    with pytest.raises(ValueError, match="choose one of toy_data, "):
        load_toy("toy_spirals")


def test_load_toy_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="toy_data.npz not found in .*course data toy"):
        load_toy("toy_data", root=tmp_path)


def good_arrays() -> list[np.ndarray]:
    return [np.zeros((4, 2)), np.zeros((3, 2)), np.ones((4, 1)), np.zeros((3, 1))]


def test_load_toy_wrong_keys(tmp_path: Path) -> None:
    np.savez(tmp_path / "toy_data.npz", x=np.zeros((4, 2)), y=np.zeros((4, 1)))
    with pytest.raises(DataError, match="toy_data.npz: missing arrays arr_0, arr_1, arr_2, arr_3"):
        load_toy("toy_data", root=tmp_path)


BROKEN = {
    "x_three_columns": (0, np.zeros((4, 3)), r"arr_0 has shape \(4, 3\), expected \(4, 2\)"),
    "y_flat": (3, np.zeros(3), r"arr_3 has shape \(3,\), expected \(3, 1\)"),
    "y_length": (2, np.zeros((5, 1)), r"arr_2 has shape \(5, 1\), expected \(4, 1\)"),
    "label_two": (2, np.full((4, 1), 2.0), "labels are not all 0 or 1"),
}


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
def test_load_toy_rejects_bad_arrays(tmp_path: Path, case: str) -> None:
    index, array, reason = BROKEN[case]
    arrays = good_arrays()
    arrays[index] = array
    np.savez(tmp_path / "toy_data.npz", *arrays)
    with pytest.raises(DataError, match=f"toy_data.npz: {reason}"):
        load_toy("toy_data", root=tmp_path)


def test_load_toy_accepts_well_formed_file(tmp_path: Path) -> None:
    np.savez(tmp_path / "toy_data.npz", *good_arrays())
    assert load_toy("toy_data", root=tmp_path)[2].shape == (4, 1)


def test_load_toy_rejects_non_npz(tmp_path: Path) -> None:
    (tmp_path / "toy_data.npz").write_text("hello")
    with pytest.raises(DataError, match="not a readable npz"):
        load_toy("toy_data", root=tmp_path)


def accuracy(name: str, degree: int) -> float:
    """Test accuracy of logistic regression on polynomial features of the given degree."""
    x_train, x_test, y_train, y_test = (t.numpy() for t in load_toy(name))
    model = make_pipeline(PolynomialFeatures(degree), LogisticRegression())
    return model.fit(x_train, y_train.ravel()).score(x_test, y_test.ravel())


def test_blobs_are_linearly_separable() -> None:
    assert accuracy("toy_data", degree=1) >= 0.95


def test_moons_linear_is_good_but_not_perfect() -> None:
    assert 0.80 <= accuracy("toy_data_two_moon", degree=1) < 0.95


def test_circles_need_a_quadratic_feature_map() -> None:
    assert accuracy("toy_data_two_circles", degree=1) < 0.7
    assert accuracy("toy_data_two_circles", degree=2) >= 0.95
