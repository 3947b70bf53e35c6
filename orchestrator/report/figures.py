"""The paper's figures as matplotlib `Figure`s (object API on the Agg canvas: no pyplot).

Per-cycle curves take an `ExperimentStats`; the quality distribution and the histograms also need
the raw accuracies, given as `{cycle: [accuracy, ...]}` over valid models. Percent on every axis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from orchestrator.report.tables import corpus_header, threshold_label
from orchestrator.report.stats import ExperimentStats, Interval

Accuracies = Mapping[int, Sequence[float]]

DPI = 110
CYCLE_LABEL = "Cycle"
ACCURACY_LABEL = "First-epoch accuracy (%)"


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _pct(values: Sequence[float | None]) -> np.ndarray:
    return np.array([math.nan if v is None else 100 * v for v in values], dtype=float)


def _errors(values: Sequence[float | None], cis: Sequence[Interval | None]) -> np.ndarray:
    """Asymmetric error bars (2, n) in percent; NaN where there is no interval."""
    low, high = [], []
    for value, ci in zip(values, cis):
        if value is None or ci is None:
            low.append(math.nan)
            high.append(math.nan)
        else:
            low.append(100 * (value - ci.low))
            high.append(100 * (ci.high - value))
    return np.array([low, high], dtype=float)


def _cycle_axis(ax: Axes, cycles: Sequence[int]) -> None:
    ax.set_xlabel(CYCLE_LABEL)
    if cycles and len(cycles) <= 25:
        ax.set_xticks(list(cycles))
    ax.grid(True, alpha=0.3)


def _percent_axis(ax: Axes, label: str) -> None:
    ax.set_ylabel(label)
    ax.set_ylim(-2, 102)  # room for markers at 0% and 100%


def _count_axis(ax: Axes, label: str) -> None:
    ax.set_ylabel(label)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _dodge(cycles: Sequence[int], index: int, count: int) -> np.ndarray:
    """Shift series sideways so overlapping error bars of several experiments stay readable."""
    return np.asarray(cycles, dtype=float) + 0.08 * (index - (count - 1) / 2)


def _threshold_line(ax: Axes, threshold: float) -> None:
    ax.axhline(100 * threshold, color="grey", linestyle="--", linewidth=1,
               label=f"threshold {threshold_label(threshold)}")


def valid_rate_figure(exps: Sequence[ExperimentStats]) -> Figure:
    """Valid generation rate per cycle with Wilson intervals, one series per experiment."""
    fig = _new_figure(7, 4)
    ax = fig.add_subplot()
    for i, exp in enumerate(exps):
        cycles = _dodge([c.cycle for c in exp.cycles], i, len(exps))
        rates = [c.valid_rate for c in exp.cycles]
        ax.errorbar(cycles, _pct(rates), yerr=_errors(rates, [c.valid_rate_ci for c in exp.cycles]),
                    marker="o", capsize=3, label=exp.name)
    _cycle_axis(ax, sorted({c.cycle for exp in exps for c in exp.cycles}))
    _percent_axis(ax, "Valid generation rate (%)")
    level = f"{exps[0].confidence * 100:g}%"
    ax.set_title(f"Valid generation rate per cycle ({level} Wilson intervals)")
    ax.legend()
    return fig


def share_figure(exps: Sequence[ExperimentStats]) -> Figure:
    """Share of valid models at or above the threshold per cycle, Wilson intervals."""
    thr = threshold_label(exps[0].accuracy_threshold)
    fig = _new_figure(7, 4)
    ax = fig.add_subplot()
    for i, exp in enumerate(exps):
        cycles = _dodge([c.cycle for c in exp.cycles], i, len(exps))
        shares = [c.accuracy.share_ge_threshold for c in exp.cycles]
        cis = [c.accuracy.share_ge_threshold_ci for c in exp.cycles]
        ax.errorbar(cycles, _pct(shares), yerr=_errors(shares, cis), marker="o", capsize=3,
                    label=exp.name)
    _cycle_axis(ax, sorted({c.cycle for exp in exps for c in exp.cycles}))
    _percent_axis(ax, f"Valid models with accuracy ≥ {thr} (%)")
    ax.set_title(f"Share of valid models with first-epoch accuracy ≥ {thr}")
    ax.legend()
    return fig


def _plot_accuracy_trends(ax: Axes, exp: ExperimentStats) -> None:
    cycles = [c.cycle for c in exp.cycles]
    means = [c.accuracy.mean for c in exp.cycles]
    lows = [c.accuracy.mean_ci.low if c.accuracy.mean_ci else None for c in exp.cycles]
    highs = [c.accuracy.mean_ci.high if c.accuracy.mean_ci else None for c in exp.cycles]
    ax.plot(cycles, _pct([c.accuracy.best for c in exp.cycles]), marker="^", label="best")
    ax.plot(cycles, _pct(means), marker="o", label="mean")
    ax.fill_between(cycles, _pct(lows), _pct(highs), alpha=0.2, label="mean 95% CI (t)")
    ax.plot(cycles, _pct([c.accuracy.median for c in exp.cycles]), marker="s", linestyle=":",
            label="median")
    _threshold_line(ax, exp.accuracy_threshold)
    _cycle_axis(ax, cycles)
    _percent_axis(ax, ACCURACY_LABEL)
    ax.legend(fontsize="small")


def accuracy_figure(exp: ExperimentStats) -> Figure:
    """Best, mean (with its t interval) and median accuracy of valid models per cycle."""
    fig = _new_figure(7, 4)
    ax = fig.add_subplot()
    _plot_accuracy_trends(ax, exp)
    ax.set_title(f"First-epoch accuracy per cycle: {exp.name}")
    return fig


def _quality_bands(threshold: float) -> list[tuple[float, float, str]]:
    """Accuracy bands [low, high) around the threshold, 10 points wide next to it."""
    edges = [0.0, max(threshold - 0.1, 0.0), threshold, min(threshold + 0.1, 1.0), 1.0]
    return [(low, high, f"{low * 100:g}–{high * 100:g}%")
            for low, high in zip(edges, edges[1:]) if high > low]


def _plot_quality_distribution(ax: Axes, exp: ExperimentStats, accuracies: Accuracies) -> None:
    cycles = [c.cycle for c in exp.cycles]
    bottom = np.zeros(len(cycles))
    for low, high, label in _quality_bands(exp.accuracy_threshold):
        shares = []
        for cycle in cycles:
            values = accuracies.get(cycle, ())
            inside = sum(1 for a in values if low <= a < high or (high == 1.0 and a == 1.0))
            shares.append(100 * inside / len(values) if values else 0.0)
        ax.bar(cycles, shares, bottom=bottom, label=label)
        bottom += np.array(shares)
    _cycle_axis(ax, cycles)
    ax.set_ylabel("Share of valid models (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize="small", title="accuracy", title_fontsize="small")


def _plot_selection(ax: Axes, exp: ExperimentStats) -> None:
    cycles = np.array([c.cycle for c in exp.cycles], dtype=float)
    width = 0.27
    thr = threshold_label(exp.accuracy_threshold)
    ax.bar(cycles - width, [c.n_valid for c in exp.cycles], width, label="valid")
    ax.bar(cycles, [c.accuracy.n_ge_threshold for c in exp.cycles], width, label=f"≥ {thr}")
    ax.bar(cycles + width, [c.unique_selected for c in exp.cycles], width, label="selected, novel")
    ax.plot(cycles, [c.novelty.n_near_dup for c in exp.cycles], color="black", marker="x",
            label="near-duplicates")
    _cycle_axis(ax, [c.cycle for c in exp.cycles])
    _count_axis(ax, "Models (count)")
    ax.legend(fontsize="small")


def _plot_corpus(ax: Axes, exp: ExperimentStats) -> None:
    cycles = [c.cycle for c in exp.cycles]
    ax.plot(cycles, [c.corpus_size for c in exp.cycles], marker="o")
    _cycle_axis(ax, cycles)
    _count_axis(ax, "Count after the cycle")


def overview_figure(exp: ExperimentStats, accuracies: Accuracies) -> Figure:
    """The paper's 2x2 overview: accuracy trends, quality distribution, selection, corpus growth."""
    fig = _new_figure(12, 8)
    axes = fig.subplots(2, 2)
    _plot_accuracy_trends(axes[0, 0], exp)
    axes[0, 0].set_title("First-epoch accuracy trends")
    _plot_quality_distribution(axes[0, 1], exp, accuracies)
    axes[0, 1].set_title("Quality distribution by accuracy threshold")
    _plot_selection(axes[1, 0], exp)
    axes[1, 0].set_title("Model selection and novelty")
    _plot_corpus(axes[1, 1], exp)
    axes[1, 1].set_title(f"Training-data growth: {corpus_header(exp)}")
    fig.suptitle(f"Overview: {exp.name}")
    return fig


