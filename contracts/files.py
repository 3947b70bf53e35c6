"""Files written and read across the trust zones: atomic writes, JSON Lines, content hashes.

Standard library only: the host, the sandbox image and the LLM image all import it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

_GZIP_MAGIC = b"\x1f\x8b"


class JsonlError(ValueError):
    """A JSON Lines file cannot be read (`line` None), or one of its lines is not JSON."""

    def __init__(self, path: Path, line: int | None, message: str) -> None:
        self.path, self.line, self.reason = Path(path), line, message
        super().__init__(f"{self.location}: {message}")

    @property
    def location(self) -> str:
        return str(self.path) if self.line is None else f"{self.path}:{self.line}"


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write `data` to `path` so that readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as fh:
            fh.write(data)
        os.chmod(partial, 0o644)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def jsonl_line(value: Any) -> str:
    """One JSON Lines record (UTF-8 kept as is, newline-terminated)."""
    return json.dumps(value, ensure_ascii=False) + "\n"


def write_jsonl_atomic(path: Path, rows: Iterable[Any]) -> int:
    """Write `rows` as JSON Lines atomically (see `atomic_write_bytes`); returns how many."""
    lines = [jsonl_line(row) for row in rows]
    atomic_write_text(path, "".join(lines))
    return len(lines)


def read_jsonl(path: Path, *, cut_tail_ok: bool = False,
               on_error: Callable[[JsonlError], None] | None = None) -> Iterator[tuple[int, Any]]:
    """(line number, decoded value) of every non-blank line of a JSON Lines file, gzip or plain.

    A line that is not UTF-8 JSON raises JsonlError (FILE:LINE), or is passed to `on_error` and
    skipped. With `cut_tail_ok`, a malformed *last* line is dropped silently: a resumable writer
    killed mid-line leaves exactly that. A truncated gzip stream raises (or reports) at its line.
    """
    path = Path(path)

    def problem(number: int, message: str) -> None:
        error = JsonlError(path, number, message)
        if on_error is None:
            raise error
        on_error(error)

    try:
        with path.open("rb") as raw:
            gzipped = raw.read(2) == _GZIP_MAGIC
        stream = gzip.open(path, "rb") if gzipped else path.open("rb")
    except OSError as exc:
        raise JsonlError(path, None, f"cannot read: {exc.strerror or exc}") from None
    number = 0
    pending: tuple[int, str] | None = None  # a bad line, reported only if another line follows
    try:
        with stream:
            for number, raw_line in enumerate(stream, start=1):
                if not raw_line.strip():
                    continue
                if pending is not None:
                    problem(*pending)
                    pending = None
                try:
                    yield number, json.loads(raw_line.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    pending = (number, f"not UTF-8: {exc.reason}")
                except json.JSONDecodeError as exc:
                    pending = (number, f"invalid JSON: {exc.msg} (column {exc.colno})")
                if pending is not None and not cut_tail_ok:
                    problem(*pending)
                    pending = None
    except (OSError, EOFError, zlib.error) as exc:
        problem(number + 1, f"file is truncated or corrupt, rest of file not read: {exc}")
