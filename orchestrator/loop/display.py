"""What a running cycle shows: live progress bars and the one-line summary per cycle, like a row of
the paper's Table 2."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from orchestrator.store.schema import Cycle


def progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[extra]}"), TimeElapsedColumn(), console=console)


def summary_line(cycle: Cycle, threshold: float) -> str:
    accuracies = [c.accuracy for c in cycle.candidates if c.valid and c.accuracy is not None]
    n, valid = cycle.n_generated or 0, cycle.n_valid or 0
    best = f"{100 * max(accuracies):.2f}%" if accuracies else "-"
    mean = f"{100 * sum(accuracies) / len(accuracies):.2f}%" if accuracies else "-"
    share = f"{100 * sum(a >= threshold for a in accuracies) / len(accuracies):.2f}%" if accuracies else "-"
    valid_rate = f"{100 * valid / n:.1f}%" if n else "-"
    return (f"cycle {cycle.index}: generated {n}, valid {valid} ({valid_rate}), best {best}, mean {mean}, "
            f">= {100 * threshold:.0f}%: {share}, selected {cycle.n_selected}, corpus {cycle.corpus_size}"
            + (f", fine-tune loss {cycle.finetune_loss}" if cycle.finetune_loss is not None else ""))
