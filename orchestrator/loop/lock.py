"""One `nasloop cycle` per workspace: a second one refuses instead of corrupting the first."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from orchestrator.loop.errors import CycleError

LOCK_FILE = "nasloop.lock"


@contextmanager
def workspace_lock(workdir: Path) -> Iterator[None]:
    """Hold the workspace's lock file (flock) for the duration; CycleError if another process has it."""
    workdir.mkdir(parents=True, exist_ok=True)
    handle: TextIO = (workdir / LOCK_FILE).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise CycleError(f"another nasloop cycle is running on {workdir} (it holds {LOCK_FILE}); "
                         "wait for it to finish or stop it first") from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
