"""Evaluate one candidate: the contract check, then its container phases, then host scoring.

`Evaluator` runs the full protocol (train, then predict in a fresh container, then score);
`Checker` runs the validity checks alone. Both take their jobs, commands and limits from their
protocol, and both end every candidate in exactly one outcome (`ok` or a failure kind) decided on
the host: the kind of a runner-reported failure comes from the exit status, the budget from the
host's own count of the weights file, the score from validated logits.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import docker

from contracts.files import atomic_write_bytes
from contracts.sandbox import (CANDIDATE_FILE, CHECK_REPORT_FILE, CONTAINER_DATA_DIR, LOGITS_FILE, PREDICT_IMAGES,
                               RUNNER_FAILURE_EXITS, TRAIN_IMAGES, TRAIN_LABELS, TRAIN_REPORT_FILE, WEIGHTS_FILE,
                               CheckReport, TrainReport)
from orchestrator.config import EvaluationConfig
from orchestrator.containers.hardened import PhaseOutcome
from orchestrator.containers.images import ResolvedImage
from orchestrator.data import PreparedDataset
from orchestrator.evaluation.contract import check_contract
from orchestrator.evaluation.outputs import (OutputInvalid, Weights, read_logits, read_report, read_status,
                                             read_weights)
from orchestrator.evaluation.protocol import CheckProtocol, EvalProtocol, make_protocol, phase_command
from orchestrator.evaluation.result import EvaluationResult, Submission
from orchestrator.evaluation.scoring import ScoringSet, accuracies
from orchestrator.executors.base import Executor, PhaseSpec
from orchestrator.executors.local import LocalExecutor

_KIND_OF_EXIT = {code: kind for kind, code in RUNNER_FAILURE_EXITS.items()}


@dataclass
class Evaluator:
    """Evaluates candidates under one protocol, with one image, on one prepared dataset."""

    client: docker.DockerClient
    image: ResolvedImage
    dataset: PreparedDataset
    config: EvaluationConfig
    artefacts_root: Path
    scoring: ScoringSet
    pool_size: int = 1  # containers kept warm per phase and GPU (with `config.warm_containers`)
    # Where the phases run (the caller's to close); default: this machine's daemon, closed with the Evaluator.
    executor: Executor | None = None
    protocol: EvalProtocol = field(init=False)

    def __post_init__(self) -> None:
        self.protocol = make_protocol(self.config, self.dataset)
        self.phases: Executor = self.executor or LocalExecutor(
            self.client, self.image, self.config.warm_containers, self.pool_size, self.artefacts_root / ".warm")

    def close(self) -> None:
        """Remove the containers started ahead that no candidate took."""
        if self.executor is None:
            self.phases.close()

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def evaluate(self, submission: Submission, gpu: int | None = None) -> EvaluationResult:
        """Evaluate one program (on host GPU `gpu` when the protocol's device is cuda). Raises
        InfraError when Docker fails (never the candidate's fault)."""
        p = self.protocol
        gpu = gpu if p.device == "cuda" else None
        result, workdir = _begin(submission, p.id, p.max_source_bytes, self.image, self.artefacts_root)
        if workdir is None:
            return result
        result.artefacts = str(workdir)
        labels = {"org.nasloop.candidate": result.sha256}

        # Phase 1: train on the training split (hold-out and test images never enter).
        outcome = run_phase_of(self.phases, result, PhaseSpec(
            "train", phase_command("train", p.device), p.train_limits,
            {self.dataset.path("train_images"): f"{CONTAINER_DATA_DIR}/{TRAIN_IMAGES}",
             self.dataset.path("train_labels"): f"{CONTAINER_DATA_DIR}/{TRAIN_LABELS}"},
            workdir / "train-job", {CANDIDATE_FILE: submission.source}, p.train_job(), labels, gpu))
        result.train_seconds = round(outcome.seconds, 3)
        result.add_log("train", outcome.log_tail)
        if phase_failed(result, outcome, "train"):
            return result
        try:
            weights = read_weights(outcome.outputs, WEIGHTS_FILE, p.train_limits.max_output_bytes)
            report = read_report(outcome.outputs, TRAIN_REPORT_FILE, TrainReport)
        except OutputInvalid as invalid:
            return result.fail(invalid.kind, str(invalid))
        result.params, result.learn_seconds = report.params, report.learn_seconds
        if over_budget(result, weights, p.param_budget, p.buffer_allowance):
            return result
        atomic_write_bytes(workdir / WEIGHTS_FILE, weights.data)

        # Phase 2: predict the scored images, unlabeled and in a secret order, in a fresh container.
        outcome = run_phase_of(self.phases, result, PhaseSpec(
            "predict", phase_command("predict", p.device), p.predict_limits,
            {self.scoring.predict_images: f"{CONTAINER_DATA_DIR}/{PREDICT_IMAGES}"},
            workdir / "predict-job", {CANDIDATE_FILE: submission.source, WEIGHTS_FILE: weights.data},
            p.predict_job(), labels, gpu))
        result.predict_seconds = round(outcome.seconds, 3)
        result.add_log("predict", outcome.log_tail)
        if phase_failed(result, outcome, "predict"):
            return result
        try:
            logits = read_logits(outcome.outputs, LOGITS_FILE, self.scoring.rows, p.num_classes,
                                 p.predict_limits.max_output_bytes)
        except OutputInvalid as invalid:
            return result.fail(invalid.kind, str(invalid))
        result.accuracy, result.holdout_accuracy = accuracies(logits, self.scoring)
        gap = result.holdout_gap
        if gap is not None and gap > p.suspect_gap:
            return result.fail("suspect", f"test accuracy {result.accuracy:.4f} exceeds the private hold-out's "
                                          f"{result.holdout_accuracy:.4f} by {gap:.4f} > {p.suspect_gap} "
                                          "(it may know the public test set)")
        result.valid = True
        return result


@dataclass
class Checker:
    """Runs the validity checks alone (contract, then one container: import, instantiation,
    parameter budget, dummy forward) at the input shape of `protocol`, and the host's count of the
    fresh network's state. `valid` then means "passes every check before training"; no accuracy."""

    client: docker.DockerClient
    image: ResolvedImage
    protocol: CheckProtocol
    artefacts_root: Path
    warm: bool = True
    pool_size: int = 1
    executor: Executor | None = None  # as the Evaluator's

    def __post_init__(self) -> None:
        self.phases: Executor = self.executor or LocalExecutor(self.client, self.image, self.warm, self.pool_size,
                                                               self.artefacts_root / ".warm")

    def close(self) -> None:
        if self.executor is None:
            self.phases.close()

    def __enter__(self) -> Checker:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def evaluate(self, submission: Submission, gpu: int | None = None) -> EvaluationResult:
        """Check one program. Raises InfraError when Docker fails (never the candidate's fault)."""
        p = self.protocol
        gpu = gpu if p.device == "cuda" else None
        result, workdir = _begin(submission, p.id, p.max_source_bytes, self.image, self.artefacts_root)
        if workdir is None:
            return result
        try:
            outcome = run_phase_of(self.phases, result, PhaseSpec(
                "check", phase_command("check", p.device), p.limits, {}, workdir / "check-job",
                {CANDIDATE_FILE: submission.source}, p.job(), {"org.nasloop.candidate": result.sha256}, gpu))
            result.check_seconds = round(outcome.seconds, 3)
            result.add_log("check", outcome.log_tail)
            if phase_failed(result, outcome, "check"):
                return result
            try:
                weights = read_weights(outcome.outputs, WEIGHTS_FILE, p.limits.max_output_bytes)
                result.params = read_report(outcome.outputs, CHECK_REPORT_FILE, CheckReport).params
            except OutputInvalid as invalid:
                return result.fail(invalid.kind, str(invalid))
            if over_budget(result, weights, p.param_budget, p.buffer_allowance):
                return result
            result.valid = True
            return result
        finally:  # nothing of a check is worth keeping: the outcome is the result
            shutil.rmtree(workdir, ignore_errors=True)


def run_phase_of(executor: Executor, result: EvaluationResult, spec: PhaseSpec) -> PhaseOutcome:
    """Run one of the candidate's phases and record where it ran."""
    run = executor.run(spec)
    result.ran_on(run.node, run.gpu)
    return run.outcome


def over_budget(result: EvaluationResult, weights: Weights, budget: int, allowance: int) -> bool:
    """The host's budget decision, on its own count of the weights file (parameters and buffers)."""
    result.weights_elements = weights.elements
    if weights.elements > budget + allowance:
        result.fail("params_over_budget", f"the weights file holds {weights.elements:,} elements (parameters and "
                                          f"buffers) > budget {budget:,} + {allowance:,} for buffers")
        return True
    return False


def _begin(submission: Submission, protocol_id: str, max_source_bytes: int, image: ResolvedImage,
           artefacts_root: Path) -> tuple[EvaluationResult, Path | None]:
    """The result to fill in and a fresh work directory for it; no directory when the contract check
    on the source alone has already failed it."""
    sha = hashlib.sha256(submission.source).hexdigest()
    result = EvaluationResult(key=submission.key, name=submission.name, sha256=sha, protocol=protocol_id,
                              image=str(image))
    violation = check_contract(submission.source, max_source_bytes)
    if violation:
        return result.fail(violation.kind, violation.message), None
    return result, artefacts_root / f"{sha[:16]}-{uuid.uuid4().hex[:8]}"


def phase_failed(result: EvaluationResult, outcome: PhaseOutcome, phase: str) -> bool:
    """Record the failure of a phase, if it failed; the host decides the kind: from its own
    observations first (time, output caps, the kernel's OOM kill), then from the exit status."""
    if outcome.timed_out:
        result.fail("timeout", f"{phase} phase exceeded its time limit\n{outcome.log_tail}")
    elif outcome.outputs.overflow:
        result.fail("invalid_output", f"{phase} phase: {outcome.outputs.overflow}")
    elif outcome.oom_killed:
        result.fail("oom", f"{phase} phase was killed for exceeding its memory limit\n{outcome.log_tail}")
    elif outcome.exit_code != 0:
        kind = _KIND_OF_EXIT.get(outcome.exit_code or -1)
        if kind is None:
            result.fail("crash", f"{phase} phase exited with status {outcome.exit_code}\n{outcome.log_tail}")
        else:
            status = read_status(outcome.outputs)
            message = status.error if status is not None else f"{phase} phase reported {kind}"
            result.fail(kind, f"{message}\n{outcome.log_tail}".strip(), decided_by="sandbox")
    return result.failure is not None
