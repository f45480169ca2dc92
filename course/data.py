"""Datasets: a registry of downloadable files, staging with checksums, strict IDX parsing, loaders.

MNIST is kept in torchvision's on-disk layout, ``<data dir>/MNIST/raw/``, holding both the
official ``.gz`` files and their decompressed IDX files, so a cache made by torchvision serves
this module and the other way round. The data dir is ``course.paths.data_dir()``
(``COURSE_DATA`` overrides) unless a ``root`` is passed. Every load verifies the SHA-256 of the
files it reads and parses the IDX headers strictly: a truncated or foreign file raises a
one-line :class:`DataError` naming the file and the fix, never a silently wrong array.

Used by: MNIST loaders in assignments 01, 03, 04 and 05; the toy loader in assignment 02;
``course data`` (fetch, verify) on the command line.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import os
import secrets
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from math import prod
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from course.errors import CourseError
from course.paths import PACKAGE_DIR, data_dir

DOWNLOAD_TIMEOUT_S = 30.0
_CHUNK = 1 << 20
_USER_AGENT = "course-data/0.1 (+https://pytorch.org)"


class DataError(CourseError):
    """A dataset file is missing, corrupt or unreachable; the message names the file and the fix."""


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset: its decompressed name and the checksums that identify it."""

    name: str  # decompressed file name, e.g. "train-images-idx3-ubyte"
    gz_md5: str  # of the official .gz (the value torchvision checks)
    gz_sha256: str  # of the official .gz
    sha256: str  # of the decompressed file (checked on every load)

    @property
    def gz(self) -> str:
        """The name of the compressed file as the mirrors serve it."""
        return self.name + ".gz"


@dataclass(frozen=True)
class Dataset:
    """A downloadable dataset: where it lives under the data dir, its mirrors and its files."""

    name: str
    folder: str  # relative to the data dir
    mirrors: tuple[str, ...]  # base URLs; a file's URL is mirror + file.gz
    files: Mapping[str, DataFile]  # role (e.g. "train_images") -> file


REGISTRY: dict[str, Dataset] = {
    "mnist": Dataset(
        name="mnist",
        folder="MNIST/raw",
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        files={
            "train_images": DataFile(
                "train-images-idx3-ubyte",
                gz_md5="f68b3c2dcbeaaa9fbdd348bbdeb94873",
                gz_sha256="440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                sha256="ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            ),
            "train_labels": DataFile(
                "train-labels-idx1-ubyte",
                gz_md5="d53e105ee54ea40749a09fcbcd1e9432",
                gz_sha256="3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                sha256="65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            ),
            "test_images": DataFile(
                "t10k-images-idx3-ubyte",
                gz_md5="9fb629c4189551a2d022fa330f9573f3",
                gz_sha256="8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                sha256="0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            ),
            "test_labels": DataFile(
                "t10k-labels-idx1-ubyte",
                gz_md5="ec29112dd5afa0611ce80d1b7f02629c",
                gz_sha256="f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                sha256="ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            ),
        },
    ),
}

TOY_NAMES = ("toy_data", "toy_data_two_moon", "toy_data_two_circles")
#: Where the toy data ships: inside the package, so a pip-installed course has it anywhere.
TOY_DIR = PACKAGE_DIR / "datasets"


# --------------------------------------------------------------------------- small helpers


