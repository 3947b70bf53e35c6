"""The dashboard's read-only queries: plain, JSON-ready dicts, the same for a page and its /api endpoint.

Statistics are `nasloop report`'s: the rows of `store.readers.export_rows`, parsed into report records,
through `report.stats.summarize_experiment` and `report.tables`. While a cycle runs, candidates not yet
evaluated are left out of the statistics (and counted as `pending`); once every cycle is done the
numbers are exactly `nasloop report --json`'s. Nothing here writes.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from orchestrator.dashboard.diff import side_by_side
from orchestrator.report import tables
from orchestrator.report.document import stats_document
from orchestrator.report.records import CandidateRecord, RecordError, parse_record
from orchestrator.report.stats import ExperimentStats, summarize_experiment
from orchestrator.store.names import parse_candidate_name
from orchestrator.store.readers import ExperimentStatus, experiment_status, export_rows
from orchestrator.store.schema import Adapter, Candidate, Cycle, Experiment, Program

# The cycle page's columns that can be sorted, in display order.
SORTABLE = ("candidate", "outcome", "accuracy", "holdout_accuracy", "params", "weights_elements",
            "nn_jaccard_train", "nn_jaccard_gen", "rejection_count", "selected", "train_seconds",
            "predict_seconds", "learn_seconds")
# The cycle page's outcome filter: these, or one failure kind.
ALL, VALID, FAILED, PENDING = "all", "ok", "failed", "pending"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def table_dict(table: tables.Table) -> dict[str, Any]:
    return {"caption": table.caption, "headers": list(table.headers), "rows": [list(r) for r in table.rows],
            "total": None if table.total is None else list(table.total), "notes": list(table.notes)}


def _experiment(session: Session, name: str) -> Experiment | None:
    return session.scalar(select(Experiment).where(Experiment.name == name))


def _threshold(experiment: Experiment) -> float:
    return float(experiment.config["selection"]["accuracy_threshold"])


# --- experiments ---------------------------------------------------------------------------------


def _overview(e: Experiment, status: ExperimentStatus) -> dict[str, Any]:
    last = status.cycles[-1] if status.cycles else None
    return {
        "experiment": e.name, "profile": e.profile, "ablations": status.ablations,
        "config_sha256": e.config_sha256, "code_version": e.code_version, "created_at": _iso(e.created_at),
        "seed_sha256": e.seed_sha256, "seed_programs": None if e.seed_program_ids is None else len(e.seed_program_ids),
        "cycles": len(status.cycles), "cycles_done": sum(1 for c in status.cycles if c.phase == "done"),
        "current_cycle": None if last is None else last.cycle, "phase": "created" if last is None else last.phase,
        "generated": sum(c.generated or 0 for c in status.cycles),
        "evaluated": sum(c.evaluated for c in status.cycles),
        "selected": sum(c.selected or 0 for c in status.cycles),
    }


def experiments(session: Session) -> list[dict[str, Any]]:
    """Every experiment: profile, ablations, configuration hash, cycles done and the phase now."""
    rows = {e.name: e for e in session.scalars(select(Experiment))}
    return [_overview(rows[status.experiment], status) for status in experiment_status(session)]


@dataclass(frozen=True)
class Summary:
    """An experiment's statistics over its evaluated candidates."""

    stats: ExperimentStats | None  # None: nothing evaluated yet, or `error`
    accuracies: dict[int, list[float]]  # valid accuracies by cycle, for the figures
    pending: int  # candidates not yet evaluated, left out
    error: str | None  # a record the report cannot use
    version: str  # the experiment's `fingerprint`: figure URLs and caches are keyed by it


def _initial_corpus(experiment: Experiment) -> int | None:
    """The training set before any selection, in the unit of `corpus_size`: the first recorded
    corpus size less the selections up to it (None before any cycle has selected)."""
    first = next((c for c in experiment.cycles if c.corpus_size is not None and c.n_selected is not None), None)
    if first is None:
        return None
    earlier = sum(c.n_selected or 0 for c in experiment.cycles if c.index < first.index)
    return first.corpus_size - first.n_selected - earlier


