"""The evaluation spec: a recorded protocol, from which every container job and limit is derived.

A protocol holds everything that determines an outcome and a score (data split, training settings,
seeds, the parameter budget, the container limits), and is recorded with every result by name and
the hash of all its fields (`nasloop-eval-v2:1a2b3c4d5e6f`). `EvalProtocol` (train, then predict)
and `CheckProtocol` (the validity checks alone) each derive their phases' job files, commands and
limits from their own fields, so what ran is exactly what was recorded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from contracts.sandbox import CheckJob, PredictJob, TrainJob
from orchestrator.config import EvaluationConfig
from orchestrator.containers.hardened import Limits
from orchestrator.data import PreparedDataset

EVAL_PROTOCOL_NAME = "nasloop-eval-v2"
CHECK_PROTOCOL_NAME = "nasloop-check-v2"
# Every phase runs `python3 -m sandbox.serve PHASE DEVICE`: it prepares what the phase needs, then
# takes the job from /job (already there for a container started cold, handed over for a warm one).
PHASES = ("train", "predict", "check")


class RecordedProtocol:
    """A protocol is recorded by name and the hash of all its fields (`recorded_fields`)."""

    name: str

    def recorded_fields(self) -> dict[str, object]:
        return asdict(self)  # type: ignore[call-overload]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.recorded_fields(), sort_keys=True).encode()).hexdigest()

    @property
    def id(self) -> str:
        return f"{self.name}:{self.sha256[:12]}"


def _limits(config: EvaluationConfig, timeout_s: float) -> Limits:
    return Limits(timeout_s=timeout_s, memory=config.memory, cpus=config.cpus, pids=config.pids_limit,
                  tmpfs_size=config.tmpfs_size, max_output_bytes=config.max_output_bytes)


@dataclass(frozen=True)
class EvalProtocol(RecordedProtocol):
    """Train for one epoch on the training split, then predict the test and hold-out images."""

    dataset: str
    dataset_source: str
    n_train: int
    n_holdout: int
    n_test: int
    split_id: str
    in_shape: list[int]
    num_classes: int
    prm: dict[str, float]
    param_budget: int
    buffer_allowance: int
    suspect_gap: float
    batch_size: int
    predict_batch_size: int
    epochs: int
    seed: int
    crop_padding: int
    horizontal_flip: bool
    mean: list[float]
    std: list[float]
    device: str
    max_source_bytes: int
    train_limits: Limits
    predict_limits: Limits
    name: str = EVAL_PROTOCOL_NAME

    def train_job(self) -> TrainJob:
        return TrainJob(in_shape=self.in_shape, num_classes=self.num_classes, prm=self.prm,
                        param_budget=self.param_budget, batch_size=self.batch_size, seed=self.seed,
                        crop_padding=self.crop_padding, horizontal_flip=self.horizontal_flip, mean=self.mean,
                        std=self.std, device=self.device, threads=self.train_limits.threads)

    def predict_job(self) -> PredictJob:
        return PredictJob(in_shape=self.in_shape, num_classes=self.num_classes, prm=self.prm, seed=self.seed,
                          mean=self.mean, std=self.std, device=self.device, threads=self.predict_limits.threads,
                          batch_size=self.predict_batch_size)


def make_protocol(config: EvaluationConfig, dataset: PreparedDataset) -> EvalProtocol:
    meta = dataset.meta
    return EvalProtocol(
        dataset=meta.dataset, dataset_source=meta.source, n_train=meta.n_train, n_holdout=meta.n_holdout,
        n_test=meta.n_test, split_id=meta.split_id, in_shape=meta.in_shape, num_classes=meta.num_classes,
        prm=config.hyperparameters, param_budget=config.param_budget, buffer_allowance=config.buffer_allowance,
        suspect_gap=config.suspect_gap, batch_size=config.batch_size,
        predict_batch_size=config.predict_batch_size, epochs=1, seed=config.seed,
        crop_padding=config.crop_padding, horizontal_flip=config.horizontal_flip, mean=meta.mean, std=meta.std,
        device=config.device, max_source_bytes=config.max_source_bytes,
        train_limits=_limits(config, config.train_timeout_s), predict_limits=_limits(config, config.predict_timeout_s),
    )


@dataclass(frozen=True)
class CheckProtocol(RecordedProtocol):
    """The validity checks alone, at one input shape: what `valid` means without training."""

    in_shape: list[int]
    num_classes: int
    prm: dict[str, float]
    param_budget: int
    buffer_allowance: int
    seed: int
    device: str
    max_source_bytes: int
    limits: Limits
    name: str = CHECK_PROTOCOL_NAME

    def recorded_fields(self) -> dict[str, object]:
        """All fields but the CPU share: it cannot change whether a program passes the checks, and a
        profile's `cpus` is capped to each machine's, so corpus checks stay comparable across machines."""
        fields = asdict(self)
        del fields["limits"]["cpus"]
        return fields

    def job(self) -> CheckJob:
        return CheckJob(in_shape=self.in_shape, num_classes=self.num_classes, prm=self.prm,
                        param_budget=self.param_budget, seed=self.seed, device=self.device,
                        threads=self.limits.threads)


def make_check_protocol(config: EvaluationConfig, in_shape: list[int], num_classes: int) -> CheckProtocol:
    return CheckProtocol(in_shape=list(in_shape), num_classes=num_classes, prm=config.hyperparameters,
                         param_budget=config.param_budget, buffer_allowance=config.buffer_allowance,
                         seed=config.seed, device=config.device,
                         max_source_bytes=config.max_source_bytes, limits=_limits(config, config.check_timeout_s))


def phase_command(phase: str, device: str) -> list[str]:
    assert phase in PHASES, phase
    return ["python3", "-m", "sandbox.serve", phase, device]
