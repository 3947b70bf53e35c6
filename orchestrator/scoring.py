"""Host-side checks of everything a candidate wrote, and the scores computed from it.

Only data crosses the boundary: a regular file (no symlink, FIFO or device) under a size cap,
read without unpickling: `.npy` with `allow_pickle=False` and an exact shape, dtype and finite
values; safetensors by its JSON header; small JSON files as plain data.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open

MAX_JSON_BYTES = 64 * 1024


class OutputInvalid(Exception):
    """A candidate's output file is missing or malformed. `kind`: missing_output, invalid_output,
    nonfinite."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def regular_file(path: Path, max_bytes: int) -> int:
    """Size of `path` if it is a regular file within the cap, else OutputInvalid."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise OutputInvalid("missing_output", f"{path.name} was not written") from None
    if not stat.S_ISREG(info.st_mode):
        raise OutputInvalid("invalid_output", f"{path.name} is not a regular file")
    if info.st_size > max_bytes:
        raise OutputInvalid("invalid_output", f"{path.name} is {info.st_size:,} bytes, over {max_bytes:,}")
    return info.st_size


def read_json(path: Path) -> dict[str, Any]:
    regular_file(path, MAX_JSON_BYTES)
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise OutputInvalid("invalid_output", f"{path.name} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise OutputInvalid("invalid_output", f"{path.name} is not a JSON object")
    return data


def weights_elements(path: Path, max_bytes: int) -> int:
    """Validate a safetensors file by its header and count the elements of its tensors."""
    regular_file(path, max_bytes)
    try:
        with safe_open(str(path), framework="numpy") as fh:
            total = 0
            for key in fh.keys():
                total += int(np.prod(fh.get_slice(key).get_shape(), dtype=np.int64))
    except Exception as exc:  # safetensors raises its own error types for malformed files
        raise OutputInvalid("invalid_output", f"{path.name} is not a valid safetensors file: {exc}") from None
    return total


def read_logits(path: Path, rows: int, num_classes: int, max_bytes: int) -> np.ndarray:
    regular_file(path, max_bytes)
    try:
        logits = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise OutputInvalid("invalid_output", f"{path.name} is not a plain .npy array: {exc}") from None
    if not isinstance(logits, np.ndarray) or logits.dtype != np.float32 or logits.shape != (rows, num_classes):
        raise OutputInvalid("invalid_output", f"{path.name} is {getattr(logits, 'dtype', '?')} "
                            f"{getattr(logits, 'shape', '?')}, expected float32 ({rows}, {num_classes})")
    if not np.isfinite(logits).all():
        raise OutputInvalid("nonfinite", f"{path.name} holds NaN or infinite values")
    return logits


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
