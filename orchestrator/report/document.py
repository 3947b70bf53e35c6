"""The statistics as one JSON-ready document (`nasloop report --json`, `stats.json`).

Rates, shares and accuracies are fractions; intervals are `[low, high]` or null where none exists
(the `notes` of the cycle or experiment say why). The share above the accuracy threshold is named
after the threshold (`share_ge_40` for 0.40, see `accuracy_threshold`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrator.report.tables import share_key
from orchestrator.report.stats import AccuracySummary, ExperimentStats, Interval, NoveltySummary


def _ci(ci: Interval | None) -> list[float] | None:
    return None if ci is None else [ci.low, ci.high]


def _accuracy(acc: AccuracySummary, key: str) -> dict[str, Any]:
    return {
        "best": acc.best,
        "mean": acc.mean,
        "mean_ci": _ci(acc.mean_ci),
        "median": acc.median,
        "std": acc.std,
        f"n_{key.removeprefix('share_')}": acc.n_ge_threshold,
        key: acc.share_ge_threshold,
        f"{key}_ci": _ci(acc.share_ge_threshold_ci),
    }


def _novelty(n: NoveltySummary) -> dict[str, Any]:
    return {
        "n_checked": n.n_checked,
        "mean_nn_jaccard_train": n.mean_nn_jaccard_train,
        "mean_nn_jaccard_gen": n.mean_nn_jaccard_gen,
        "n_near_dup": n.n_near_dup,
        "near_dup_share": n.near_dup_share,
        "selected_near_dup": n.selected_near_dup,
        "rejection_count_total": n.rejection_total,
        "rejection_count_max": n.rejection_max,
    }


def stats_document(exps: Sequence[ExperimentStats]) -> dict[str, Any]:
    """`{"cycles": [...], "overall": [...]}`: one object per cycle and one per experiment."""
    key = share_key(exps[0].accuracy_threshold)
    cycles = []
    overall = []
    for exp in exps:
        for c in exp.cycles:
            cycles.append({
                "experiment": exp.name,
                "cycle": c.cycle,
                "n_gen": c.n_gen,
                "n_valid": c.n_valid,
                "valid_rate": c.valid_rate,
                "valid_rate_ci": _ci(c.valid_rate_ci),
                **_accuracy(c.accuracy, key),
                "selected": c.selected,
                "unique_selected": c.unique_selected,
                "corpus_size": c.corpus_size,
                "novelty": _novelty(c.novelty),
                "notes": list(c.notes),
            })
        o = exp.overall
        overall.append({
            "experiment": exp.name,
            "n_cycles": o.n_cycles,
            "n_gen": o.n_gen,
            "n_valid": o.n_valid,
            "valid_rate": o.valid_rate,
            "valid_rate_ci": _ci(o.valid_rate_ci),
            "mean_cycle_valid_rate": o.mean_cycle_valid_rate,
            "mean_cycle_valid_rate_ci": _ci(o.mean_cycle_valid_rate_ci),
            **_accuracy(o.accuracy, key),
            "selected": o.selected,
            "unique_selected": o.unique_selected,
            "corpus_size": o.corpus_size,
            "corpus_size_source": exp.corpus_source,
            "initial_corpus": exp.initial_corpus,
            "novelty": _novelty(o.novelty),
            "notes": list(o.notes),
        })
    return {
        "accuracy_threshold": exps[0].accuracy_threshold,
        "confidence": exps[0].confidence,
        "experiments": [exp.name for exp in exps],
        "cycles": cycles,
        "overall": overall,
    }
