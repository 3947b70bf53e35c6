"""The files-in, files-out protocol of the LLM service: one long-lived LLM container per `nasloop cycle`
run (`python -m llm.serve DIR`), driven by job files in a directory of the workspace.

```
DIR/jobs/<name>.json      a job (`contracts.llm` GenerateJob or FinetuneJob, `contracts.jobfile`), written
                          atomically by the host; run in name order, one at a time
DIR/status/<name>.json    the job's `JobStatus`, written atomically by the service: running, done, failed
DIR/service.json          the service's `ServiceState` (what it holds, how often it loaded a model)
DIR/heartbeat             touched by the host every few seconds; the service stops when it goes stale
DIR/stop                  written by the host: the service finishes its pending jobs and exits
```

A job's outputs are exactly those of the one-shot entry points (`python -m llm.generate JOB.json`,
`accelerate launch -m llm.finetune JOB.json`) and so is resuming: a service started on a directory runs
every job that has no final status, and a generation job keeps the samples it had finished. Standard
library only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from contracts.files import atomic_write_text
from contracts.jobfile import build

JOBS_DIR = "jobs"
STATUS_DIR = "status"
STATE_FILE = "service.json"
HEARTBEAT_FILE = "heartbeat"
STOP_FILE = "stop"

# A job's status; the last two are final.
RUNNING, DONE, FAILED = "running", "done", "failed"
FINAL_STATES = (DONE, FAILED)
# Lines the service prints around each job (the host routes the lines between them to the job's log).
JOB_STARTED = "serve: started "
JOB_ENDED = "serve: ended "


@dataclass(frozen=True)
class JobStatus:
    job: str  # the job file's name without .json
    kind: str  # "GenerateJob" or "FinetuneJob" ("unknown" when the file could not be read)
    state: str  # running, done or failed
    exit_code: int | None = None  # as the one-shot entry point's: 0 done, 2 bad job or missing model, 1 else
    error: str | None = None
    started: float | None = None  # time.time()
    finished: float | None = None
    summary: dict[str, Any] = field(default_factory=dict)  # generation.json's content, for a generation job


@dataclass(frozen=True)
class ServiceState:
    state: str  # starting, idle, busy, sleeping or stopped
    pid: int
    model_loads: int  # how often the service loaded a base model (once per run when nothing changes)
    jobs_done: int
    engine: dict[str, Any] | None  # the loaded backend's description, or None
    updated: float


@dataclass(frozen=True)
class ServicePaths:
    root: Path

    @property
    def jobs(self) -> Path:
        return self.root / JOBS_DIR

    @property
    def status(self) -> Path:
        return self.root / STATUS_DIR

    @property
    def state(self) -> Path:
        return self.root / STATE_FILE

    @property
    def heartbeat(self) -> Path:
        return self.root / HEARTBEAT_FILE

    @property
    def stop(self) -> Path:
        return self.root / STOP_FILE

    def job_file(self, name: str) -> Path:
        return self.jobs / f"{name}.json"

    def status_file(self, name: str) -> Path:
        return self.status / f"{name}.json"

    def job_names(self) -> list[str]:
        """Every job file's name, in the order the service runs them (atomic writes' hidden partial
        files are not jobs)."""
        if not self.jobs.is_dir():
            return []
        return sorted(p.stem for p in self.jobs.glob("*.json") if not p.name.startswith("."))


def write_status(paths: ServicePaths, status: JobStatus) -> None:
    atomic_write_text(paths.status_file(status.job), json.dumps(asdict(status), indent=1) + "\n")


def read_status(paths: ServicePaths, name: str) -> JobStatus | None:
    """The job's status, or None while it has none (not started yet)."""
    path = paths.status_file(name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read the job status: {exc}") from None
    return build(JobStatus, data, str(path))


def write_state(paths: ServicePaths, state: ServiceState) -> None:
    atomic_write_text(paths.state, json.dumps(asdict(state), indent=1) + "\n")


def read_state(paths: ServicePaths) -> ServiceState | None:
    try:
        data = json.loads(paths.state.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{paths.state}: cannot read the service state: {exc}") from None
    return build(ServiceState, data, str(paths.state))
