"""Evaluate candidate programs: contract check, training container, prediction container, host
scoring. Every candidate ends in exactly one outcome: `ok` or a failure kind of FAILURE_KINDS."""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import docker
import numpy as np

from orchestrator.config import EvaluationConfig
from orchestrator.containers import InfraError, Limits, Phase, PhaseOutcome, run_phase
from orchestrator.contract import check_contract
from orchestrator.data import PreparedDataset
from orchestrator.images import ResolvedImage
from orchestrator.scoring import OutputInvalid, ScoringSet, accuracies, read_json, read_logits, weights_elements
from sandbox import job as sj

FAILURE_KINDS = ("syntax", "contract", "import", "instantiate", "forward", "params_over_budget", "timeout",
                 "oom", "crash", "nonfinite", "missing_output", "invalid_output", "infra")
PROTOCOL_NAME = "nasloop-eval-v1"
CHECK_PROTOCOL_NAME = "nasloop-check-v1"

# Where each recorded field comes from. "host": measured or computed by the orchestrator from
# validated data; "sandbox": counted by nasloop's runner inside the candidate's container
# (a hostile candidate could influence it; it never enters a score).
PROVENANCE = {
    "valid": "host", "failure": "host", "accuracy": "host", "holdout_accuracy": "host",
    "train_seconds": "host", "predict_seconds": "host", "check_seconds": "host", "weights_elements": "host",
    "params": "sandbox", "learn_seconds": "sandbox",
}


class RecordedProtocol:
    """A protocol is recorded by name and the hash of all its fields."""

    name: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()  # type: ignore[call-overload]

    @property
    def id(self) -> str:
        return f"{self.name}:{self.sha256[:12]}"


@dataclass(frozen=True)
class Protocol(RecordedProtocol):
    """Everything that determines a score, recorded (by name and hash) with every result."""

    dataset: str
    dataset_source: str
    n_train: int
    n_holdout: int
    n_test: int
    holdout_seed: int
    prm: dict[str, float]
    param_budget: int
    batch_size: int
    epochs: int
    seed: int
    crop_padding: int
    horizontal_flip: bool
    mean: list[float]
    std: list[float]
    device: str
    max_source_bytes: int
    name: str = PROTOCOL_NAME


def make_protocol(config: EvaluationConfig, dataset: PreparedDataset) -> Protocol:
    meta = dataset.meta
    return Protocol(
        dataset=meta.dataset, dataset_source=meta.source, n_train=meta.n_train, n_holdout=meta.n_holdout,
        n_test=meta.n_test, holdout_seed=meta.holdout_seed, prm=config.hyperparameters,
        param_budget=config.param_budget, batch_size=config.batch_size, epochs=1, seed=config.seed,
        crop_padding=config.crop_padding, horizontal_flip=config.horizontal_flip, mean=meta.mean,
        std=meta.std, device=config.device, max_source_bytes=config.max_source_bytes,
    )


@dataclass(frozen=True)
class CheckProtocol(RecordedProtocol):
    """The validity checks alone, at one input shape: what `valid` means without training."""

    in_shape: list[int]
    num_classes: int
    prm: dict[str, float]
    param_budget: int
    seed: int
    device: str
    max_source_bytes: int
    name: str = CHECK_PROTOCOL_NAME


def make_check_protocol(config: EvaluationConfig, in_shape: list[int], num_classes: int) -> CheckProtocol:
    return CheckProtocol(in_shape=list(in_shape), num_classes=num_classes, prm=config.hyperparameters,
                         param_budget=config.param_budget, seed=config.seed, device=config.device,
                         max_source_bytes=config.max_source_bytes)


def _limits(config: EvaluationConfig, timeout_s: float) -> Limits:
    return Limits(timeout_s=timeout_s, memory=config.memory, cpus=config.cpus, pids=config.pids_limit,
                  tmpfs_size=config.tmpfs_size, max_output_bytes=config.max_output_bytes,
                  gpu=config.gpu if config.device == "cuda" else None)