def _show(path: Path) -> str:
    """``path`` relative to the current directory when it lies below it, else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _dataset(name: str) -> Dataset:
    try:
        return REGISTRY[name.lower()]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(REGISTRY)}") from None


def _folder(ds: Dataset, root: Path | str | None) -> Path:
    return (Path(root).expanduser() if root is not None else data_dir()) / ds.folder


def _fix(ds: Dataset) -> str:
    return (f"re-stage with `course data fetch {ds.name}` "
            f"or `course data fetch {ds.name} --from DIR`")


def _sha256(path: Path) -> str | None:
    """SHA-256 of a file, or None when it does not exist."""
    try:
        with path.open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except FileNotFoundError:
        return None


def _mismatch(expected: str, got: str | None) -> str:
    return f"sha256 mismatch (expected {expected[:12]}…, got {(got or 'nothing')[:12]}…)"


@contextlib.contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds,
    so an interrupted run never leaves a half-written file under the final name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name the caller creates itself, so the file gets the usual (umask) permissions.
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.part")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- IDX parsing


def _read_bytes(path: Path) -> bytearray:
    """The whole (decompressed, if ``.gz``) content as a writable buffer (no copy for raw files)."""
    if path.suffix == ".gz":
        try:
            with gzip.open(path, "rb") as f:
                return bytearray(f.read())
        except (OSError, EOFError) as exc:
            raise DataError(f"{_show(path)}: not a valid gzip file ({_one_line(exc)})") from None
    buf = bytearray(path.stat().st_size)
    with path.open("rb") as f:
        f.readinto(buf)
    return buf


def _parse_idx(buf: bytearray, source: Path) -> torch.Tensor:
    """Strictly parse an unsigned-byte IDX buffer (labels or images) into a uint8 tensor."""
    where = _show(source)
    if len(buf) < 4:
        raise DataError(f"{where}: too short to be an IDX file ({len(buf)} bytes)")
    magic = int.from_bytes(buf[:4], "big")
    if buf[:2] != b"\x00\x00" or buf[3] not in (1, 3):
        raise DataError(f"{where}: bad IDX magic number 0x{magic:08x}; expected "
                        "0x00000801 (labels) or 0x00000803 (images)")
    if buf[2] != 0x08:
        raise DataError(f"{where}: IDX element type 0x{buf[2]:02x} is not unsigned byte (0x08)")
    ndim = buf[3]
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise DataError(f"{where}: truncated IDX header ({len(buf)} of {header} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(buf, dtype=">u4", count=ndim, offset=4))
    expected, found = prod(shape), len(buf) - header
    if found != expected:
        problem = "truncated" if found < expected else f"{found - expected} extra bytes at the end"
        raise DataError(f"{where}: {problem}: header shape {shape} needs {expected} data bytes, "
                        f"file has {found}")
    array = np.frombuffer(buf, dtype=np.uint8, count=expected, offset=header).reshape(shape)
    return torch.from_numpy(array)


def read_idx(path: Path | str) -> torch.Tensor:
    """Read an IDX file of unsigned bytes (raw or ``.gz``) as a uint8 tensor.

    Accepts magic 0x00000801 (labels, shape (N,)) and 0x00000803 (images, shape (N, H, W)); a
    wrong magic, element type, dimension count, or a byte length that differs from the header's
    shape raises :class:`DataError` naming the file. Used by :func:`load_mnist` (01, 03-05).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{_show(path)}: no such file")
    return _parse_idx(_read_bytes(path), path)


# --------------------------------------------------------------------------- staging (fetch)


def _copy_from_mirror(ds: Dataset, f: DataFile, from_dir: Path, target: Path) -> None:
    """Copy ``f``'s .gz from a local mirror folder (or a torchvision cache in it) to ``target``."""
    candidates = (from_dir / f.gz, from_dir / ds.folder / f.gz)
    source = next((c for c in candidates if c.is_file()), None)
    if source is None:
        raise DataError(f"--from {_show(from_dir)}: {f.gz} is missing there; a mirror folder "
                        f"holds the official .gz files ({', '.join(x.gz for x in ds.files.values())})")
    shutil.copyfile(source, target)
    got = _sha256(target)
    if got != f.gz_sha256:
        raise DataError(f"{_show(source)}: {_mismatch(f.gz_sha256, got)}: the mirror's copy is "
                        "corrupt or truncated; replace it with the official file")


def _download(url: str, target: Path, progress: bool) -> None:
    """Stream ``url`` into ``target`` with a progress bar on stderr."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    with (urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response,
          target.open("wb") as out,
          tqdm(total=int(response.headers.get("Content-Length") or 0) or None, unit="B",
               unit_scale=True, unit_divisor=1024, desc=url.rsplit("/", 1)[-1],
               file=sys.stderr, disable=not progress, leave=False) as bar):
        while chunk := response.read(_CHUNK):
            out.write(chunk)
            bar.update(len(chunk))


def _why(exc: BaseException) -> str:
    """A short reason for a failed download."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    reason = getattr(exc, "reason", exc)
    return _one_line(getattr(reason, "strerror", None) or reason)


def _download_from_mirrors(ds: Dataset, f: DataFile, target: Path, progress: bool) -> None:
    """Try each mirror in turn until one serves ``f``'s .gz with the right checksum."""
    failures, answered = [], False  # answered: some mirror replied (HTTP error or a bad file)
    for mirror in ds.mirrors:
        url = mirror + f.gz
        host = urllib.parse.urlsplit(url).netloc
        try:
            _download(url, target, progress)
        except (OSError, http.client.HTTPException) as exc:
            failures.append(f"{host}: {_why(exc)}")
            answered |= isinstance(exc, urllib.error.HTTPError)
            continue
        got = _sha256(target)
        if got == f.gz_sha256:
            return
        failures.append(f"{host}: {_mismatch(f.gz_sha256, got)}")
        answered = True
    cause = "no mirror served a valid copy" if answered else "the network looks unreachable"
    raise DataError(f"could not download {f.gz} ({'; '.join(failures)}); {cause}: stage a local "
                    f"copy with `course data fetch {ds.name} --from DIR` (DIR holds the .gz files)")


