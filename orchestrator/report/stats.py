"""The paper's statistics: per-cycle and overall aggregates with 95% intervals.

Proportions (valid rate, share above the accuracy threshold) get Wilson score intervals, means get
t-based intervals (`mean ± t_{0.975, n-1} · s / sqrt(n)`); both come from scipy. Where an interval
does not exist (no observations; a mean of one value) it is `None` and a note says why: nothing is
invented. A t interval of a mean of fractions that reaches beyond [0, 1] is cut there, with a note.
Accuracies and rates are fractions here; tables turn them into percentages.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as scipy_stats

from orchestrator.report.records import CandidateRecord, RecordError

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


def wilson_interval(k: int, n: int, confidence: float = CONFIDENCE) -> Interval | None:
    """Wilson score interval for k successes in n trials; None when n == 0."""
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return None
    ci = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return Interval(float(ci.low), float(ci.high))


def t_mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval | None:
    """t-based interval for the mean; None for fewer than two values (no spread to estimate)."""
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    sem = float(scipy_stats.sem(values))
    if sem == 0.0:  # identical values: the formula gives a zero-width interval
        return Interval(mean, mean)
    low, high = scipy_stats.t.interval(confidence, len(values) - 1, loc=mean, scale=sem)
    return Interval(float(low), float(high))


def clip_to_unit(ci: Interval | None) -> tuple[Interval | None, bool]:
    """A t interval of a mean of fractions, cut to [0, 1]; True when it had to be cut."""
    if ci is None or (ci.low >= 0.0 and ci.high <= 1.0):
        return ci, False
    return Interval(max(ci.low, 0.0), min(ci.high, 1.0)), True


@dataclass(frozen=True)
class AccuracySummary:
    """Accuracy of the valid models of one cycle (or pooled)."""

    n: int
    best: float | None
    mean: float | None
    mean_ci: Interval | None
    mean_ci_clipped: bool  # the t interval reached beyond [0, 1] and was cut there
    median: float | None
    std: float | None
    n_ge_threshold: int
    share_ge_threshold: float | None
    share_ge_threshold_ci: Interval | None


@dataclass(frozen=True)
class NoveltySummary:
    """Novelty fields of the checked candidates (valid ones with a near-duplicate flag)."""

    n_checked: int
    mean_nn_jaccard_train: float | None
    mean_nn_jaccard_gen: float | None
    n_near_dup: int
    near_dup_share: float | None
    selected_near_dup: int  # selected although flagged (possible only without the novelty filter)
    rejection_total: int | None
    rejection_max: int | None


@dataclass(frozen=True)
class CycleStats:
    cycle: int
    n_gen: int
    n_valid: int
    valid_rate: float | None
    valid_rate_ci: Interval | None
    accuracy: AccuracySummary
    selected: int
    corpus_size: int
    novelty: NoveltySummary
    notes: tuple[str, ...]

    @property
    def unique_selected(self) -> int:
        """Selected models not flagged as near-duplicates: the paper's "unique"/"novel" models."""
        return self.selected - self.novelty.selected_near_dup


@dataclass(frozen=True)
class OverallStats:
    n_cycles: int
    n_gen: int
    n_valid: int
    valid_rate: float | None  # pooled: all valid / all generated, Wilson interval
    valid_rate_ci: Interval | None
    mean_cycle_valid_rate: float | None  # mean of the per-cycle rates, t interval over cycles
    mean_cycle_valid_rate_ci: Interval | None
    accuracy: AccuracySummary  # pooled over every valid model of every cycle
    selected: int
    corpus_size: int
    novelty: NoveltySummary
    notes: tuple[str, ...]

    @property
    def unique_selected(self) -> int:
        return self.selected - self.novelty.selected_near_dup


# How the per-cycle corpus size was obtained (tables and the JSON document say which).
CORPUS_FROM_LOG = "log"
CORPUS_INITIAL_PLUS_SELECTED = "initial+selected"
CORPUS_SELECTED_ONLY = "selected"


@dataclass(frozen=True)
class ExperimentStats:
    name: str
    accuracy_threshold: float
    confidence: float
    cycles: tuple[CycleStats, ...]
    overall: OverallStats
    corpus_source: str
    initial_corpus: int | None


def summarize_accuracy(accuracies: Sequence[float], threshold: float,
                       confidence: float = CONFIDENCE) -> AccuracySummary:
    n = len(accuracies)
    n_ge = sum(1 for a in accuracies if a >= threshold)
    mean_ci, clipped = clip_to_unit(t_mean_interval(accuracies, confidence))
    return AccuracySummary(
        n=n,
        best=max(accuracies) if n else None,
        mean=statistics.fmean(accuracies) if n else None,
        mean_ci=mean_ci,
        mean_ci_clipped=clipped,
        median=statistics.median(accuracies) if n else None,
        std=statistics.stdev(accuracies) if n >= 2 else None,
        n_ge_threshold=n_ge,
        share_ge_threshold=n_ge / n if n else None,
        share_ge_threshold_ci=wilson_interval(n_ge, n, confidence),
    )


