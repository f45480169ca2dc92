"""course.data: strict IDX parsing, staging MNIST (local mirror, download, offline), loading."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from course import data
from course.data import DataError

# The names torchvision's MNIST leaves in <root>/MNIST/raw/ (written out here on purpose, not
# taken from the registry, so a drift from torchvision's layout fails a test).
TORCHVISION_RAW = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                   "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
CLOSED_PORT = "http://127.0.0.1:9/"


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array (1-D labels or 3-D images) as an IDX file."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def write(path: Path, payload: bytes) -> Path:
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)
    return path


def raw_dir(root: Path) -> Path:
    return root / "MNIST" / "raw"


def use_mirrors(monkeypatch: pytest.MonkeyPatch, *mirrors: str) -> None:
    """Point the MNIST registry entry at other mirrors for one test."""
    spec = dataclasses.replace(data.REGISTRY["mnist"], mirrors=mirrors)
    monkeypatch.setitem(data.REGISTRY, "mnist", spec)


IMAGES = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
LABELS = np.array([7, 2, 1, 0, 4], dtype=np.uint8)


# --------------------------------------------------------------------------- read_idx


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("array", [IMAGES, LABELS], ids=["images", "labels"])
def test_read_idx_round_trips_raw_and_gz(tmp_path: Path, array: np.ndarray, suffix: str) -> None:
    path = write(tmp_path / f"sample-idx{suffix}", idx_bytes(array))
    tensor = data.read_idx(path)
    assert tensor.dtype == torch.uint8
    assert np.array_equal(tensor.numpy(), array)


BAD_IDX = {
    "truncated": (idx_bytes(IMAGES)[:-1], "truncated"),
    "extra_bytes": (idx_bytes(IMAGES) + b"\x00\x00", "2 extra bytes"),
    "wrong_magic": (b"\x12\x34" + idx_bytes(IMAGES)[2:], "magic"),
    "four_dims": (idx_bytes(IMAGES)[:3] + b"\x04" + idx_bytes(IMAGES)[4:], "magic"),
    "float_dtype": (idx_bytes(LABELS)[:2] + b"\x0d" + idx_bytes(LABELS)[3:], "element type 0x0d"),
    "short_header": (idx_bytes(IMAGES)[:9], "truncated IDX header"),
    "empty": (b"", "too short"),
}


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("case", BAD_IDX, ids=list(BAD_IDX))
def test_read_idx_rejects_malformed_file_naming_it(tmp_path: Path, case: str, suffix: str) -> None:
    payload, reason = BAD_IDX[case]
    path = write(tmp_path / f"{case}-idx{suffix}", payload)
    with pytest.raises(DataError, match=reason) as err:
        data.read_idx(path)
    assert path.name in str(err.value)


def test_read_idx_rejects_broken_gzip(tmp_path: Path) -> None:
    path = tmp_path / "cut-idx.gz"
    path.write_bytes(gzip.compress(idx_bytes(IMAGES))[:20])
    with pytest.raises(DataError, match="cut-idx.gz: not a valid gzip"):
        data.read_idx(path)


def test_read_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nothing-here: no such file"):
        data.read_idx(tmp_path / "nothing-here")


def test_read_idx_reads_official_gz(mnist_mirror: Path) -> None:
    labels = data.read_idx(mnist_mirror / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10_000,)
    assert labels.bincount().tolist() == TEST_COUNTS


# --------------------------------------------------------------------------- fetch --from


def test_fetch_from_mirror_makes_torchvision_layout(mnist_root: Path, mnist_mirror: Path) -> None:
    expected = {*TORCHVISION_RAW, *(f"{name}.gz" for name in TORCHVISION_RAW)}
    assert {p.name for p in raw_dir(mnist_root).iterdir()} == expected  # no leftover temp files
    for name in TORCHVISION_RAW:
        gz = raw_dir(mnist_root) / f"{name}.gz"
        assert gz.read_bytes() == (mnist_mirror / gz.name).read_bytes()


def test_verify_passes_on_staged_mnist(mnist_root: Path) -> None:
    lines = data.verify("mnist", root=mnist_root)
    assert len(lines) == 4
    assert all(line.startswith("ok") for line in lines)


def test_second_fetch_is_a_no_op(mnist_root: Path, mnist_mirror: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in raw_dir(mnist_root).iterdir()}
    paths = data.fetch("mnist", dest=mnist_root, from_dir=mnist_mirror, progress=False)
    assert [p.name for p in paths] == list(TORCHVISION_RAW)
    assert {p: p.stat().st_mtime_ns for p in raw_dir(mnist_root).iterdir()} == before


def mirror_without(mnist_mirror: Path, folder: Path, missing: str) -> Path:
    """A mirror folder of links to the real .gz files, lacking ``missing``."""
    folder.mkdir()
    for gz in mnist_mirror.glob("*.gz"):
        if gz.name != missing:
            (folder / gz.name).symlink_to(gz)
    return folder


def test_fetch_from_folder_lacking_a_file(tmp_path: Path, mnist_mirror: Path) -> None:
    mirror = mirror_without(mnist_mirror, tmp_path / "mirror", "train-images-idx3-ubyte.gz")
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz is missing"):
        data.fetch("mnist", dest=tmp_path / "data", from_dir=mirror, progress=False)


def test_fetch_from_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no-mirror: no such folder"):
        data.fetch("mnist", dest=tmp_path, from_dir=tmp_path / "no-mirror", progress=False)


def test_fetch_rejects_corrupt_mirror_file_and_leaves_nothing(tmp_path: Path,
                                                              mnist_mirror: Path) -> None:
    name = "train-images-idx3-ubyte.gz"
    mirror = mirror_without(mnist_mirror, tmp_path / "mirror", name)
    (mirror / name).write_bytes((mnist_mirror / name).read_bytes()[:100_000])
    with pytest.raises(DataError, match=f"{name}: sha256 mismatch"):
        data.fetch("mnist", dest=tmp_path / "data", from_dir=mirror, progress=False)
    assert list(raw_dir(tmp_path / "data").iterdir()) == []


def test_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown dataset 'cifar'; known: mnist"):
        data.fetch("cifar", dest=tmp_path)


# --------------------------------------------------------------------------- download


def test_offline_fetch_fails_fast_suggesting_from(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    use_mirrors(monkeypatch, CLOSED_PORT)
    start = time.monotonic()
    with pytest.raises(DataError, match="network looks unreachable.*--from DIR") as err:
        data.fetch("mnist", dest=tmp_path, progress=False)
    assert time.monotonic() - start < 10
    assert "\n" not in str(err.value)


@pytest.fixture
def http_mirror() -> Iterator[Callable[[Path], str]]:
    """Serve folders over HTTP on localhost; yields a function folder -> base URL."""
    servers = []

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    def serve(folder: Path) -> str:
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def test_download_falls_back_to_next_mirror(tmp_path: Path, mnist_mirror: Path,
                                            http_mirror: Callable[[Path], str],
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    use_mirrors(monkeypatch, CLOSED_PORT, http_mirror(mnist_mirror))
    paths = data.fetch("mnist", dest=tmp_path, progress=True)
    assert "t10k-images-idx3-ubyte.gz" in capsys.readouterr().err  # the progress bar
    assert [p.name for p in paths] == list(TORCHVISION_RAW)
    assert len(data.verify("mnist", root=tmp_path)) == 4


def test_loading_a_split_downloads_only_its_own_files(tmp_path: Path, mnist_mirror: Path,
                                                       http_mirror: Callable[[Path], str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The test split (the 01 notebook) must not pull the 55 MB of training images too."""
    use_mirrors(monkeypatch, http_mirror(mnist_mirror))
    X, y = data.load_mnist("test", n=5, root=tmp_path)
    assert X.shape == (5, 1, 28, 28) and y.shape == (5,)
    staged = sorted(p.name for p in raw_dir(tmp_path).iterdir())
    assert staged == ["t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz",
                      "t10k-labels-idx1-ubyte", "t10k-labels-idx1-ubyte.gz"]
    data.load_mnist("train", n=5, root=tmp_path)
    assert len(list(raw_dir(tmp_path).iterdir())) == 8
    with pytest.raises(ValueError, match="no file 'val_images'"):
        data.fetch("mnist", dest=tmp_path, roles=("val_images",))