def _decompress(gz: Path, raw: Path, sha256: str) -> None:
    """Decompress ``gz`` to ``raw`` atomically, checking the decompressed SHA-256 on the way."""
    digest = hashlib.sha256()
    with _atomic(raw) as tmp:
        try:
            with gzip.open(gz, "rb") as src, tmp.open("wb") as out:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
        except (OSError, EOFError) as exc:
            raise DataError(f"{_show(gz)}: cannot decompress ({_one_line(exc)}); delete it and "
                            "fetch again") from None
        if digest.hexdigest() != sha256:
            raise DataError(f"{_show(gz)}: decompressed data has a "
                            f"{_mismatch(sha256, digest.hexdigest())}; delete it and fetch again")


def _stage(ds: Dataset, f: DataFile, folder: Path, from_dir: Path | None, progress: bool) -> Path:
    """Make ``folder/f.name`` present and verified; return its path."""
    raw, gz = folder / f.name, folder / f.gz
    if _sha256(raw) == f.sha256:
        return raw
    if _sha256(gz) != f.gz_sha256:
        with _atomic(gz) as tmp:
            if from_dir is not None:
                _copy_from_mirror(ds, f, from_dir, tmp)
            else:
                _download_from_mirrors(ds, f, tmp, progress)
    _decompress(gz, raw, f.sha256)
    return raw


def fetch(name: str = "mnist", dest: Path | str | None = None, from_dir: Path | str | None = None,
          progress: bool = True, roles: tuple[str, ...] | None = None) -> list[Path]:
    """Stage dataset ``name`` under ``dest`` (default: the data dir) and return its files' paths.

    ``roles`` (e.g. ``("test_images", "test_labels")``) stages only those files; default: all.

    Files already present and verified are left alone. Otherwise each ``.gz`` is copied from
    ``from_dir`` (a local mirror, e.g. for offline labs and CI) or downloaded from the mirrors,
    its checksum verified, and decompressed next to it (torchvision's layout). Raises
    :class:`DataError` with a one-line reason and fix. Used by ``course data fetch`` and by
    :func:`load_mnist` (assignments 01, 03, 04, 05).
    """
    ds = _dataset(name)
    mirror = Path(from_dir).expanduser() if from_dir is not None else None
    if mirror is not None and not mirror.is_dir():
        raise DataError(f"--from {_show(mirror)}: no such folder; point it at a folder holding "
                        f"the {ds.name} .gz files")
    unknown = sorted(set(roles or ()) - set(ds.files))
    if unknown:
        raise ValueError(f"{ds.name} has no file {unknown[0]!r}; choose among {sorted(ds.files)}")
    folder = _folder(ds, dest)
    return [_stage(ds, f, folder, mirror, progress) for role, f in ds.files.items()
            if roles is None or role in roles]


def verify(name: str = "mnist", root: Path | str | None = None) -> list[str]:
    """Check every staged file of ``name`` against its SHA-256; return one line per file.

    Raises :class:`DataError` (one line naming the bad files and the fix) if any file is missing
    or corrupt. Used by ``course data verify``.
    """
    ds = _dataset(name)
    folder = _folder(ds, root)
    found = {folder / f.name: (f.sha256, _sha256(folder / f.name)) for f in ds.files.values()}
    if all(got is None for _, got in found.values()):
        raise DataError(f"{ds.name} not found in {_show(folder)}; run `course data fetch "
                        f"{ds.name}` (or --from DIR)")
    bad = [f"{_show(path)}: {'missing' if got is None else _mismatch(want, got)}"
           for path, (want, got) in found.items() if got != want]
    if bad:
        raise DataError(f"{'; '.join(bad)}; {_fix(ds)}")
    return [f"ok  {_show(path)}" for path in found]


# --------------------------------------------------------------------------- loading