def histogram_figure(exp: ExperimentStats, accuracies: Accuracies) -> Figure:
    """One accuracy histogram (valid models, 5-point bins) per cycle, small multiples."""
    cycles = [c.cycle for c in exp.cycles]
    columns = min(4, max(len(cycles), 1))
    rows = max(math.ceil(len(cycles) / columns), 1)
    fig = _new_figure(3 * columns, 2.2 * rows + 0.6)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    bins = np.linspace(0, 100, 21)
    for ax, cycle in zip(axes, cycles):
        values = 100 * np.asarray(accuracies.get(cycle, ()), dtype=float)
        ax.hist(values, bins=bins, color="tab:blue")
        ax.axvline(100 * exp.accuracy_threshold, color="grey", linestyle="--", linewidth=1)
        ax.set_title(f"Cycle {cycle} (n = {len(values)})", fontsize="small")
        ax.set_xlim(0, 100)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[len(cycles):]:
        ax.set_visible(False)
    fig.supxlabel(ACCURACY_LABEL)
    fig.supylabel("Valid models (count)")
    fig.suptitle(f"Accuracy of valid models per cycle: {exp.name} "
                 f"(dashed: {threshold_label(exp.accuracy_threshold)})")
    return fig


def save_png(fig: Figure, path: Path) -> None:
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