def test_download_rejects_a_mirror_serving_corrupt_files(tmp_path: Path, mnist_mirror: Path,
                                                         http_mirror: Callable[[Path], str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    for gz in mnist_mirror.glob("*.gz"):
        (bad / gz.name).write_bytes(b"not the file")
    use_mirrors(monkeypatch, http_mirror(bad))
    with pytest.raises(DataError, match="sha256 mismatch.*no mirror served a valid copy"):
        data.fetch("mnist", dest=tmp_path / "data", progress=False)
    assert list(raw_dir(tmp_path / "data").iterdir()) == []


def test_download_reports_http_errors(tmp_path: Path, http_mirror: Callable[[Path], str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    use_mirrors(monkeypatch, http_mirror(tmp_path))  # an empty folder: every file is a 404
    with pytest.raises(DataError, match="HTTP 404.*no mirror served a valid copy"):
        data.fetch("mnist", dest=tmp_path / "data", progress=False)


def test_fetch_repairs_corrupt_file_from_its_gz_without_network(
        mnist_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_mirrors(monkeypatch, CLOSED_PORT)
    damaged = raw_dir(mnist_copy) / "t10k-labels-idx1-ubyte"
    damaged.write_bytes(damaged.read_bytes()[:-10])
    data.fetch("mnist", dest=mnist_copy, progress=False)
    assert len(data.verify("mnist", root=mnist_copy)) == 4


# --------------------------------------------------------------------------- verify / checksums


def flip_last_byte(path: Path) -> None:
    content = bytearray(path.read_bytes())
    content[-1] ^= 0xFF
    path.write_bytes(bytes(content))


def test_verify_names_only_the_corrupt_file(mnist_copy: Path) -> None:
    flip_last_byte(raw_dir(mnist_copy) / "t10k-images-idx3-ubyte")
    with pytest.raises(DataError, match="course data fetch mnist") as err:
        data.verify("mnist", root=mnist_copy)
    message = str(err.value)
    assert "t10k-images-idx3-ubyte: sha256 mismatch" in message
    assert "train-images" not in message


def test_verify_empty_dir_says_not_found(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="mnist not found in .*course data fetch mnist"):
        data.verify("mnist", root=tmp_path)


def test_load_detects_same_size_corruption_by_checksum(mnist_copy: Path) -> None:
    flip_last_byte(raw_dir(mnist_copy) / "t10k-images-idx3-ubyte")  # header still parses
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: sha256 mismatch.*`course data fetch"):
        data.load_mnist("test", root=mnist_copy, download=False)


def test_load_names_truncated_file_and_fix(mnist_copy: Path) -> None:
    path = raw_dir(mnist_copy) / "t10k-images-idx3-ubyte"
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size - 784)
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: truncated.*`course data fetch"):
        data.load_mnist("test", root=mnist_copy, download=False)


# --------------------------------------------------------------------------- load_mnist


@pytest.fixture(scope="module")
def mnist_test_split(mnist_root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    return data.load_mnist("test", root=mnist_root, download=False)


def test_load_mnist_test_split(mnist_test_split: tuple[torch.Tensor, torch.Tensor]) -> None:
    X, y = mnist_test_split
    assert X.shape == (10_000, 1, 28, 28) and X.dtype == torch.float32
    assert y.shape == (10_000,) and y.dtype == torch.int64
    assert X.min().item() == 0.0 and X.max().item() == 1.0
    assert y.bincount().tolist() == TEST_COUNTS


def test_load_mnist_pixels_are_bytes_over_255(mnist_test_split: tuple[torch.Tensor, torch.Tensor],
                                              mnist_root: Path) -> None:
    raw = data.read_idx(raw_dir(mnist_root) / "t10k-images-idx3-ubyte")
    assert torch.equal(mnist_test_split[0][:, 0], raw.float() / 255)  # as torchvision's ToTensor


def test_load_mnist_flatten_first_n_on_device(mnist_test_split: tuple[torch.Tensor, torch.Tensor],
                                              mnist_root: Path) -> None:
    X, y = data.load_mnist("test", n=7, flatten=True, device="cpu", root=mnist_root)
    assert X.shape == (7, 784) and y.shape == (7,)
    assert X.device.type == "cpu"
    assert torch.equal(X, mnist_test_split[0][:7].reshape(7, -1))
    assert torch.equal(y, mnist_test_split[1][:7])


def test_load_mnist_train_split(mnist_root: Path) -> None:
    start = time.perf_counter()
    X, y = data.load_mnist("train", root=mnist_root)
    assert time.perf_counter() - start < 5
    assert X.shape == (60_000, 1, 28, 28)
    assert y.bincount().tolist() == TRAIN_COUNTS


def test_load_mnist_reads_course_data(mnist_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURSE_DATA", str(mnist_root))
    X, _ = data.load_mnist("test", n=3, download=False)
    assert X.shape == (3, 1, 28, 28)


def test_load_mnist_without_files_and_download(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="MNIST not found in .*`course data fetch mnist`"):
        data.load_mnist("test", root=tmp_path, download=False)


def test_load_mnist_offline_download_says_use_from(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    use_mirrors(monkeypatch, CLOSED_PORT)
    with pytest.raises(DataError, match="--from DIR"):
        data.load_mnist("test", root=tmp_path)


def test_load_mnist_rejects_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split must be 'train' or 'test', got 'val'"):
        data.load_mnist("val", root=tmp_path)


@pytest.mark.parametrize("n", [0, -1, 2.5, True, "10"])
def test_load_mnist_rejects_bad_n(n: object, mnist_root: Path) -> None:
    with pytest.raises(ValueError, match="n must be a positive int"):
        data.load_mnist("test", n=n, root=mnist_root)


def test_load_mnist_rejects_n_above_split_size(mnist_root: Path) -> None:
    with pytest.raises(ValueError, match="only 10000 images"):
        data.load_mnist("test", n=10_001, root=mnist_root)


def test_data_dir_is_the_checkout_then_the_per_user_cache(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """COURSE_DATA wins; a checkout keeps <repo>/data; a pip-installed package (no pyproject.toml
    beside it, no COURSE_ROOT) uses the per-user cache, whatever folder the notebook runs in."""
    import sys

    from course import paths

    monkeypatch.delenv("COURSE_DATA", raising=False)
    monkeypatch.delenv("COURSE_ROOT", raising=False)
    assert paths.data_dir() == paths.repo_root() / "data"  # this checkout
    installed = tmp_path / "site-packages" / "course"
    installed.mkdir(parents=True)
    monkeypatch.setattr(paths, "PACKAGE_DIR", installed)
    monkeypatch.chdir(tmp_path)  # a notebook's folder
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert paths.data_dir() == tmp_path / "cache" / "course" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert paths.data_dir() == tmp_path / "home" / ".cache" / "course" / "data"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert paths.data_dir() == tmp_path / "home" / "Library" / "Caches" / "course" / "data"
    monkeypatch.setenv("COURSE_ROOT", str(tmp_path / "course"))
    assert paths.data_dir() == tmp_path / "course" / "data"
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "mine"))
    assert paths.data_dir() == tmp_path / "mine"


def test_missing_mnist_error_names_the_cache_folder_and_the_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from course import paths

    monkeypatch.delenv("COURSE_DATA", raising=False)
    monkeypatch.delenv("COURSE_ROOT", raising=False)
    monkeypatch.setattr(paths, "PACKAGE_DIR", tmp_path / "site-packages" / "course")
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataError) as info:
        data.load_mnist("test", download=False)
    message = str(info.value)
    assert str(tmp_path / "cache" / "course" / "data" / "MNIST" / "raw") in message
    assert "course data fetch mnist" in message
