"""The contract between the host and a candidate container: a job file in, result files out.

The host writes one job (`TrainJob`, `PredictJob` or `CheckJob`) to `/job/job.json`, mounts the
candidate and the phase's data read-only, and reads back the files named here. Every file a runner
writes is candidate-influenced: the host reads it with size and depth bounds and validates it
(`orchestrator.evaluation.outputs`), and it never decides an outcome alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# Where a container sees its inputs and writes its outputs. NASLOOP_SANDBOX_ROOT moves all three
# under one directory, for running the runners outside a container on purpose (the GPU check,
# `bench/gpu_check.py`, on a machine without Docker); the host never sets it for a candidate.
# The host mounts at the CONTAINER_* paths; the runners read JOB_DIR, DATA_DIR and OUT_DIR.
CONTAINER_JOB_DIR, CONTAINER_DATA_DIR, CONTAINER_OUT_DIR = "/job", "/data", "/out"
_ROOT = os.environ.get("NASLOOP_SANDBOX_ROOT", "").rstrip("/")
JOB_DIR = _ROOT + CONTAINER_JOB_DIR
DATA_DIR = _ROOT + CONTAINER_DATA_DIR
OUT_DIR = _ROOT + CONTAINER_OUT_DIR
CANDIDATE_FILE = "candidate.py"
JOB_FILE = "job.json"
TRAIN_IMAGES = "train_images.npy"
TRAIN_LABELS = "train_labels.npy"
PREDICT_IMAGES = "predict_images.npy"
# Output files. The training and check phases write the network's state (`torch.nn.Module.state_dict`,
# every parameter and buffer) as safetensors; the prediction phase writes float32 logits as .npy.
WEIGHTS_FILE = "weights.safetensors"
LOGITS_FILE = "logits.npy"
TRAIN_REPORT_FILE = "train.json"
CHECK_REPORT_FILE = "check.json"
STATUS_FILE = "status.json"

# The failure kinds a runner can report about its candidate, each by its own exit status. The host
# reads the kind from the exit status alone (a candidate can fake its own failure, never a success
# or an infrastructure fault); `status.json` only carries the error text. The host owns the other
# kinds (syntax, contract on the source, timeout, oom by the kernel, crash, missing/invalid output,
# nonfinite, suspect, infra).
RUNNER_FAILURE_EXITS = {"contract": 10, "import": 11, "instantiate": 12, "forward": 13,
                        "params_over_budget": 14, "oom": 15, "crash": 16, "protocol": 17}
RUNNER_FAILURES = tuple(RUNNER_FAILURE_EXITS)


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


JOB_KINDS = (TrainJob, PredictJob, CheckJob)
Job = TrainJob | PredictJob | CheckJob


@dataclass(frozen=True)
class TrainReport:
    """`train.json`: what the training runner counted (candidate-side data, never a score)."""

    params: int
    learn_seconds: float


@dataclass(frozen=True)
class CheckReport:
    """`check.json`: the parameter count the check runner took."""

    params: int


@dataclass(frozen=True)
class RunnerStatus:
    """`status.json`: the runner's error text for a candidate failure (its kind is the exit status)."""

    failure: str  # one of RUNNER_FAILURES
    error: str
