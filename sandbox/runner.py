"""What every phase shares: reading the job, choosing the device, writing result files, and turning
a candidate failure into a status file (the error text) and the exit status of its kind."""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import random
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from contracts.jobfile import read_job
from contracts.sandbox import JOB_DIR, JOB_FILE, OUT_DIR, RUNNER_FAILURE_EXITS, STATUS_FILE, RunnerStatus
from sandbox.batches import SecondPass
from sandbox.candidate import CandidateFailure

_ERROR_TAIL = 2000
J = TypeVar("J")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def select_device(name: str, threads: int) -> torch.device:
    torch.set_num_threads(max(1, threads))
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("the job asks for CUDA but no GPU is visible in the container")
        return torch.device("cuda", 0)
    return torch.device("cpu")


def write_output(name: str, report: Any) -> None:
    """One result file in the output directory: a contracts.sandbox dataclass as JSON."""
    Path(OUT_DIR, name).write_text(json.dumps(dataclasses.asdict(report)))


def report_failure(kind: str, message: str) -> None:
    write_output(STATUS_FILE, RunnerStatus(failure=kind, error=message[-_ERROR_TAIL:]))


def no_core_dumps() -> None:
    """Not dumpable: no core file and no piped core helper on the host for this process (on top of
    the container's RLIMIT_CORE = 1). A candidate could turn it back on; the limit stays."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except (OSError, AttributeError):
        pass


def main(job_class: type[J], phase: Callable[[J], None]) -> None:
    """`python -m sandbox.<phase> [JOB.json]`: read the job, run the phase, exit without teardown."""
    no_core_dumps()
    job = read_job(Path(sys.argv[1] if len(sys.argv) > 1 else f"{JOB_DIR}/{JOB_FILE}"), [job_class])
    run_phase(lambda: phase(job))


def run_phase(phase: Callable[[], None]) -> None:
    """Run a phase; a candidate failure becomes a status file and the exit status of its kind; any
    other exception out of the candidate's code is a `crash`."""
    try:
        phase()
    except CandidateFailure as failure:
        _fail(failure.kind, str(failure))
    except SecondPass as exc:
        _fail("protocol", str(exc))
    except (MemoryError, torch.cuda.OutOfMemoryError) as exc:
        _fail("oom", f"{type(exc).__name__}: {exc}")
    except BaseException as exc:  # the candidate's train_setup/learn/forward raised
        _fail("crash", _traceback(exc))
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: candidate objects' __del__ hooks must not run after the outputs
    # are written (and cannot change them: the host validates every file).
    os._exit(0)


def _traceback(exc: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(exc))
    except BaseException:  # a hostile exception whose __str__ raises
        return f"{type(exc).__name__} (its message could not be formatted)"


def _fail(kind: str, message: str) -> None:
    try:
        report_failure(kind, message)
    except BaseException:  # the output volume may be full: the exit status still says the kind
        pass
    sys.stderr.write(f"candidate failure ({kind}): {message[-_ERROR_TAIL:]}\n")
    sys.stderr.flush()
    os._exit(RUNNER_FAILURE_EXITS[kind])