def fingerprint(session: Session, experiment: Experiment) -> str:
    """Cheap to compute, and different whenever the loop commits something the statistics use: the
    cycles' counts and phases, and aggregates of the candidates' evaluations and selections."""
    counts = session.execute(
        select(func.count(Candidate.id), func.max(Candidate.id), func.count(Candidate.outcome),
               func.count(Candidate.selection_reason), func.sum(Candidate.accuracy),
               func.sum(Candidate.nn_jaccard_train), func.sum(Candidate.nn_jaccard_gen))
        .join(Cycle, Candidate.cycle_id == Cycle.id).where(Cycle.experiment_id == experiment.id)).one()
    cycles = [(c.index, c.phase, c.n_generated, c.n_valid, c.n_selected, c.corpus_size, c.finetune_loss,
               c.adapter_out) for c in experiment.cycles]
    return hashlib.sha256(json.dumps([list(counts), cycles], default=str).encode()).hexdigest()[:16]


def summarize(session: Session, experiment: Experiment, version: str) -> Summary:
    rows = list(export_rows(session, [experiment.name]))
    evaluated = [r for r in rows if r["valid"] or r["failure"] is not None]
    pending = len(rows) - len(evaluated)
    accuracies: dict[int, list[float]] = {}
    try:
        records: list[CandidateRecord] = [
            parse_record(r, f"{r['experiment']}/cycle {r['cycle']}/candidate {r['candidate']}") for r in evaluated]
    except RecordError as exc:
        return Summary(None, accuracies, pending, str(exc), version)
    if not records:
        return Summary(None, accuracies, pending, None, version)
    for r in records:
        accuracies.setdefault(r.cycle, [])
        if r.valid and r.accuracy is not None:
            accuracies[r.cycle].append(r.accuracy)
    # With every corpus size recorded the report ignores an initial corpus; give it only when needed,
    # so that a finished experiment's numbers are `nasloop report`'s to the last field.
    initial = None if all(r.corpus_size is not None for r in records) else _initial_corpus(experiment)
    try:
        stats = summarize_experiment(experiment.name, records, _threshold(experiment), initial)
    except RecordError as exc:
        return Summary(None, accuracies, pending, str(exc), version)
    return Summary(stats, accuracies, pending, None, version)