@dataclass
class EvaluationResult:
    path: str
    sha256: str
    valid: bool = False
    failure: str | None = None
    error: str | None = None
    params: int | None = None
    weights_elements: int | None = None
    accuracy: float | None = None
    holdout_accuracy: float | None = None
    train_seconds: float | None = None
    predict_seconds: float | None = None
    check_seconds: float | None = None
    learn_seconds: float | None = None
    protocol: str = ""
    image: str = ""
    artefacts: str | None = None
    provenance: dict[str, str] = field(default_factory=lambda: dict(PROVENANCE))

    def fail(self, kind: str, message: str) -> EvaluationResult:
        assert kind in FAILURE_KINDS, kind
        self.valid, self.failure, self.error = False, kind, message[-2000:]
        return self

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Evaluator:
    """Evaluates candidates under one protocol, with one image, on one prepared dataset."""

    client: docker.DockerClient
    image: ResolvedImage
    dataset: PreparedDataset
    config: EvaluationConfig
    artefacts_root: Path
    scoring: ScoringSet
    protocol: Protocol = field(init=False)

    def __post_init__(self) -> None:
        self.protocol = make_protocol(self.config, self.dataset)

    @property
    def limits(self) -> tuple[Limits, Limits]:
        return _limits(self.config, self.config.train_timeout_s), _limits(self.config, self.config.predict_timeout_s)

    def evaluate(self, source: bytes, path: str) -> EvaluationResult:
        """Evaluate one program. Raises InfraError when Docker fails (never the candidate's fault)."""
        result, workdir = _begin(source, path, self.protocol.id, self.image, self.config, self.artefacts_root)
        if workdir is None:
            return result
        sha = result.sha256
        result.artefacts = str(workdir)
        train_job, predict_job = workdir / "train-job", workdir / "predict-job"
        for job_dir in (train_job, predict_job):
            job_dir.mkdir(parents=True)
            (job_dir / sj.CANDIDATE_FILE).write_bytes(source)
        meta = self.dataset.meta
        threads = max(1, int(self.config.cpus))
        common = dict(in_shape=meta.in_shape, num_classes=meta.num_classes, prm=self.config.hyperparameters,
                      seed=self.config.seed, mean=meta.mean, std=meta.std, device=self.config.device,
                      threads=threads)
        sj.write_job(sj.TrainJob(param_budget=self.config.param_budget, batch_size=self.config.batch_size,
                                 crop_padding=self.config.crop_padding,
                                 horizontal_flip=self.config.horizontal_flip, **common), train_job / sj.JOB_FILE)
        train_limits, predict_limits = self.limits
        labels = {"org.nasloop.candidate": sha}

        # Phase 1: train on the training split (hold-out and test images never enter).
        train_out = workdir / "train-out"
        outcome = run_phase(self.client, Phase(
            "train", self.image.id, ["python3", "-m", "sandbox.train", f"{sj.JOB_DIR}/{sj.JOB_FILE}"],
            {train_job: sj.JOB_DIR, self.dataset.path("train_images"): f"{sj.DATA_DIR}/{sj.TRAIN_IMAGES}",
             self.dataset.path("train_labels"): f"{sj.DATA_DIR}/{sj.TRAIN_LABELS}"},
            train_out, labels), train_limits, threads)
        result.train_seconds = round(outcome.seconds, 3)
        if phase_failed(result, outcome, train_out):
            return result
        try:
            result.weights_elements = weights_elements(train_out / sj.WEIGHTS_FILE, self.config.max_output_bytes)
            report = read_json(train_out / "train.json")
        except OutputInvalid as invalid:
            return result.fail(invalid.kind, str(invalid))
        result.params = _int_or_none(report.get("params"))
        result.learn_seconds = _float_or_none(report.get("learn_seconds"))

        # Phase 2: predict the scored images, unlabeled and in a secret order, in a fresh container.
        shutil.copyfile(train_out / sj.WEIGHTS_FILE, predict_job / sj.WEIGHTS_FILE, follow_symlinks=False)
        sj.write_job(sj.PredictJob(batch_size=self.config.predict_batch_size, **common), predict_job / sj.JOB_FILE)
        predict_out = workdir / "predict-out"
        outcome = run_phase(self.client, Phase(
            "predict", self.image.id, ["python3", "-m", "sandbox.predict", f"{sj.JOB_DIR}/{sj.JOB_FILE}"],
            {predict_job: sj.JOB_DIR, self.scoring.predict_images: f"{sj.DATA_DIR}/{sj.PREDICT_IMAGES}"},
            predict_out, labels), predict_limits, threads)
        result.predict_seconds = round(outcome.seconds, 3)
        if phase_failed(result, outcome, predict_out):
            return result
        try:
            logits = read_logits(predict_out / sj.LOGITS_FILE, self.scoring.rows, meta.num_classes,
                                 self.config.max_output_bytes)
        except OutputInvalid as invalid:
            return result.fail(invalid.kind, str(invalid))
        result.accuracy, result.holdout_accuracy = accuracies(logits, self.scoring)
        result.valid = True
        return result


