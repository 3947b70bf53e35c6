"""Host-side reading of everything a candidate container wrote: the one place where its bytes become
typed values, every read bounded in size and depth.

Only data crosses the boundary, and only as regular files at the top of the phase's output volume
(`containers.hardened.Outputs`, already in memory and capped): `.npy` logits by a strict header
check (no `ast.literal_eval` of candidate text) and an exact shape, dtype and finite values; the
weights by their safetensors header, parsed here with a length cap: allowed dtypes, consistent
offsets, no metadata beyond `{"format": "pt"}`, and the element count the host's budget is decided
on; the runner's small JSON reports as the dataclasses of `contracts.sandbox`, field types and
number ranges checked. Anything else raises OutputInvalid with the candidate's failure kind.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import struct
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from contracts.sandbox import STATUS_FILE, RunnerStatus
from orchestrator.containers.hardened import Outputs

MAX_JSON_BYTES = 64 * 1024
MAX_SAFETENSORS_HEADER = 1 << 20
_INT64 = 1 << 63
# safetensors dtypes a network's state may hold, and their sizes in bytes.
WEIGHT_DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                 "BOOL": 1}
ALLOWED_METADATA = ({}, {"format": "pt"})
_NPY_MAGIC = b"\x93NUMPY"
_NPY_HEADER = re.compile(rb"\{'descr': '<f4', 'fortran_order': False, 'shape': \((\d{1,9}), (\d{1,9})\), \} *\n")


class OutputInvalid(Exception):
    """A candidate's output file is missing or malformed. `kind`: missing_output, invalid_output,
    nonfinite."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def output_file(outputs: Outputs, name: str, max_bytes: int) -> bytes:
    """The bytes of output `name` if it is a regular file within the cap, else OutputInvalid."""
    if name in outputs.irregular:
        raise OutputInvalid("invalid_output", f"{name} is not a regular file")
    data = outputs.files.get(name)
    if data is None:
        raise OutputInvalid("missing_output", f"{name} was not written")
    if len(data) > max_bytes:
        raise OutputInvalid("invalid_output", f"{name} is {len(data):,} bytes, over {max_bytes:,}")
    return data


def parse_json(data: bytes, name: str, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """JSON of at most `max_bytes`; nesting too deep, numbers too long, bad UTF-8: OutputInvalid."""
    if len(data) > max_bytes:
        raise OutputInvalid("invalid_output", f"{name} is {len(data):,} bytes, over {max_bytes:,}")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError, MemoryError) as exc:
        raise OutputInvalid("invalid_output", f"{name} is not JSON: {type(exc).__name__}") from None


R = TypeVar("R")


def read_report(outputs: Outputs, name: str, cls: type[R]) -> R:
    """A runner's JSON report as `cls`: exactly its fields, each of its declared type and in range."""
    data = parse_json(output_file(outputs, name, MAX_JSON_BYTES), name)
    if not isinstance(data, dict):
        raise OutputInvalid("invalid_output", f"{name} is not a JSON object")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    if sorted(data) != sorted(names):
        raise OutputInvalid("invalid_output", f"{name} does not have exactly the fields {sorted(names)}")
    values = {}
    for field in names:
        value, expected = data[field], hints[field]
        if expected is int and type(value) is int and -_INT64 <= value < _INT64:
            values[field] = value
        elif expected is float and type(value) in (int, float) and abs(value) < 1e300 and math.isfinite(value):
            values[field] = float(value)
        elif expected is str and type(value) is str:
            values[field] = value
        else:
            raise OutputInvalid("invalid_output", f"{name}: {field} is not a valid {expected.__name__}")
    return cls(**values)


def read_status(outputs: Outputs) -> RunnerStatus | None:
    """The runner's status file, if well-formed (its text is candidate-side data)."""
    try:
        return read_report(outputs, STATUS_FILE, RunnerStatus)
    except OutputInvalid:
        return None


@dataclass(frozen=True)
class Weights:
    """A validated safetensors file: its bytes and what it holds."""

    data: bytes
    elements: int  # every element of every tensor: parameters and buffers
    tensors: int


def read_weights(outputs: Outputs, name: str, max_bytes: int) -> Weights:
    """Validate a safetensors file by its header (parsed here, bounded) and count its elements."""
    data = output_file(outputs, name, max_bytes)
    bad = lambda why: OutputInvalid("invalid_output", f"{name} is not a valid weights file: {why}")  # noqa: E731
    if len(data) < 8:
        raise bad("shorter than its header length")
    (header_length,) = struct.unpack("<Q", data[:8])
    if header_length > min(MAX_SAFETENSORS_HEADER, len(data) - 8):
        raise bad(f"a {header_length:,}-byte header")
    header = parse_json(data[8:8 + header_length], name, MAX_SAFETENSORS_HEADER)
    if not isinstance(header, dict):
        raise bad("the header is not an object")
    metadata = header.pop("__metadata__", {})
    if metadata not in ALLOWED_METADATA:
        raise bad("metadata beyond {'format': 'pt'} (weights hold tensors and nothing else)")
    body = len(data) - 8 - header_length
    spans: list[tuple[int, int]] = []
    elements = 0
    for key, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"entry {key[:60]!r} is malformed")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in WEIGHT_DTYPES:
            raise bad(f"entry {key[:60]!r} has dtype {str(dtype)[:20]!r}")
        if not (isinstance(shape, list) and len(shape) <= 8
                and all(type(d) is int and 0 <= d < _INT64 for d in shape)):
            raise bad(f"entry {key[:60]!r} has a malformed shape")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
            raise bad(f"entry {key[:60]!r} has malformed offsets")
        count = math.prod(shape)
        begin, end = offsets
        if not 0 <= begin <= end <= body or end - begin != count * WEIGHT_DTYPES[dtype]:
            raise bad(f"entry {key[:60]!r} does not match its data")
        spans.append((begin, end))
        elements += count
    position = 0
    for begin, end in sorted(spans):
        if begin != position:
            raise bad("tensor data overlaps or leaves gaps")
        position = end
    if position != body:
        raise bad("bytes beyond the tensors")
    return Weights(data=data, elements=elements, tensors=len(spans))


def read_logits(outputs: Outputs, name: str, rows: int, num_classes: int, max_bytes: int) -> np.ndarray:
    """float32 logits of exactly (rows, num_classes), finite, from a plain .npy file."""
    data = output_file(outputs, name, max_bytes)
    if data[:6] != _NPY_MAGIC or len(data) < 10:
        raise OutputInvalid("invalid_output", f"{name} is not a .npy file")
    major = data[6]
    size_bytes = 2 if major == 1 else 4 if major in (2, 3) else 0
    if not size_bytes:
        raise OutputInvalid("invalid_output", f"{name} has an unknown .npy version {major}")
    start = 8 + size_bytes
    header_length = int.from_bytes(data[8:start], "little")
    header = data[start:start + header_length]
    match = _NPY_HEADER.fullmatch(header) if header_length <= 4096 else None
    if match is None:
        raise OutputInvalid("invalid_output", f"{name} is not a plain float32 2-d array "
                                              f"(expected float32 ({rows}, {num_classes}))")
    shape = (int(match[1]), int(match[2]))
    payload = data[start + header_length:]
    if shape != (rows, num_classes) or len(payload) != rows * num_classes * 4:
        raise OutputInvalid("invalid_output", f"{name} is float32 {shape}, expected float32 ({rows}, {num_classes})")
    logits = np.frombuffer(payload, dtype="<f4").reshape(shape)
    if not np.isfinite(logits).all():
        raise OutputInvalid("nonfinite", f"{name} holds NaN or infinite values")
    return logits
