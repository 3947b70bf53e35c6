"""Datasets, prepared once into `<data dir>/<dataset>/` as plain .npy arrays.

Images are uint8 `(N, C, H, W)`, labels int64. A hold-out slice of the training split is kept apart:
the training container gets `train_*` (split minus hold-out), and only the host ever reads the labels
of the hold-out and of the official test split. Which images are held out (and, for synthetic data,
the images and labels themselves) come from a secret drawn when the workspace prepares the dataset:
it is stored beside the arrays (`secret.json`, never mounted into a container), and the dataset's
metadata records only its fingerprint (`split_id`), so no program can regenerate the hold-out from
public code.

A profile may train on a subset of the training split (`[data] train_subset`, for a CPU miniature):
the next images of the same secret order after the hold-out, in a directory of its own
(`<dataset>-train<N>`) with its own secret; hold-out and test splits are the whole dataset's.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from orchestrator.data.sources import DataError, RawSplits, default_source, load_raw

# 2: the hold-out (and synthetic data) from a per-workspace secret; 1 used a public seed.
FORMAT_VERSION = 2
SECRET_FILE = "secret.json"


@dataclass(frozen=True)
class DatasetMeta:
    dataset: str
    channels: int
    height: int
    width: int
    num_classes: int
    n_train: int  # training split minus hold-out
    n_holdout: int
    n_test: int
    mean: list[float]  # per channel, of pixels scaled to [0, 1], over the training images
    std: list[float]
    split_id: str  # fingerprint of the secret that chose the hold-out (the secret stays on the host)
    holdout_fraction: float
    source: str
    format_version: int = FORMAT_VERSION
    train_subset: int = 0  # train on this many images of the training split (0: all of it)

    @property
    def in_shape(self) -> list[int]:
        return [1, self.channels, self.height, self.width]


@dataclass(frozen=True)
class PreparedDataset:
    """A prepared dataset directory; arrays are memory-mapped on demand."""

    root: Path
    meta: DatasetMeta

    def path(self, name: str) -> Path:
        return self.root / f"{name}.npy"

    def array(self, name: str) -> np.ndarray:
        return np.load(self.path(name), mmap_mode="r", allow_pickle=False)


def draw_secret() -> int:
    return secrets.randbits(63)


def split_id(secret: int) -> str:
    return hashlib.sha256(f"nasloop-split:{secret}".encode()).hexdigest()[:16]


def prepared_name(dataset: str, train_subset: int = 0) -> str:
    """The directory of a prepared dataset (a training subset has its own)."""
    return f"{dataset}-train{train_subset}" if train_subset else dataset


def prepare(raw: RawSplits, dataset: str, out_dir: Path, holdout_fraction: float, secret: int,
            train_subset: int = 0) -> PreparedDataset:
    """Split off the hold-out chosen by `secret` (and, with `train_subset`, keep that many of the other
    training images, the next ones in the secret's order), compute normalisation statistics and write
    the arrays and the secret atomically (a half-prepared directory is never left behind)."""
    n = len(raw.train_labels)
    n_holdout = int(round(n * holdout_fraction))
    if train_subset > n - n_holdout:
        raise DataError(f"{dataset}: a training subset of {train_subset} images is more than the "
                        f"{n - n_holdout} left beside the hold-out")
    order = np.random.default_rng(secret).permutation(n)
    end = n_holdout + train_subset if train_subset else n
    holdout_idx, train_idx = np.sort(order[:n_holdout]), np.sort(order[n_holdout:end])
    train_images = raw.train_images[train_idx]
    scaled = train_images.astype(np.float64) / 255.0
    mean = scaled.mean(axis=(0, 2, 3))
    std = scaled.std(axis=(0, 2, 3))
    _, channels, height, width = raw.train_images.shape
    meta = DatasetMeta(
        dataset=dataset, channels=channels, height=height, width=width,
        num_classes=int(max(raw.train_labels.max(), raw.test_labels.max())) + 1,
        n_train=len(train_idx), n_holdout=n_holdout, n_test=len(raw.test_labels),
        mean=[round(float(m), 6) for m in mean], std=[round(float(max(s, 1e-6)), 6) for s in std],
        split_id=split_id(secret), holdout_fraction=holdout_fraction, source=raw.source,
        train_subset=train_subset,
    )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dataset}-", dir=out_dir.parent))
    try:
        arrays = {
            "train_images": train_images, "train_labels": raw.train_labels[train_idx],
            "holdout_images": raw.train_images[holdout_idx], "holdout_labels": raw.train_labels[holdout_idx],
            "test_images": raw.test_images, "test_labels": raw.test_labels,
        }
        for name, array in arrays.items():
            np.save(staging / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
        (staging / "meta.json").write_text(json.dumps(asdict(meta), indent=1))
        secret_path = staging / SECRET_FILE
        secret_path.write_text(json.dumps({"secret": secret}))
        secret_path.chmod(0o600)
        staging.chmod(0o755)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return PreparedDataset(out_dir, meta)


def open_prepared(data_dir: Path, dataset: str, train_subset: int = 0) -> PreparedDataset:
    root = data_dir / prepared_name(dataset, train_subset)
    meta_path = root / "meta.json"
    if not meta_path.is_file():
        subset = f" --train-subset {train_subset}" if train_subset else ""
        raise DataError(f"dataset {prepared_name(dataset, train_subset)!r} is not prepared in {data_dir}: run "
                        f"`nasloop data prepare {dataset}{subset}`" + (" (after `nasloop data fetch cifar10`)"
                                                                       if dataset == "cifar10" else ""))
    try:
        raw_meta = json.loads(meta_path.read_text())
    except ValueError as exc:
        raise DataError(f"{meta_path} is corrupt: {exc}; prepare the dataset again") from None
    if not isinstance(raw_meta, dict) or raw_meta.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{root} was prepared by an older nasloop (its hold-out came from a public seed): "
                        f"prepare it again (`nasloop data prepare {dataset}`)")
    try:
        meta = DatasetMeta(**raw_meta)
    except TypeError as exc:
        raise DataError(f"{meta_path} is corrupt: {exc}; prepare the dataset again") from None
    if (meta.dataset, meta.train_subset) != (dataset, train_subset):
        raise DataError(f"{meta_path} holds {prepared_name(meta.dataset, meta.train_subset)!r}, not "
                        f"{prepared_name(dataset, train_subset)!r}; prepare the dataset again")
    prepared = PreparedDataset(root, meta)
    for name in ("train_images", "train_labels", "holdout_images", "holdout_labels", "test_images", "test_labels"):
        if not prepared.path(name).is_file():
            raise DataError(f"{prepared.path(name)} is missing; prepare the dataset again")
    return prepared



def prepare_from(dataset: str, source: Path | None, data_dir: Path, holdout_fraction: float,
                 secret: int | None = None, train_subset: int = 0) -> PreparedDataset:
    """Load `dataset` from `source` and prepare it with `secret` (default: a fresh one)."""
    secret = draw_secret() if secret is None else secret
    return prepare(load_raw(dataset, source, secret), dataset, data_dir / prepared_name(dataset, train_subset),
                   holdout_fraction, secret, train_subset)


def ensure_prepared(dataset: str, workdir: Path, data_dir: Path, holdout_fraction: float,
                    train_subset: int = 0) -> PreparedDataset:
    """The prepared dataset; synthetic data and locally available sources are prepared on first use."""
    try:
        return open_prepared(data_dir, dataset, train_subset)
    except DataError:
        source = default_source(dataset, workdir)
        if dataset != "synthetic" and (source is None or not source.exists()):
            raise
    return prepare_from(dataset, default_source(dataset, workdir), data_dir, holdout_fraction,
                        train_subset=train_subset)