def summarize_novelty(records: Sequence[CandidateRecord]) -> NoveltySummary:
    checked = [r for r in records if r.valid and
               (r.near_dup_text_train is not None or r.near_dup_text_gen is not None)]
    near_dup = sum(1 for r in checked if r.near_dup_text_train or r.near_dup_text_gen)
    j_train = [r.nn_jaccard_train for r in records if r.valid and r.nn_jaccard_train is not None]
    j_gen = [r.nn_jaccard_gen for r in records if r.valid and r.nn_jaccard_gen is not None]
    rejections = [r.rejection_count for r in records if r.rejection_count is not None]
    return NoveltySummary(
        n_checked=len(checked),
        mean_nn_jaccard_train=statistics.fmean(j_train) if j_train else None,
        mean_nn_jaccard_gen=statistics.fmean(j_gen) if j_gen else None,
        n_near_dup=near_dup,
        near_dup_share=near_dup / len(checked) if checked else None,
        selected_near_dup=sum(1 for r in checked if r.selected and
                              (r.near_dup_text_train or r.near_dup_text_gen)),
        rejection_total=sum(rejections) if rejections else None,
        rejection_max=max(rejections) if rejections else None,
    )


def _accuracy_notes(summary: AccuracySummary) -> list[str]:
    if summary.n == 0:
        return ["no valid model: no accuracy statistics"]
    if summary.n == 1:
        return ["a single valid model: no t interval for the mean"]
    if summary.mean_ci is not None and summary.mean_ci.low == summary.mean_ci.high:
        return ["all valid models have the same accuracy: zero-width mean interval"]
    if summary.mean_ci_clipped:
        return ["the t interval of the mean accuracy reached beyond [0%, 100%] and is cut there"]
    return []


def cycle_stats(cycle: int, records: Sequence[CandidateRecord], threshold: float,
                corpus_size: int, confidence: float = CONFIDENCE) -> CycleStats:
    """Statistics of one cycle's candidates (`records` may be empty)."""
    n_gen = len(records)
    accuracies = [r.accuracy for r in records if r.valid and r.accuracy is not None]
    n_valid = sum(1 for r in records if r.valid)
    summary = summarize_accuracy(accuracies, threshold, confidence)
    notes = ["no candidates"] if n_gen == 0 else _accuracy_notes(summary)
    return CycleStats(
        cycle=cycle,
        n_gen=n_gen,
        n_valid=n_valid,
        valid_rate=n_valid / n_gen if n_gen else None,
        valid_rate_ci=wilson_interval(n_valid, n_gen, confidence),
        accuracy=summary,
        selected=sum(1 for r in records if r.selected),
        corpus_size=corpus_size,
        novelty=summarize_novelty(records),
        notes=tuple(notes),
    )


def _corpus_sizes(by_cycle: dict[int, list[CandidateRecord]],
                  initial_corpus: int | None) -> tuple[dict[int, int], str]:
    """Corpus size after each cycle: from the log's `corpus_size` when every record has it, else the
    cumulative number of selected models (plus the initial corpus when known)."""
    records = [r for rs in by_cycle.values() for r in rs]
    if records and all(r.corpus_size is not None for r in records):
        sizes: dict[int, int] = {}
        for cycle, rs in by_cycle.items():
            first = rs[0]
            for r in rs:
                if r.corpus_size != first.corpus_size:
                    raise RecordError(f"{r.source}: field 'corpus_size' is {r.corpus_size} but "
                                      f"{first.source} gives {first.corpus_size} for the same "
                                      f"cycle")
            sizes[cycle] = int(first.corpus_size)  # type: ignore[arg-type]
        return sizes, CORPUS_FROM_LOG
    running = initial_corpus or 0
    sizes = {}
    for cycle in sorted(by_cycle):
        running += sum(1 for r in by_cycle[cycle] if r.selected)
        sizes[cycle] = running
    return sizes, CORPUS_SELECTED_ONLY if initial_corpus is None else CORPUS_INITIAL_PLUS_SELECTED


def summarize_experiment(name: str, records: Sequence[CandidateRecord], threshold: float,
                         initial_corpus: int | None = None,
                         confidence: float = CONFIDENCE) -> ExperimentStats:
    """Per-cycle and overall statistics of one experiment's candidate records."""
    by_cycle: dict[int, list[CandidateRecord]] = {}
    for record in records:
        by_cycle.setdefault(record.cycle, []).append(record)
    corpus, corpus_source = _corpus_sizes(by_cycle, initial_corpus)
    cycles = tuple(cycle_stats(c, by_cycle[c], threshold, corpus[c], confidence)
                   for c in sorted(by_cycle))

    rates = [c.valid_rate for c in cycles if c.valid_rate is not None]
    accuracies = [r.accuracy for r in records if r.valid and r.accuracy is not None]
    pooled = summarize_accuracy(accuracies, threshold, confidence)
    n_gen = len(records)
    n_valid = sum(1 for r in records if r.valid)
    notes = _accuracy_notes(pooled)
    rate_ci, rate_ci_clipped = clip_to_unit(t_mean_interval(rates, confidence))
    if len(rates) < 2:
        notes.append("fewer than two cycles: no t interval for the mean per-cycle valid rate")
    if rate_ci_clipped:
        notes.append("the t interval of the mean per-cycle valid rate reached beyond [0%, 100%] "
                     "and is cut there")
    overall = OverallStats(
        n_cycles=len(cycles),
        n_gen=n_gen,
        n_valid=n_valid,
        valid_rate=n_valid / n_gen if n_gen else None,
        valid_rate_ci=wilson_interval(n_valid, n_gen, confidence),
        mean_cycle_valid_rate=statistics.fmean(rates) if rates else None,
        mean_cycle_valid_rate_ci=rate_ci,
        accuracy=pooled,
        selected=sum(1 for r in records if r.selected),
        corpus_size=cycles[-1].corpus_size if cycles else (initial_corpus or 0),
        novelty=summarize_novelty(records),
        notes=tuple(notes),
    )
    return ExperimentStats(name=name, accuracy_threshold=threshold, confidence=confidence,
                           cycles=cycles, overall=overall, corpus_source=corpus_source,
                           initial_corpus=initial_corpus)
