"""Read-only views of the experiment database: the per-candidate export and the status of experiments.

Used by `nasloop export`, `nasloop status`, the reports and the dashboard; nothing here writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from orchestrator.config import Ablations
from orchestrator.store.schema import Candidate, Cycle, Experiment

# The paper's per-candidate log fields, in order (the export adds provenance fields after them).
EXPORT_FIELDS = ("experiment", "cycle", "candidate", "valid", "failure", "accuracy", "holdout_accuracy", "params",
                 "nn_jaccard_train", "near_dup_text_train", "nn_jaccard_gen", "near_dup_text_gen",
                 "rejection_count", "selected", "code_sha256")


def export_rows(session: Session, experiments: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """One record per candidate in the paper's per-candidate log format (plus provenance fields)."""
    query = (select(Candidate, Cycle, Experiment).join(Cycle, Candidate.cycle_id == Cycle.id)
             .join(Experiment, Cycle.experiment_id == Experiment.id)
             .order_by(Experiment.name, Cycle.index, Candidate.sample_index))
    if experiments:
        query = query.where(Experiment.name.in_(experiments))
    for candidate, cycle, experiment in session.execute(query):
        yield {
            "experiment": experiment.name, "cycle": cycle.index, "candidate": candidate.sample_index,
            "valid": candidate.valid, "failure": None if candidate.valid else candidate.outcome,
            "accuracy": candidate.accuracy, "holdout_accuracy": candidate.holdout_accuracy,
            "params": candidate.params, "nn_jaccard_train": candidate.nn_jaccard_train,
            "near_dup_text_train": candidate.near_dup_text_train, "nn_jaccard_gen": candidate.nn_jaccard_gen,
            "near_dup_text_gen": candidate.near_dup_text_gen, "rejection_count": candidate.rejection_count,
            "selected": bool(candidate.selected), "code_sha256": candidate.code_sha256,
            "nearest_train": candidate.nearest_train, "selection_reason": candidate.selection_reason,
            "corpus_size": cycle.corpus_size, "weights_elements": candidate.weights_elements,
            "holdout_gap": _gap(candidate.accuracy, candidate.holdout_accuracy),
            "train_seconds": candidate.train_seconds, "predict_seconds": candidate.predict_seconds,
            "gpu": candidate.gpu, "node": candidate.node, "protocol": candidate.protocol, "image": candidate.image,
        }


def _gap(accuracy: float | None, holdout_accuracy: float | None) -> float | None:
    """Test minus private hold-out accuracy, as `EvaluationResult.holdout_gap` gives it."""
    return None if accuracy is None or holdout_accuracy is None else round(accuracy - holdout_accuracy, 6)


def experiment_names(session: Session) -> list[str]:
    return list(session.scalars(select(Experiment.name).order_by(Experiment.name)))


@dataclass(frozen=True)
class CycleStatus:
    cycle: int
    phase: str
    generated: int | None
    evaluated: int
    valid: int | None
    selected: int | None
    corpus_size: int | None
    finetune_loss: float | None
    adapter_in: str | None
    adapter_out: str | None
    timings: dict[str, float]


@dataclass(frozen=True)
class ExperimentStatus:
    experiment: str
    profile: str
    config_sha256: str
    code_version: str
    ablations: str  # "full" or the ablations joined by "+"
    cycles: list[CycleStatus]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ablations_of(experiment: Experiment) -> Ablations:
    return Ablations(experiment.no_novelty, experiment.no_threshold, experiment.no_iteration)


def experiment_status(session: Session) -> list[ExperimentStatus]:
    """Every experiment with its cycles, phases and counts, by name."""
    evaluated = {cycle_id: count for cycle_id, count in session.execute(
        select(Candidate.cycle_id, func.count()).where(Candidate.outcome.is_not(None)).group_by(Candidate.cycle_id))}
    return [ExperimentStatus(
        experiment=e.name, profile=e.profile, config_sha256=e.config_sha256, code_version=e.code_version,
        ablations=ablations_of(e).label,
        cycles=[CycleStatus(cycle=c.index, phase=c.phase, generated=c.n_generated, evaluated=evaluated.get(c.id, 0),
                            valid=c.n_valid, selected=c.n_selected, corpus_size=c.corpus_size,
                            finetune_loss=c.finetune_loss, adapter_in=c.adapter_in, adapter_out=c.adapter_out,
                            timings=dict(c.timings or {}))
                for c in e.cycles])
        for e in session.scalars(select(Experiment).order_by(Experiment.name))]
