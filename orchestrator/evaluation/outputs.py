"""Host-side reading of everything a candidate container wrote: the one place where its files
become typed values.

Only data crosses the boundary: a regular file (no symlink, FIFO or device) under a size cap,
read without unpickling: `.npy` with `allow_pickle=False` and an exact shape, dtype and finite
values; safetensors by its JSON header; the runner's small JSON reports as the dataclasses of
`contracts.sandbox`, field types checked.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import typing
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from safetensors import safe_open

from contracts.sandbox import RUNNER_FAILURES, RunnerStatus

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


R = TypeVar("R")


def read_report(path: Path, cls: type[R]) -> R:
    """A runner's JSON report as `cls`: exactly its fields, each of its declared type."""
    data = read_json(path)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    if sorted(data) != sorted(names):
        raise OutputInvalid("invalid_output", f"{path.name} has fields {sorted(data)}, expected {sorted(names)}")
    for name in names:
        value, expected = data[name], hints[name]
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool) if expected is float
              else type(value) is expected)
        if not ok:
            raise OutputInvalid("invalid_output", f"{path.name}: {name} is not a {expected.__name__}")
    return cls(**data)


def read_status(path: Path) -> RunnerStatus | None:
    """The runner's account of a candidate failure, if it wrote a well-formed one naming a kind a
    runner may report (never an infrastructure failure)."""
    try:
        status = read_report(path, RunnerStatus)
    except OutputInvalid:
        return None
    return status if status.failure in RUNNER_FAILURES else None


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
