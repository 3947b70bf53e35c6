"""What every phase shares: reading the job, choosing the device, writing result files, and turning
a candidate failure into a status file and exit status CANDIDATE_FAILED_EXIT."""

from __future__ import annotations

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
from contracts.sandbox import CANDIDATE_FAILED_EXIT, JOB_DIR, JOB_FILE, OUT_DIR, STATUS_FILE, RunnerStatus
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


def main(job_class: type[J], phase: Callable[[J], None]) -> None:
    """`python -m sandbox.<phase> [JOB.json]`: read the job, run the phase, exit without teardown."""
    job = read_job(Path(sys.argv[1] if len(sys.argv) > 1 else f"{JOB_DIR}/{JOB_FILE}"), [job_class])
    run_phase(lambda: phase(job))


def run_phase(phase: Callable[[], None]) -> None:
    """Run a phase; a candidate failure becomes a status file and exit status 3. Anything else is
    left to crash with a traceback (the host records it as a crash)."""
    try:
        phase()
    except CandidateFailure as failure:
        report_failure(failure.kind, str(failure))
        sys.stderr.write(f"candidate failure ({failure.kind}): {failure}\n")
        sys.stderr.flush()
        os._exit(CANDIDATE_FAILED_EXIT)
    except (MemoryError, torch.cuda.OutOfMemoryError) as exc:
        report_failure("oom", f"{type(exc).__name__}: {exc}")
        os._exit(CANDIDATE_FAILED_EXIT)
    except BaseException as exc:  # the candidate's train_setup/learn/forward raised
        report_failure("crash", "".join(traceback.format_exception(exc)))
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(CANDIDATE_FAILED_EXIT)
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: candidate objects' __del__ hooks must not run after the outputs
    # are written (and cannot change them: the host validates every file).
    os._exit(0)