def _load_verified(f: DataFile, folder: Path, ds: Dataset) -> torch.Tensor:
    """Read one staged IDX file, parse it strictly and check its SHA-256."""
    path = folder / f.name
    buf = _read_bytes(path)
    try:
        tensor = _parse_idx(buf, path)
    except DataError as exc:
        raise DataError(f"{exc}; {_fix(ds)}") from None
    got = hashlib.sha256(buf).hexdigest()
    if got != f.sha256:
        raise DataError(f"{_show(path)}: {_mismatch(f.sha256, got)}: the file is corrupt or "
                        f"modified; {_fix(ds)}")
    return tensor


def _check_n(n: int | None, available: int, split: str) -> int:
    if n is None:
        return available
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        raise ValueError(f"n must be a positive int or None, got {n!r}")
    if n > available:
        raise ValueError(f"n={n} but the MNIST {split} split has only {available} images")
    return n


def load_mnist(split: str = "test", n: int | None = None, flatten: bool = False,
               device: torch.device | str | None = None, root: Path | str | None = None,
               download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Load MNIST as tensors: ``X`` float32 in [0, 1], shape (N, 1, 28, 28) or (N, 784) with
    ``flatten``; ``y`` int64, shape (N,). ``n`` keeps the first ``n`` images (deterministic).

    Checksums are verified on every load. Missing files of the split (only its own two) are
    fetched when ``download`` is true;
    otherwise :class:`DataError` says how to stage them. The result is moved to ``device`` in
    one piece. Used by assignments 01, 03, 04 and 05.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    ds = REGISTRY["mnist"]
    folder = _folder(ds, root)
    wanted = (ds.files[f"{split}_images"], ds.files[f"{split}_labels"])
    if not all((folder / f.name).is_file() for f in wanted):
        if not download:
            raise DataError(f"MNIST not found in {_show(folder)}; run `course data fetch mnist` "
                            "(or --from DIR)")
        fetch("mnist", dest=root, roles=(f"{split}_images", f"{split}_labels"))
    images, labels = (_load_verified(f, folder, ds) for f in wanted)
    count = _check_n(n, len(labels), split)
    X = images[:count].to(torch.float32).div_(255.0)
    X = X.reshape(count, -1) if flatten else X.unsqueeze(1)
    y = labels[:count].to(torch.int64)
    return (X.to(device), y.to(device)) if device is not None else (X, y)


def _toy_path(name: str, root: Path | str | None) -> Path:
    stem = name.removesuffix(".npz")
    if stem not in TOY_NAMES:
        raise ValueError(f"unknown toy dataset {name!r}; choose one of {', '.join(TOY_NAMES)}")
    folders = [Path(root)] if root is not None else [TOY_DIR, data_dir()]
    for folder in folders:
        if (folder / f"{stem}.npz").is_file():
            return folder / f"{stem}.npz"
    raise DataError(f"{stem}.npz not found in {' or '.join(_show(d) for d in folders)}; "
                    "regenerate it with `course data toy`")


def _check_toy(arrays: list[np.ndarray], path: Path) -> None:
    x_train, x_test, y_train, y_test = arrays
    problems = [f"{key} has shape {a.shape}, expected ({n}, {cols})"
                for key, a, n, cols in (("arr_0", x_train, len(x_train), 2),
                                        ("arr_1", x_test, len(x_test), 2),
                                        ("arr_2", y_train, len(x_train), 1),
                                        ("arr_3", y_test, len(x_test), 1))
                if a.shape != (n, cols)]
    if not problems and not np.isin(np.concatenate([y_train, y_test]), (0, 1)).all():
        problems.append("labels are not all 0 or 1")
    if problems:
        raise DataError(f"{_show(path)}: {'; '.join(problems)}; regenerate it with "
                        "`course data toy`")


def load_toy(name: str, root: Path | str | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Load a 2-D toy dataset as float32 tensors ``(x_train, x_test, y_train, y_test)``.

    ``name`` is one of ``toy_data``, ``toy_data_two_moon``, ``toy_data_two_circles`` (``.npz``
    optional); x has shape (N, 2), y shape (N, 1) with labels 0/1. The files shipped in the
    package (``course/datasets``) are used first, then the data dir (or only ``root`` when
    given).
    Used by assignment 02.
    """
    path = _toy_path(name, root)
    keys = [f"arr_{i}" for i in range(4)]
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise DataError(f"{_show(path)}: missing arrays {', '.join(missing)} (expected "
                                "arr_0..arr_3 = x_train, x_test, y_train, y_test); regenerate it "
                                "with `course data toy`")
            arrays = [npz[k] for k in keys]
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{_show(path)}: not a readable npz file ({_one_line(exc)})") from None
    _check_toy(arrays, path)
    return tuple(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in arrays)
