"""PNG figures for the pages: the report's figures of one experiment or several, and the adapters'
loss curves. A rendered figure is kept by the data version it shows, so that polling pages only
re-render when the data changed."""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from orchestrator.dashboard.queries import Summary
from orchestrator.report import figures
from orchestrator.report.stats import ExperimentStats

# One experiment's figures (report.figures), by the name in the URL.
EXPERIMENT_FIGURES: dict[str, str] = {
    "overview": "Accuracy trends, quality distribution by accuracy threshold, selection and novelty, "
                "training-data growth",
    "accuracy": "Best, mean (t 95% interval) and median first-epoch accuracy of valid models per cycle",
    "valid_rate": "Valid generation rate per cycle with Wilson 95% intervals",
    "share": "Share of valid models at or above the accuracy threshold per cycle, Wilson 95% intervals",
    "histogram": "Accuracy histogram of valid models per cycle",
}
# Several experiments' curves overlaid.
COMPARE_FIGURES: dict[str, str] = {
    "valid_rate": "Valid generation rate per cycle with Wilson 95% intervals",
    "share": "Share of valid models at or above the accuracy threshold per cycle, Wilson 95% intervals",
}


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=figures.DPI, metadata={"Software": None})
    return buffer.getvalue()


def experiment_figure(kind: str, summary: Summary) -> Figure:
    stats = summary.stats
    assert stats is not None
    if kind == "overview":
        return figures.overview_figure(stats, summary.accuracies)
    if kind == "accuracy":
        return figures.accuracy_figure(stats)
    if kind == "valid_rate":
        return figures.valid_rate_figure([stats])
    if kind == "share":
        return figures.share_figure([stats])
    if kind == "histogram":
        return figures.histogram_figure(stats, summary.accuracies)
    raise KeyError(kind)


def compare_figure(kind: str, stats: Sequence[ExperimentStats]) -> Figure:
    if kind == "valid_rate":
        return figures.valid_rate_figure(stats)
    if kind == "share":
        return figures.share_figure(stats)
    raise KeyError(kind)


def loss_figure(adapters: Sequence[dict[str, Any]]) -> Figure:
    """Each adapter's fine-tuning loss per step, one line per adapter."""
    fig = Figure(figsize=(7, 4), dpi=figures.DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for adapter in adapters:
        curve = adapter["loss_curve"]
        if curve:
            ax.plot([p["step"] for p in curve], [p["loss"] for p in curve], marker=".",
                    label=f"adapter {adapter['cycle']}")
    ax.set_xlabel("Step")
    ax.set_ylabel("Training loss (assistant tokens)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    ax.set_title("Fine-tuning loss per adapter")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    return fig


class FigureCache:
    """The last `size` rendered PNGs, by key (which includes the data version); renders one at a time."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._render_lock = threading.Lock()

    def get(self, key: tuple[str, ...], render: Callable[[], Figure]) -> bytes:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        with self._render_lock:  # matplotlib is not thread-safe: one figure at a time
            data = png(render())
        with self._lock:
            self._items[key] = data
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return data
