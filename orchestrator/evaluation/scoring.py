"""Scoring: the test and hold-out images in a secret order for the prediction container, and top-1
accuracy computed here, on the host, from validated logits. Labels never leave this process."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contracts.sandbox import PREDICT_IMAGES
from orchestrator.data import PreparedDataset


@dataclass(frozen=True)
class ScoringSet:
    """The images a candidate predicts, in a secret order: test split first, then the hold-out,
    permuted so that `predict_images = original[permutation]`."""

    predict_images: Path
    permutation: np.ndarray
    test_labels: np.ndarray
    holdout_labels: np.ndarray

    @property
    def rows(self) -> int:
        return len(self.permutation)


def accuracies(logits: np.ndarray, scoring: ScoringSet) -> tuple[float, float | None]:
    """Top-1 accuracy on the test split and on the hold-out (None when there is no hold-out)."""
    predicted = np.empty(scoring.rows, dtype=np.int64)
    predicted[scoring.permutation] = logits.argmax(axis=1)
    n_test = len(scoring.test_labels)
    test = float((predicted[:n_test] == scoring.test_labels).mean())
    holdout = float((predicted[n_test:] == scoring.holdout_labels).mean()) if len(scoring.holdout_labels) else None
    return test, holdout


@contextmanager
def scoring_set(dataset: PreparedDataset, scratch_root: Path) -> Iterator[ScoringSet]:
    """Test and hold-out images in a fresh secret order, written for the prediction containers and
    deleted afterwards. Labels stay in this process."""
    test_images, holdout_images = dataset.array("test_images"), dataset.array("holdout_images")
    images = np.concatenate([test_images, holdout_images])
    permutation = np.random.default_rng(secrets.randbits(128)).permutation(len(images))
    scratch_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="scoring-", dir=scratch_root))
    try:
        path = scratch / PREDICT_IMAGES
        np.save(path, images[permutation], allow_pickle=False)
        path.chmod(0o644)
        yield ScoringSet(path, permutation, np.asarray(dataset.array("test_labels")),
                         np.asarray(dataset.array("holdout_labels")))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
