"""Evaluate one candidate: the contract check, then its container phases, then host scoring.

`Evaluator` runs the full protocol (train, then predict in a fresh container, then score);
`Checker` runs the validity checks alone. Both take their jobs, commands and limits from their
protocol, and both end every candidate in exactly one outcome (`ok` or a failure kind).
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import docker

from contracts.jobfile import write_job
from contracts.sandbox import (CANDIDATE_FAILED_EXIT, CANDIDATE_FILE, CHECK_REPORT_FILE, DATA_DIR, JOB_DIR, JOB_FILE,
                               LOGITS_FILE, PREDICT_IMAGES, STATUS_FILE, TRAIN_IMAGES, TRAIN_LABELS,
                               TRAIN_REPORT_FILE, WEIGHTS_FILE, CheckReport, TrainReport)
from orchestrator.config import EvaluationConfig
from orchestrator.containers.client import daemon_name
from orchestrator.containers.hardened import Phase, PhaseOutcome, run_phase
from orchestrator.containers.images import ResolvedImage
from orchestrator.data import PreparedDataset
from orchestrator.evaluation.contract import check_contract
from orchestrator.evaluation.outputs import OutputInvalid, read_logits, read_report, read_status, weights_elements
from orchestrator.evaluation.protocol import CheckProtocol, EvalProtocol, make_protocol, phase_command
from orchestrator.evaluation.result import EvaluationResult, Submission
from orchestrator.evaluation.scoring import ScoringSet, accuracies


@dataclass
class Evaluator:
    """Evaluates candidates under one protocol, with one image, on one prepared dataset."""

    client: docker.DockerClient
    image: ResolvedImage
    dataset: PreparedDataset
    config: EvaluationConfig
    artefacts_root: Path
    scoring: ScoringSet
    protocol: EvalProtocol = field(init=False)

    def __post_init__(self) -> None:
        self.protocol = make_protocol(self.config, self.dataset)
        self.node = daemon_name(self.client)

    @property
    def gpu(self) -> int | None:
        return self.config.gpu if self.protocol.device == "cuda" else None

    def evaluate(self, submission: Submission) -> EvaluationResult:
        """Evaluate one program. Raises InfraError when Docker fails (never the candidate's fault)."""
        result, workdir = _begin(submission, self.protocol.id, self.protocol.max_source_bytes, self.image,
                                 self.artefacts_root)
        if workdir is None:
            return result
        result.artefacts, result.gpu, result.node = str(workdir), self.gpu, self.node
        train_job, predict_job = workdir / "train-job", workdir / "predict-job"
        for job_dir in (train_job, predict_job):
            job_dir.mkdir(parents=True)
            (job_dir / CANDIDATE_FILE).write_bytes(submission.source)
        write_job(self.protocol.train_job(), train_job / JOB_FILE)
        labels = {"org.nasloop.candidate": result.sha256}

        # Phase 1: train on the training split (hold-out and test images never enter).
        train_out = workdir / "train-out"
        outcome = run_phase(self.client, Phase(
            "train", self.image.id, phase_command("train"),
            {train_job: JOB_DIR, self.dataset.path("train_images"): f"{DATA_DIR}/{TRAIN_IMAGES}",
             self.dataset.path("train_labels"): f"{DATA_DIR}/{TRAIN_LABELS}"},
            train_out, labels, gpu=self.gpu), self.protocol.train_limits)
        result.train_seconds = round(outcome.seconds, 3)
        result.add_log("train", outcome.log_tail)
        if phase_failed(result, outcome, train_out):
            return result
        max_bytes = self.protocol.train_limits.max_output_bytes
        try:
            result.weights_elements = weights_elements(train_out / WEIGHTS_FILE, max_bytes)
            report = read_report(train_out / TRAIN_REPORT_FILE, TrainReport)
        except OutputInvalid as invalid:
            return result.fail(invalid.kind, str(invalid))
        result.params, result.learn_seconds = report.params, float(report.learn_seconds)

        # Phase 2: predict the scored images, unlabeled and in a secret order, in a fresh container.
        shutil.copyfile(train_out / WEIGHTS_FILE, predict_job / WEIGHTS_FILE, follow_symlinks=False)
        write_job(self.protocol.predict_job(), predict_job / JOB_FILE)
        predict_out = workdir / "predict-out"
        outcome = run_phase(self.client, Phase(
            "predict", self.image.id, phase_command("predict"),
            {predict_job: JOB_DIR, self.scoring.predict_images: f"{DATA_DIR}/{PREDICT_IMAGES}"},
            predict_out, labels, gpu=self.gpu), self.protocol.predict_limits)
        result.predict_seconds = round(outcome.seconds, 3)
        result.add_log("predict", outcome.log_tail)
        if phase_failed(result, outcome, predict_out):
            return result
        try:
            logits = read_logits(predict_out / LOGITS_FILE, self.scoring.rows, self.protocol.num_classes,
                                 self.protocol.predict_limits.max_output_bytes)
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
    protocol: CheckProtocol
    artefacts_root: Path
    gpu: int | None = None

    def __post_init__(self) -> None:
        self.node = daemon_name(self.client)

    def evaluate(self, submission: Submission) -> EvaluationResult:
        """Check one program. Raises InfraError when Docker fails (never the candidate's fault)."""
        result, workdir = _begin(submission, self.protocol.id, self.protocol.max_source_bytes, self.image,
                                 self.artefacts_root)
        if workdir is None:
            return result
        result.gpu, result.node = self.gpu, self.node
        job_dir, out_dir = workdir / "check-job", workdir / "check-out"
        job_dir.mkdir(parents=True)
        (job_dir / CANDIDATE_FILE).write_bytes(submission.source)
        write_job(self.protocol.job(), job_dir / JOB_FILE)
        try:
            outcome = run_phase(self.client, Phase(
                "check", self.image.id, phase_command("check"), {job_dir: JOB_DIR}, out_dir,
                {"org.nasloop.candidate": result.sha256}, gpu=self.gpu), self.protocol.limits)
            result.check_seconds = round(outcome.seconds, 3)
            result.add_log("check", outcome.log_tail)
            if phase_failed(result, outcome, out_dir):
                return result
            try:
                result.params = read_report(out_dir / CHECK_REPORT_FILE, CheckReport).params
            except OutputInvalid as invalid:
                return result.fail(invalid.kind, str(invalid))
            result.valid = True
            return result
        finally:  # nothing of a check is worth keeping: the outcome is the result
            shutil.rmtree(workdir, ignore_errors=True)


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
        status = read_status(out_dir / STATUS_FILE) if outcome.exit_code == CANDIDATE_FAILED_EXIT else None
        if status is None:
            kind, message = "crash", f"{phase} phase exited with status {outcome.exit_code}"
        else:
            kind, message = status.failure, status.error[-2000:]
        result.fail(kind, f"{message}\n{outcome.log_tail}".strip())
    return result.failure is not None
