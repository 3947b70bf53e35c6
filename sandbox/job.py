"""The job contract between the host and a sandbox container (JSON file in, files out).

Standard library only: the orchestrator imports this module too.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

# Where a container sees its inputs and writes its outputs.
JOB_DIR = "/job"
DATA_DIR = "/data"
OUT_DIR = "/out"
CANDIDATE_FILE = "candidate.py"
CHECK_FILE = "check.json"
JOB_FILE = "job.json"
WEIGHTS_FILE = "weights.safetensors"
LOGITS_FILE = "logits.npy"
STATUS_FILE = "status.json"
TRAIN_IMAGES = "train_images.npy"
TRAIN_LABELS = "train_labels.npy"
PREDICT_IMAGES = "predict_images.npy"

# Failure kinds a sandbox runner may report about its candidate (the host owns the others:
# syntax, contract, timeout, oom by the kernel, crash, missing/invalid output, nonfinite, infra).
RUNNER_FAILURES = ("contract", "import", "instantiate", "forward", "params_over_budget", "oom", "crash")
# Exit status of a runner that wrote a status file about a candidate failure.
CANDIDATE_FAILED_EXIT = 3


@dataclass(frozen=True)
class TrainJob:
    in_shape: list[int]  # [1, C, H, W]
    num_classes: int
    prm: dict[str, float]
    param_budget: int
    batch_size: int
    seed: int
    crop_padding: int
    horizontal_flip: bool
    mean: list[float]  # per channel, of [0, 1]-scaled pixels
    std: list[float]
    device: str  # "cpu" or "cuda"
    threads: int


@dataclass(frozen=True)
class PredictJob:
    in_shape: list[int]
    num_classes: int
    prm: dict[str, float]
    seed: int
    mean: list[float]
    std: list[float]
    device: str
    threads: int
    batch_size: int


@dataclass(frozen=True)
class CheckJob:
    """The validity checks alone (no data, no training): contract, instantiation, budget, forward."""

    in_shape: list[int]
    num_classes: int
    prm: dict[str, float]
    param_budget: int
    seed: int
    device: str
    threads: int


Job = TrainJob | PredictJob | CheckJob


def write_job(job: Job, path: Path) -> None:
    path.write_text(json.dumps({"kind": type(job).__name__, **asdict(job)}, indent=1))


def read_job(path: Path) -> Job:
    data = json.loads(Path(path).read_text())
    kind = data.pop("kind")
    cls = {"TrainJob": TrainJob, "PredictJob": PredictJob, "CheckJob": CheckJob}[kind]
    return cls(**data)