@dataclass
class Checker:
    """Runs the validity checks alone (contract, then one container: import, instantiation,
    parameter budget, dummy forward) at the input shape of `protocol`. `valid` then means "passes
    every check before training"; no accuracy is measured."""

    client: docker.DockerClient
    image: ResolvedImage
    config: EvaluationConfig
    protocol: CheckProtocol
    artefacts_root: Path

    def evaluate(self, source: bytes, path: str) -> EvaluationResult:
        """Check one program. Raises InfraError when Docker fails (never the candidate's fault)."""
        result, workdir = _begin(source, path, self.protocol.id, self.image, self.config, self.artefacts_root)
        if workdir is None:
            return result
        sha = result.sha256
        job_dir, out_dir = workdir / "check-job", workdir / "check-out"
        job_dir.mkdir(parents=True)
        (job_dir / sj.CANDIDATE_FILE).write_bytes(source)
        threads = max(1, int(self.config.cpus))
        p = self.protocol
        sj.write_job(sj.CheckJob(in_shape=p.in_shape, num_classes=p.num_classes, prm=p.prm,
                                 param_budget=p.param_budget, seed=p.seed, device=p.device, threads=threads),
                     job_dir / sj.JOB_FILE)
        try:
            outcome = run_phase(self.client, Phase(
                "check", self.image.id, ["python3", "-m", "sandbox.check", f"{sj.JOB_DIR}/{sj.JOB_FILE}"],
                {job_dir: sj.JOB_DIR}, out_dir, {"org.nasloop.candidate": sha}),
                _limits(self.config, self.config.check_timeout_s), threads)
            result.check_seconds = round(outcome.seconds, 3)
            if phase_failed(result, outcome, out_dir):
                return result
            try:
                report = read_json(out_dir / sj.CHECK_FILE)
            except OutputInvalid as invalid:
                return result.fail(invalid.kind, str(invalid))
            result.params = _int_or_none(report.get("params"))
            result.valid = True
            return result
        finally:  # nothing of a check is worth keeping: the outcome is the result
            shutil.rmtree(workdir, ignore_errors=True)


def _begin(source: bytes, path: str, protocol_id: str, image: ResolvedImage, config: EvaluationConfig,
           artefacts_root: Path) -> tuple[EvaluationResult, Path | None]:
    """The result to fill in and a fresh work directory for it; no directory when the contract check
    on the source alone has already failed it."""
    sha = hashlib.sha256(source).hexdigest()
    result = EvaluationResult(path=path, sha256=sha, protocol=protocol_id, image=str(image))
    violation = check_contract(source, config.max_source_bytes)
    if violation:
        return result.fail(violation.kind, violation.message), None
    return result, artefacts_root / f"{sha[:16]}-{uuid.uuid4().hex[:8]}"


def phase_failed(result: EvaluationResult, outcome: PhaseOutcome, out_dir: Path) -> bool:
    """Record the failure of a phase, if it failed; the order of checks is the host's own."""
    phase = out_dir.name.removesuffix("-out")
    if outcome.timed_out:
        result.fail("timeout", f"{phase} phase exceeded its time limit\n{outcome.log_tail}")
    elif outcome.output_overflow:
        result.fail("invalid_output", f"{phase} phase: {outcome.output_overflow}")
    elif outcome.oom_killed:
        result.fail("oom", f"{phase} phase was killed for exceeding its memory limit\n{outcome.log_tail}")
    elif outcome.exit_code != 0:
        kind, message = _reported_failure(out_dir)
        if outcome.exit_code != sj.CANDIDATE_FAILED_EXIT or kind is None:
            kind, message = "crash", f"{phase} phase exited with status {outcome.exit_code}"
        result.fail(kind, f"{message}\n{outcome.log_tail}".strip())
    return result.failure is not None


def _reported_failure(out_dir: Path) -> tuple[str | None, str]:
    """The runner's status file; only candidate failure kinds are accepted from inside a container."""
    try:
        status = read_json(out_dir / sj.STATUS_FILE)
    except OutputInvalid:
        return None, ""
    kind = status.get("failure")
    if kind not in sj.RUNNER_FAILURES:
        return None, ""
    return kind, str(status.get("error", ""))[-2000:]


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@contextmanager
def scoring_set(dataset: PreparedDataset, scratch_root: Path) -> Iterator[ScoringSet]:
    """Test and hold-out images in a fresh secret order, written for the prediction containers and
    deleted afterwards. Labels stay in this process."""
    test_images, holdout_images = dataset.array("test_images"), dataset.array("holdout_images")
    images = np.concatenate([test_images, holdout_images])
    permutation = np.random.default_rng(secrets.randbits(128)).permutation(len(images))
    scratch_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="scoring-", dir=scratch_root))
    try:
        path = scratch / sj.PREDICT_IMAGES
        np.save(path, images[permutation], allow_pickle=False)
        path.chmod(0o644)
        yield ScoringSet(path, permutation, np.asarray(dataset.array("test_labels")),
                         np.asarray(dataset.array("holdout_labels")))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def evaluate_many(evaluator: Evaluator | Checker, sources: list[tuple[str, bytes]], jobs: int,
                  on_result: Callable[[EvaluationResult], None] | None = None) -> list[EvaluationResult]:
    """Evaluate (path, source) pairs with an Evaluator (or a Checker), `jobs` at a time, results in
    input order. An infrastructure failure stops the remaining work and is re-raised."""
    lock = threading.Lock()
    stop = threading.Event()

    def one(item: tuple[str, bytes]) -> EvaluationResult:
        path, source = item
        if stop.is_set():
            raise InfraError("stopped after an infrastructure failure")
        try:
            result = evaluator.evaluate(source, path)
        except InfraError:
            stop.set()
            raise
        if on_result:
            with lock:
                on_result(result)
        return result

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(one, item) for item in sources]
        return [f.result() for f in futures]