class Summaries:
    """Summaries by experiment and fingerprint: a page polled while nothing changes costs one
    aggregate query, not the whole experiment's statistics."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, str], Summary] = OrderedDict()
        self._lock = threading.Lock()

    def of(self, session: Session, experiment: Experiment) -> Summary:
        key = (experiment.name, fingerprint(session, experiment))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        summary = summarize(session, experiment, key[1])
        with self._lock:
            self._items[key] = summary
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return summary


def experiment(session: Session, name: str, summaries: Summaries) -> dict[str, Any] | None:
    """One experiment: identity, configuration, cycles (phase, counts, timings), Table 2 and novelty."""
    e = _experiment(session, name)
    if e is None:
        return None
    (status,) = [s for s in experiment_status(session) if s.experiment == name]
    summary = summaries.of(session, e)
    stats = summary.stats
    return {
        **_overview(e, status),
        "no_novelty": e.no_novelty, "no_threshold": e.no_threshold, "no_iteration": e.no_iteration,
        "accuracy_threshold": _threshold(e), "config": e.config,
        "cycle_status": [asdict(c) for c in status.cycles],
        "pending": summary.pending, "error": summary.error, "version": summary.version,
        "table2": None if stats is None else table_dict(tables.table2(stats)),
        "novelty": None if stats is None else table_dict(tables.novelty_table(stats)),
        "stats": None if stats is None else stats_document([stats]),
    }


# --- one cycle -----------------------------------------------------------------------------------


def _outcome_group(outcome: str | None) -> str:
    return PENDING if outcome is None else VALID if outcome == "ok" else FAILED


def candidate_ref(name: str | None) -> dict[str, int] | None:
    """`{"cycle": k, "candidate": s}` when `name` names a candidate (`cycle-k/sample-s`)."""
    parsed = parse_candidate_name(name)
    return None if parsed is None else {"cycle": parsed[0], "candidate": parsed[1]}


def candidate_row(c: Candidate) -> dict[str, Any]:
    """A candidate's numbers and verdicts (the export's field names where the export has the field)."""
    return {
        "candidate": c.sample_index, "outcome": c.outcome, "valid": c.valid,
        "failure": None if c.valid else c.outcome, "accuracy": c.accuracy, "holdout_accuracy": c.holdout_accuracy,
        "params": c.params, "weights_elements": c.weights_elements,
        "nn_jaccard_train": c.nn_jaccard_train, "near_dup_text_train": c.near_dup_text_train,
        "nearest_train": c.nearest_train, "nn_jaccard_gen": c.nn_jaccard_gen,
        "near_dup_text_gen": c.near_dup_text_gen, "nearest_gen": c.nearest_gen,
        "rejection_count": c.rejection_count, "selected": bool(c.selected), "selection_reason": c.selection_reason,
        "train_seconds": c.train_seconds, "predict_seconds": c.predict_seconds, "learn_seconds": c.learn_seconds,
        "gpu": c.gpu, "node": c.node, "code_sha256": c.code_sha256,
        "nearest_train_ref": candidate_ref(c.nearest_train), "nearest_gen_ref": candidate_ref(c.nearest_gen),
    }


def _sorted(rows: list[dict[str, Any]], key: str, descending: bool) -> list[dict[str, Any]]:
    """Sorted by `key`; rows without a value last either way."""
    present = sorted((r for r in rows if r[key] is not None), key=lambda r: r[key], reverse=descending)
    return present + [r for r in rows if r[key] is None]


def _cycle(session: Session, experiment: Experiment, index: int) -> Cycle | None:
    return session.scalar(select(Cycle).where(Cycle.experiment_id == experiment.id, Cycle.index == index))


def cycle(session: Session, name: str, index: int, outcome: str = ALL, sort: str = "candidate",
          descending: bool = False) -> dict[str, Any] | None:
    """One cycle and its candidates, filtered by outcome (`all`, `ok`, `failed`, `pending` or a
    failure kind) and sorted by one of `SORTABLE`."""
    e = _experiment(session, name)
    c = None if e is None else _cycle(session, e, index)
    if e is None or c is None:
        return None
    if sort not in SORTABLE:
        raise ValueError(f"cannot sort by {sort!r}: one of {', '.join(SORTABLE)}")
    every = [candidate_row(x) for x in c.candidates]
    shown = [r for r in every if outcome in (ALL, r["outcome"], _outcome_group(r["outcome"]))]
    return {
        "experiment": e.name, "cycle": c.index, "phase": c.phase, "adapter_in": c.adapter_in,
        "adapter_out": c.adapter_out, "generated": c.n_generated, "valid": c.n_valid, "selected": c.n_selected,
        "corpus_size": c.corpus_size, "finetune_loss": c.finetune_loss, "timings": dict(c.timings or {}),
        "code_version": c.code_version, "started_at": _iso(c.started_at), "finished_at": _iso(c.finished_at),
        "cycles": [x.index for x in e.cycles],
        "outcomes": sorted({r["outcome"] for r in every if r["outcome"] is not None}),
        "filter": outcome, "sort": sort, "descending": descending, "total": len(every),
        "candidates": _sorted(shown, sort, descending),
    }


# --- one candidate -------------------------------------------------------------------------------


def _candidate(session: Session, experiment: Experiment, cycle_index: int, sample: int) -> Candidate | None:
    return session.scalar(select(Candidate).join(Cycle, Candidate.cycle_id == Cycle.id).where(
        Cycle.experiment_id == experiment.id, Cycle.index == cycle_index, Candidate.sample_index == sample))


def _neighbour(session: Session, experiment: Experiment, name: str | None, programs_first: bool
               ) -> dict[str, Any] | None:
    """The code a novelty name refers to: a corpus program or a candidate of the same experiment."""
    if name is None:
        return None
    if programs_first:
        program = session.scalar(select(Program).where(Program.name == name))
        if program is not None:
            return {"kind": "program", "name": name, "source": program.source, "origin": program.origin,
                    "code": program.code, "cycle": None, "candidate": None}
    ref = candidate_ref(name)
    if ref is not None:
        other = _candidate(session, experiment, ref["cycle"], ref["candidate"])
        if other is not None and other.code is not None:
            return {"kind": "candidate", "name": name, "source": experiment.name, "origin": None,
                    "code": other.code, **ref}
    return {"kind": "missing", "name": name, "source": None, "origin": None, "code": None, "cycle": None,
            "candidate": None}


def _comparison(code: str | None, neighbour: dict[str, Any] | None, against: str, jaccard: float | None,
                near_dup: bool | None) -> dict[str, Any]:
    out: dict[str, Any] = {"against": against, "jaccard": jaccard, "near_duplicate": near_dup,
                           "nearest": neighbour, "diff": None, "equal_lines": None, "changed_lines": None,
                           "line_ratio": None}
    if code is not None and neighbour is not None and neighbour["code"] is not None:
        summary = side_by_side(neighbour["code"], code)
        out.update(diff=[r.as_dict() for r in summary.rows], equal_lines=summary.equal_lines,
                   changed_lines=summary.changed_lines, line_ratio=summary.line_ratio)
    return out


def candidate(session: Session, name: str, cycle_index: int, sample: int) -> dict[str, Any] | None:
    """Everything about one candidate: the raw LLM output, the extracted code, the evaluation, the
    containers' log tail, and the diffs against its nearest training program and earlier generation."""
    e = _experiment(session, name)
    c = None if e is None else _candidate(session, e, cycle_index, sample)
    if e is None or c is None:
        return None
    return {
        "experiment": e.name, "cycle": cycle_index, **candidate_row(c),
        "cycle_candidates": [x.sample_index for x in c.cycle.candidates],
        "raw_output": c.raw_output, "finish_reason": c.finish_reason, "completion_tokens": c.completion_tokens,
        "code": c.code, "error": c.error, "log_tail": c.log_tail, "image": c.image, "protocol": c.protocol,
        "artefacts": c.artefacts,
        "comparisons": [
            _comparison(c.code, _neighbour(session, e, c.nearest_train, programs_first=True), "training",
                        c.nn_jaccard_train, c.near_dup_text_train),
            _comparison(c.code, _neighbour(session, e, c.nearest_gen, programs_first=False), "generation",
                        c.nn_jaccard_gen, c.near_dup_text_gen),
        ],
    }


