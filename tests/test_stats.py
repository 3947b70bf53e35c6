"""The paper's statistics: Wilson and t intervals against independent references, and the
per-cycle / overall aggregates at their edges."""

from __future__ import annotations

import math
import random

import pytest
from scipy import stats as scipy_stats

from orchestrator.report.records import CandidateRecord, RecordError
from orchestrator.report.stats import (
    CORPUS_FROM_LOG,
    CORPUS_INITIAL_PLUS_SELECTED,
    CORPUS_SELECTED_ONLY,
    cycle_stats,
    summarize_experiment,
    t_mean_interval,
    wilson_interval,
)

THRESHOLD = 0.40

K_N = sorted({(k, n) for n in (1, 2, 3, 5, 10, 22, 50, 150, 208, 1000, 5000)
              for k in {0, 1, 2, n // 3, n // 2, n - 2, n - 1, n} if 0 <= k <= n})


def wilson_closed_form(k: int, n: int, z: float) -> tuple[float, float]:
    """Wilson (1927), written out: the test's own reference, independent of scipy."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def test_paper_check_values() -> None:
    ci = wilson_interval(22, 50)
    assert ci is not None
    assert (round(22 / 50 * 100, 1), round(ci.low * 100, 1), round(ci.high * 100, 1)) == \
        (44.0, 31.2, 57.7)
    assert round(155 / 208 * 100, 1) == 74.5
    ci = wilson_interval(155, 208)
    assert ci is not None and ci.low < 155 / 208 < ci.high


@pytest.mark.parametrize(("k", "n"), K_N)
def test_wilson_matches_closed_form(k: int, n: int) -> None:
    ci = wilson_interval(k, n)
    assert ci is not None
    low, high = wilson_closed_form(k, n, scipy_stats.norm.ppf(0.975))
    assert ci.low == pytest.approx(max(low, 0.0), abs=1e-12)
    assert ci.high == pytest.approx(min(high, 1.0), abs=1e-12)


def test_wilson_matches_statsmodels() -> None:
    proportion = pytest.importorskip("statsmodels.stats.proportion")
    for k, n in K_N:
        for confidence in (0.90, 0.95, 0.99):
            ci = wilson_interval(k, n, confidence)
            low, high = proportion.proportion_confint(k, n, alpha=1 - confidence, method="wilson")
            assert ci is not None
            assert (ci.low, ci.high) == pytest.approx((low, high), abs=1e-12), (k, n, confidence)


def test_wilson_edges() -> None:
    assert wilson_interval(0, 0) is None
    none_valid = wilson_interval(0, 150)
    assert none_valid is not None and none_valid.low == 0.0
    assert none_valid.high == pytest.approx(0.02497, abs=1e-5)  # [0, 2.5%], not degenerate
    all_valid = wilson_interval(5, 5)
    assert all_valid is not None and all_valid.high == 1.0 and 0.5 < all_valid.low < 0.6
    for k, n in K_N:
        ci = wilson_interval(k, n)
        assert ci is not None and 0.0 <= ci.low <= k / n <= ci.high <= 1.0
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    with pytest.raises(ValueError):
        wilson_interval(-1, 2)


def _samples() -> list[list[float]]:
    rng = random.Random(6)
    samples = [[rng.uniform(0.1, 0.6) for _ in range(n)] for n in (2, 3, 5, 22, 100, 1754)]
    return samples + [[0.2812, 0.4778], [0.1, 0.9, 0.5]]


def test_t_interval_matches_formula_and_statsmodels() -> None:
    weightstats = pytest.importorskip("statsmodels.stats.weightstats")
    for values in _samples():
        n = len(values)
        mean = sum(values) / n
        s = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
        half = scipy_stats.t.ppf(0.975, n - 1) * s / math.sqrt(n)
        ci = t_mean_interval(values)
        assert ci is not None
        assert (ci.low, ci.high) == pytest.approx((mean - half, mean + half), abs=1e-12)
        low, high = weightstats.DescrStatsW(values).tconfint_mean(alpha=0.05)
        assert (ci.low, ci.high) == pytest.approx((low, high), abs=1e-12)


def test_t_interval_edges() -> None:
    assert t_mean_interval([]) is None
    assert t_mean_interval([0.5]) is None  # a single value has no spread: no interval
    ci = t_mean_interval([0.43, 0.43, 0.43])
    assert ci is not None and ci.low == ci.high == pytest.approx(0.43)


def rec(cycle: int, valid: bool, accuracy: float | None = None, selected: bool = False,
        **extra: object) -> CandidateRecord:
    return CandidateRecord(experiment="e", cycle=cycle, valid=valid,
                           accuracy=accuracy if valid else None, selected=selected,
                           **extra)  # type: ignore[arg-type]


def test_cycle_with_no_candidates() -> None:
    c = cycle_stats(1, [], THRESHOLD, corpus_size=0)
    assert (c.n_gen, c.n_valid, c.valid_rate, c.valid_rate_ci) == (0, 0, None, None)
    assert c.accuracy.mean is None and c.accuracy.share_ge_threshold_ci is None
    assert c.notes == ("no candidates",)


def test_cycle_with_none_valid() -> None:
    c = cycle_stats(1, [rec(1, False) for _ in range(4)], THRESHOLD, corpus_size=0)
    assert c.valid_rate == 0.0
    assert c.valid_rate_ci is not None and c.valid_rate_ci.low == 0.0
    assert c.valid_rate_ci.high == pytest.approx(0.4899, abs=1e-4)
    assert c.accuracy.best is None and c.accuracy.mean_ci is None
    assert c.accuracy.share_ge_threshold is None  # denominator: valid models, of which there are 0
    assert c.notes == ("no valid model: no accuracy statistics",)


def test_cycle_with_all_valid() -> None:
    accs = [0.41, 0.45, 0.52, 0.38, 0.45]
    c = cycle_stats(2, [rec(2, True, a) for a in accs], THRESHOLD, corpus_size=0)
    assert c.valid_rate == 1.0 and c.valid_rate_ci is not None and c.valid_rate_ci.high == 1.0
    assert c.accuracy.best == 0.52 and c.accuracy.median == 0.45
    assert c.accuracy.mean == pytest.approx(sum(accs) / 5)
    assert c.accuracy.n_ge_threshold == 4 and c.accuracy.share_ge_threshold == 0.8
    assert c.accuracy.mean_ci is not None and c.notes == ()


def test_cycle_with_a_single_valid_model() -> None:
    c = cycle_stats(3, [rec(3, True, 0.55), rec(3, False), rec(3, False)], THRESHOLD, 0)
    assert c.accuracy.mean == 0.55 and c.accuracy.mean_ci is None
    assert c.accuracy.std is None
    assert c.notes == ("a single valid model: no t interval for the mean",)


def test_threshold_is_inclusive() -> None:
    c = cycle_stats(1, [rec(1, True, 0.40), rec(1, True, 0.3999)], THRESHOLD, 0)
    assert c.accuracy.n_ge_threshold == 1


def test_paper_cycle_one_as_records() -> None:
    records = [rec(1, i < 22, 0.28 if i < 21 else 0.4778) for i in range(50)]
    c = cycle_stats(1, records, THRESHOLD, 0)
    assert c.valid_rate is not None and c.valid_rate_ci is not None
    assert [round(100 * x, 1) for x in (c.valid_rate, c.valid_rate_ci.low, c.valid_rate_ci.high)] \
        == [44.0, 31.2, 57.7]
    assert round(100 * c.accuracy.share_ge_threshold, 2) == 4.55  # type: ignore[operator]


def test_experiment_pools_over_cycles() -> None:
    records = ([rec(1, True, 0.3), rec(1, False), rec(1, True, 0.5, selected=True)]
               + [rec(2, True, 0.45, selected=True), rec(2, True, 0.6, selected=True)])
    exp = summarize_experiment("e", records, THRESHOLD)
    o = exp.overall
    assert (o.n_cycles, o.n_gen, o.n_valid, o.selected) == (2, 5, 4, 3)
    assert o.valid_rate == 0.8
    assert o.mean_cycle_valid_rate == pytest.approx((2 / 3 + 1.0) / 2)
    assert o.accuracy.mean == pytest.approx((0.3 + 0.5 + 0.45 + 0.6) / 4)
    expected = t_mean_interval([0.3, 0.5, 0.45, 0.6])
    assert o.accuracy.mean_ci == expected
    assert [c.corpus_size for c in exp.cycles] == [1, 3]
    assert exp.corpus_source == CORPUS_SELECTED_ONLY


def test_mean_interval_is_cut_to_percent_range() -> None:
    exp = summarize_experiment("e", [rec(1, True, 0.02), rec(1, True, 0.9)], THRESHOLD)
    ci = exp.cycles[0].accuracy.mean_ci
    assert ci is not None and ci.low == 0.0 and ci.high == 1.0
    assert exp.cycles[0].accuracy.mean_ci_clipped
    assert any("cut there" in note for note in exp.cycles[0].notes)


def test_corpus_size_from_initial_corpus_and_from_log() -> None:
    records = [rec(1, True, 0.5, selected=True), rec(2, True, 0.5, selected=True)]
    exp = summarize_experiment("e", records, THRESHOLD, initial_corpus=1698)
    assert [c.corpus_size for c in exp.cycles] == [1699, 1700]
    assert exp.corpus_source == CORPUS_INITIAL_PLUS_SELECTED
    logged = [rec(1, True, 0.5, selected=True, corpus_size=1700),
              rec(2, False, corpus_size=1710)]
    exp = summarize_experiment("e", logged, THRESHOLD, initial_corpus=1698)
    assert [c.corpus_size for c in exp.cycles] == [1700, 1710]
    assert exp.corpus_source == CORPUS_FROM_LOG
    clash = [rec(1, True, 0.5, corpus_size=1700, source="a.jsonl:1"),
             rec(1, False, corpus_size=1701, source="a.jsonl:2")]
    with pytest.raises(RecordError, match=r"a\.jsonl:2: field 'corpus_size'"):
        summarize_experiment("e", clash, THRESHOLD)


def test_novelty_summary_and_unique_selection() -> None:
    records = [
        rec(1, True, 0.5, selected=True, nn_jaccard_train=0.4, near_dup_text_train=False,
            nn_jaccard_gen=0.0, near_dup_text_gen=False, rejection_count=0),
        rec(1, True, 0.5, nn_jaccard_train=0.95, near_dup_text_train=True,
            nn_jaccard_gen=0.2, near_dup_text_gen=False),
        rec(1, True, 0.5, selected=True, nn_jaccard_train=0.5, near_dup_text_train=False,
            nn_jaccard_gen=0.97, near_dup_text_gen=True, rejection_count=1),  # no-novelty ablation
        rec(1, False),
    ]
    c = summarize_experiment("e", records, THRESHOLD).cycles[0]
    n = c.novelty
    assert (n.n_checked, n.n_near_dup, n.selected_near_dup) == (3, 2, 1)
    assert n.near_dup_share == pytest.approx(2 / 3)
    assert n.mean_nn_jaccard_train == pytest.approx((0.4 + 0.95 + 0.5) / 3)
    assert (n.rejection_total, n.rejection_max) == (1, 1)
    assert (c.selected, c.unique_selected) == (2, 1)


def test_novelty_without_fields() -> None:
    n = summarize_experiment("e", [rec(1, True, 0.5)], THRESHOLD).cycles[0].novelty
    assert (n.n_checked, n.near_dup_share, n.mean_nn_jaccard_train, n.rejection_total) == \
        (0, None, None, None)
