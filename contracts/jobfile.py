"""Job files: a frozen dataclass as a kind-tagged JSON object, and back.

`write_job(job, path)` writes `{"kind": <class name>, ...fields}`; `read_job(path, kinds)` reads it
back into the one class of `kinds` that the tag names, rebuilding nested dataclass fields, and
raises ValueError (naming the file) for anything else: an unknown kind, a missing or an unknown field.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from contracts.files import atomic_write_text

T = TypeVar("T")


def job_dict(job: Any) -> dict[str, Any]:
    return {"kind": type(job).__name__, **dataclasses.asdict(job)}


def write_job(job: Any, path: Path) -> Path:
    """Write `job` (a dataclass instance) to `path` atomically."""
    return atomic_write_text(Path(path), json.dumps(job_dict(job), indent=1) + "\n")


def build(cls: type[T], data: Any, where: str) -> T:
    """`cls(**data)`, with nested dataclass fields built the same way; ValueError on a bad shape."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)} for {cls.__name__}")
    values = {}
    for name, value in data.items():
        nested = _dataclass_of(hints[name])
        values[name] = build(nested, value, where) if nested is not None and value is not None else value
    try:
        return cls(**values)
    except TypeError as exc:
        raise ValueError(f"{where}: malformed {cls.__name__}: {exc}") from None


def _dataclass_of(hint: Any) -> type | None:
    if dataclasses.is_dataclass(hint):
        return hint  # type: ignore[return-value]
    for arg in typing.get_args(hint):  # X | None
        if dataclasses.is_dataclass(arg):
            return arg  # type: ignore[return-value]
    return None


def read_job(path: Path, kinds: Sequence[type[T]]) -> T:
    """The job in `path`, as the one class of `kinds` its "kind" names."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read the job: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a job is a JSON object")
    kind = data.pop("kind", None)
    by_name = {cls.__name__: cls for cls in kinds}
    if kind not in by_name:
        raise ValueError(f"{path}: unknown job kind {kind!r} (expected {', '.join(by_name)})")
    return build(by_name[kind], data, str(path))