# --- adapters ------------------------------------------------------------------------------------


def _loss_curve(meta: dict[str, Any]) -> list[dict[str, float]]:
    curve = meta.get("loss_curve") or []
    return [p for p in curve if isinstance(p, dict) and "step" in p and "loss" in p]


def adapters(session: Session, name: str) -> dict[str, Any] | None:
    """The adapter lineage: each adapter's parent, corpus (file, hash, size), steps, loss and curve."""
    e = _experiment(session, name)
    if e is None:
        return None
    sampled_by: dict[str, list[int]] = {}
    for c in e.cycles:
        if c.adapter_in is not None:
            sampled_by.setdefault(c.adapter_in, []).append(c.index)
    out = []
    for a in session.scalars(select(Adapter).where(Adapter.experiment_id == e.id).order_by(Adapter.cycle_index)):
        meta = a.meta or {}
        corpus = meta.get("corpus") or {}
        out.append({
            "cycle": a.cycle_index, "path": a.path, "parent": a.parent, "created_at": _iso(a.created_at),
            "sampled_by_cycles": sampled_by.get(a.path, []),
            "corpus": {k: corpus.get(k) for k in ("file", "sha256", "examples", "trained_examples",
                                                  "skipped_over_length")},
            "steps": meta.get("steps"), "train_loss": meta.get("train_loss"),
            "mean_loss_before": meta.get("mean_loss_before"), "mean_loss_after": meta.get("mean_loss_after"),
            "train_seconds": meta.get("train_seconds"), "adapter_sha256": meta.get("adapter_sha256"),
            "base_model": meta.get("base_model"), "device": meta.get("device"),
            "effective_precision": meta.get("effective_precision"), "loss_curve": _loss_curve(meta),
        })
    return {"experiment": e.name, "adapters": out}


# --- experiments compared ------------------------------------------------------------------------


def experiment_names(session: Session) -> list[str]:
    return list(session.scalars(select(Experiment.name).order_by(Experiment.name)))


def named_summaries(session: Session, names: Sequence[str], summaries: Summaries
                    ) -> list[tuple[str, Summary]] | None:
    """Each named experiment's summary (default: every experiment), in order; None when a name is
    unknown."""
    out = []
    for name in list(names) or experiment_names(session):
        e = _experiment(session, name)
        if e is None:
            return None
        out.append((name, summaries.of(session, e)))
    return out


def compare(session: Session, names: Sequence[str], summaries: Summaries) -> dict[str, Any] | None:
    """Table 3 of the named experiments (default: all) and their overall statistics."""
    found = named_summaries(session, names, summaries)
    if found is None:
        return None
    stats = [s.stats for _, s in found if s.stats is not None]
    thresholds = sorted({s.accuracy_threshold for s in stats})
    return {
        "experiments": [name for name, _ in found],
        "available": experiment_names(session),
        "without_statistics": [name for name, s in found if s.stats is None],
        "accuracy_thresholds": thresholds,
        "table3": table_dict(tables.table3(stats)) if stats else None,
        "stats": stats_document(stats) if stats else None,
        "version": hashlib.sha256("".join(s.version for _, s in found).encode()).hexdigest()[:16],
    }

