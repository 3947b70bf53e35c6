"""The executor interface: one candidate's phase in (`PhaseSpec`), what the host observed and where
out (`PhaseRun`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from contracts.files import atomic_write_bytes
from contracts.jobfile import write_job
from contracts.sandbox import JOB_FILE
from orchestrator.containers.hardened import Limits, PhaseOutcome


@dataclass(frozen=True)
class PhaseSpec:
    """One phase of one candidate: the command its container runs, the limits, the read-only data,
    and the files of its job directory."""

    name: str  # "train", "predict" or "check"
    command: list[str]
    limits: Limits
    data: dict[Path, str]  # read-only mounts besides the job directory: host path -> container path
    job_dir: Path  # where the candidate's files and job file end up (mounted read-only)
    files: dict[str, bytes]
    job: object
    labels: dict[str, str]
    gpu: int | None  # the slot's host GPU on this machine; on a cluster the executor picks one (None: CPU)


@dataclass(frozen=True)
class PhaseRun:
    """What the host observed of a phase, and where it ran."""

    outcome: PhaseOutcome
    node: str  # the machine whose Docker daemon ran the container
    gpu: int | None  # the host GPU it was given there (None: CPU)
    seconds: float  # wall time where it ran: its containers started, run, read back and removed


class Executor(Protocol):
    """Runs candidates' phases in nasloop's hardened containers. How many at once is the caller's
    (`evaluation.run.fit_to_machine`: this machine's slots, or the cluster's)."""

    def run(self, spec: PhaseSpec) -> PhaseRun:
        """Run one phase to its end; InfraError when the infrastructure fails (never the candidate's)."""
        ...

    def sweep(self) -> int:
        """Remove the containers that runs which are gone left behind; how many."""
        ...

    def close(self) -> None:
        """Release what the executor holds (containers started ahead, a cluster connection)."""
        ...


def write_job_dir(job_dir: Path, files: dict[str, bytes], job: object) -> None:
    """The candidate's files, then (atomically, last: it is the handover) its job file."""
    job_dir.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        atomic_write_bytes(job_dir / name, data)
    write_job(job, job_dir / JOB_FILE)
