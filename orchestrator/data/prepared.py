"""Datasets, prepared once into `<data dir>/<dataset>/` as plain .npy arrays.

Images are uint8 `(N, C, H, W)`, labels int64. A fixed, seeded hold-out slice of the training split
is kept apart: the training container gets `train_*` (split minus hold-out), and only the host ever
reads the labels of the hold-out and of the official test split.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from orchestrator.data.sources import DataError, RawSplits, default_source, load_raw

FORMAT_VERSION = 1


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
    holdout_seed: int
    holdout_fraction: float
    source: str
    format_version: int = FORMAT_VERSION

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


def prepare(raw: RawSplits, dataset: str, out_dir: Path, holdout_fraction: float,
            seed: int) -> PreparedDataset:
    """Split off the seeded hold-out, compute normalisation statistics and write the arrays
    atomically (a half-prepared directory is never left behind)."""
    n = len(raw.train_labels)
    n_holdout = int(round(n * holdout_fraction))
    order = np.random.default_rng(seed).permutation(n)
    holdout_idx, train_idx = np.sort(order[:n_holdout]), np.sort(order[n_holdout:])
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
        holdout_seed=seed, holdout_fraction=holdout_fraction, source=raw.source,
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
        staging.chmod(0o755)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return PreparedDataset(out_dir, meta)


def open_prepared(data_dir: Path, dataset: str) -> PreparedDataset:
    root = data_dir / dataset
    meta_path = root / "meta.json"
    if not meta_path.is_file():
        raise DataError(f"dataset {dataset!r} is not prepared in {data_dir}: run "
                        f"`nasloop data prepare {dataset}`" + (" (after `nasloop data fetch cifar10`)"
                                                               if dataset == "cifar10" else ""))
    try:
        meta = DatasetMeta(**json.loads(meta_path.read_text()))
    except (ValueError, TypeError) as exc:
        raise DataError(f"{meta_path} is corrupt: {exc}; prepare the dataset again") from None
    prepared = PreparedDataset(root, meta)
    for name in ("train_images", "train_labels", "holdout_images", "holdout_labels", "test_images", "test_labels"):
        if not prepared.path(name).is_file():
            raise DataError(f"{prepared.path(name)} is missing; prepare the dataset again")
    return prepared



def ensure_prepared(dataset: str, workdir: Path, data_dir: Path, holdout_fraction: float,
                    seed: int) -> PreparedDataset:
    """The prepared dataset; synthetic data and locally available sources are prepared on first use."""
    try:
        return open_prepared(data_dir, dataset)
    except DataError:
        source = default_source(dataset, workdir)
        if dataset != "synthetic" and (source is None or not source.exists()):
            raise
    return prepare(load_raw(dataset, default_source(dataset, workdir), seed), dataset,
                   data_dir / dataset, holdout_fraction, seed)
