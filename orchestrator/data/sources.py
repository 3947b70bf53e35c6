"""Where datasets come from: the official CIFAR-10 archive (download with MD5 check, restricted
unpickling), MNIST-style IDX files (Debian's dataset-fashion-mnist), and synthetic CIFAR-shaped data.
Each loader returns the raw train/test splits; `orchestrator.data.prepared` turns them into arrays."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import shutil
import struct
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DATASETS = ("cifar10", "fashion-mnist", "mnist", "synthetic")
# (channels, height, width) of each dataset's images
DATASET_SHAPES = {"cifar10": (3, 32, 32), "fashion-mnist": (1, 28, 28), "mnist": (1, 28, 28), "synthetic": (3, 32, 32)}
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
FASHION_MNIST_DEBIAN = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte",
}


class DataError(RuntimeError):
    """A dataset is missing, corrupt or not prepared."""


@dataclass(frozen=True)
class RawSplits:
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str


class _CifarUnpickler(pickle.Unpickler):
    """CIFAR-10's batches are pickled dicts holding a numpy array: allow exactly those types."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("_codecs", "encode"),
                ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected type {module}.{name} in a CIFAR-10 batch")
        return super().find_class(module, name)


def _cifar_batch(archive: tarfile.TarFile, member: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        fh = archive.extractfile(f"cifar-10-batches-py/{member}")
    except KeyError:
        raise DataError(f"CIFAR-10 archive lacks cifar-10-batches-py/{member}") from None
    if fh is None:
        raise DataError(f"CIFAR-10 archive member {member} is not a file")
    try:
        batch = _CifarUnpickler(io.BytesIO(fh.read()), encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, KeyError, EOFError, ValueError, TypeError) as exc:
        raise DataError(f"CIFAR-10 batch {member} is corrupt: {exc}") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(f"CIFAR-10 batch {member} has shape {data.shape}, expected (N, 3072)")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"CIFAR-10 batch {member} has labels outside 0..9")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(archive_path: Path) -> RawSplits:
    """Read the official `cifar-10-python.tar.gz` (python-pickle layout)."""
    try:
        with tarfile.open(archive_path, "r:gz") as archive:
            parts = [_cifar_batch(archive, f"data_batch_{i}") for i in range(1, 6)]
            test_images, test_labels = _cifar_batch(archive, "test_batch")
    except FileNotFoundError:
        raise DataError(f"CIFAR-10 archive not found: {archive_path} (run `nasloop data fetch cifar10`)") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"CIFAR-10 archive {archive_path} is unreadable: {exc}") from None
    return RawSplits(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                     test_images, test_labels, source=f"cifar10 archive md5={_md5(archive_path)}")


def _read_idx(path: Path, expected_dims: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise DataError(f"IDX file not found: {path}") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"IDX file {path} is unreadable: {exc}") from None
    if len(raw) < 4:
        raise DataError(f"IDX file {path} is truncated")
    zero, dtype_code, dims = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or dims != expected_dims:
        raise DataError(f"{path} is not an unsigned-byte IDX file with {expected_dims} dimensions")
    shape = struct.unpack(f">{dims}I", raw[4:4 + 4 * dims])
    body = raw[4 + 4 * dims:]
    if len(body) != int(np.prod(shape)):
        raise DataError(f"IDX file {path} holds {len(body)} bytes, expected {int(np.prod(shape))} for {shape}")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def _find_idx(directory: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (directory / name).is_file():
            return directory / name
    raise DataError(f"{directory} lacks {stem}(.gz)")


def load_idx_dataset(directory: Path, name: str) -> RawSplits:
    """MNIST-style IDX files (`train-images-idx3-ubyte(.gz)` ...) from `directory`."""
    if not directory.is_dir():
        raise DataError(f"{name}: source directory not found: {directory}")
    arrays = {key: _read_idx(_find_idx(directory, stem), 3 if key.endswith("images") else 1)
              for key, stem in IDX_FILES.items()}
    for split in ("train", "test"):
        if len(arrays[f"{split}_images"]) != len(arrays[f"{split}_labels"]):
            raise DataError(f"{name}: {split} images and labels differ in count")
        if arrays[f"{split}_labels"].max(initial=0) > 9:
            raise DataError(f"{name}: {split} labels outside 0..9")
    return RawSplits(arrays["train_images"][:, None], arrays["train_labels"].astype(np.int64),
                     arrays["test_images"][:, None], arrays["test_labels"].astype(np.int64),
                     source=f"{name} IDX files")


def make_synthetic(seed: int = 0, n_train: int = 2000, n_test: int = 1000,
                   num_classes: int = 10, noise: float = 3.0) -> RawSplits:
    """CIFAR-shaped (3x32x32), learnable images: each class is a smooth random colour pattern,
    each image that pattern shifted, rescaled in contrast and buried in noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(num_classes, 3, 4, 4))
    prototypes = np.kron(coarse, np.ones((1, 1, 8, 8)))  # (classes, 3, 32, 32), blocky patterns

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, num_classes, size=n)
        images = prototypes[labels] * rng.uniform(0.5, 1.5, size=(n, 1, 1, 1))
        shifts = rng.integers(-3, 4, size=(n, 2))
        for i, (dy, dx) in enumerate(shifts):
            images[i] = np.roll(images[i], (dy, dx), axis=(1, 2))
        images += rng.normal(scale=noise, size=images.shape)
        pixels = np.clip(128 + 40 * images, 0, 255).astype(np.uint8)
        return pixels, labels.astype(np.int64)

    train = draw(n_train)
    test = draw(n_test)
    return RawSplits(*train, *test, source=f"synthetic n_train={n_train} n_test={n_test}")


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_source(dataset: str, workdir: Path) -> Path | None:
    if dataset == "cifar10":
        return workdir / "downloads" / CIFAR10_ARCHIVE
    if dataset == "fashion-mnist" and FASHION_MNIST_DEBIAN.is_dir():
        return FASHION_MNIST_DEBIAN
    return None


def load_raw(dataset: str, source: Path | None, secret: int) -> RawSplits:
    """The raw splits of `dataset`; synthetic data is drawn from `secret` (the workspace's)."""
    if dataset == "synthetic":
        return make_synthetic(secret)
    if source is None:
        raise DataError(f"{dataset}: no source given (--source DIR with the IDX files)")
    if dataset == "cifar10":
        return load_cifar10(source)
    if dataset in ("fashion-mnist", "mnist"):
        return load_idx_dataset(source, dataset)
    raise DataError(f"unknown dataset {dataset!r} (known: {', '.join(DATASETS)})")


def fetch_cifar10(dest_dir: Path, url: str = CIFAR10_URL, md5: str = CIFAR10_MD5) -> Path:
    """Download the CIFAR-10 archive and verify its MD5; nothing is left behind on failure."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / CIFAR10_ARCHIVE
    if target.is_file() and _md5(target) == md5:
        return target
    partial = target.with_suffix(".partial")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, partial.open("wb") as fh:
            shutil.copyfileobj(response, fh, length=1 << 20)
        actual = _md5(partial)
        if actual != md5:
            raise DataError(f"downloaded {url} has MD5 {actual}, expected {md5}")
        partial.rename(target)
    except (OSError, ValueError) as exc:
        raise DataError(f"could not download {url}: {exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return target
