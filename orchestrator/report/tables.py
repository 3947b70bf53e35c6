"""The paper's Table 2 (per cycle) and Table 3 (experiments side by side), rendered as Markdown,
LaTeX and CSV.

Display tables show percentages with the paper's precision (valid rate 1 decimal, accuracies and
shares 2 decimals) and intervals in brackets; CSV keeps the numbers in separate columns (percent,
4 decimals).
A missing value is written "n/a" and a note under the table says why.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.report.stats import (
    CORPUS_FROM_LOG,
    CORPUS_INITIAL_PLUS_SELECTED,
    AccuracySummary,
    ExperimentStats,
    Interval,
    NoveltySummary,
)

NA = "n/a"


@dataclass(frozen=True)
class Table:
    """A display table: header and rows as text, an optional totals row, a caption and notes."""

    caption: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    total: tuple[str, ...] | None = None
    notes: tuple[str, ...] = ()

    @property
    def all_rows(self) -> tuple[tuple[str, ...], ...]:
        return self.rows + ((self.total,) if self.total else ())


@dataclass(frozen=True)
class CsvTable:
    headers: tuple[str, ...]
    rows: tuple[tuple[object, ...], ...]


def threshold_label(threshold: float) -> str:
    """"40%" for 0.40."""
    return f"{threshold * 100:g}%"


def share_key(threshold: float) -> str:
    """JSON/CSV name of the share above the threshold: `share_ge_40` for 0.40."""
    return f"share_ge_{threshold * 100:g}"


def percent(value: float | None, digits: int) -> str:
    return NA if value is None else f"{value * 100:.{digits}f}"


def with_interval(value: float | None, ci: Interval | None, digits: int, missing_ci: str) -> str:
    if value is None:
        return NA
    if ci is None:
        return f"{percent(value, digits)} [{missing_ci}]"
    return f"{percent(value, digits)} [{percent(ci.low, digits)}, {percent(ci.high, digits)}]"


def _mean_cell(acc: AccuracySummary) -> str:
    return with_interval(acc.mean, acc.mean_ci, 2, "no CI: n = 1")


def _share_cell(acc: AccuracySummary) -> str:
    return with_interval(acc.share_ge_threshold, acc.share_ge_threshold_ci, 2, NA)


def corpus_header(exp: ExperimentStats) -> str:
    if exp.corpus_source == CORPUS_FROM_LOG:
        return "Total train"
    if exp.corpus_source == CORPUS_INITIAL_PLUS_SELECTED:
        return f"Total train (initial {exp.initial_corpus} + selected so far)"
    return "Selected so far (initial corpus not given)"


def interval_note(exp: ExperimentStats) -> str:
    level = f"{exp.confidence * 100:g}%"
    return (f"Brackets: {level} intervals, Wilson score for proportions, t-based for means. "
            f"≥ {threshold_label(exp.accuracy_threshold)}: share of valid models with first-epoch "
            f"accuracy at least {threshold_label(exp.accuracy_threshold)}.")


def table2(exp: ExperimentStats) -> Table:
    thr = threshold_label(exp.accuracy_threshold)
    headers = ("Cycle", "Valid/Gen", "Valid (%)", "Best (%)", "Mean (%)", "Median (%)",
               f"≥ {thr} (%)", "Unique models", corpus_header(exp))
    rows = []
    for c in exp.cycles:
        acc = c.accuracy
        rows.append((str(c.cycle), f"{c.n_valid}/{c.n_gen}",
                     with_interval(c.valid_rate, c.valid_rate_ci, 1, NA),
                     percent(acc.best, 2), _mean_cell(acc), percent(acc.median, 2),
                     _share_cell(acc), str(c.unique_selected), str(c.corpus_size)))
    o = exp.overall
    total = ("All", f"{o.n_valid}/{o.n_gen}", with_interval(o.valid_rate, o.valid_rate_ci, 1, NA),
             percent(o.accuracy.best, 2), _mean_cell(o.accuracy), percent(o.accuracy.median, 2),
             _share_cell(o.accuracy), str(o.unique_selected), str(o.corpus_size))
    notes = [interval_note(exp),
             "All: pooled over every candidate of every cycle.",
             f"Mean per-cycle valid rate: "
             f"{with_interval(o.mean_cycle_valid_rate, o.mean_cycle_valid_rate_ci, 1, NA)} "
             f"(t interval over {o.n_cycles} cycle(s)).",
             "Unique models: selected models not flagged as near-duplicates."]
    if exp.corpus_source != CORPUS_FROM_LOG:
        notes.append("The log has no corpus size: the last column counts the models selected so far"
                     + (" plus the initial corpus given with --initial-corpus."
                        if exp.corpus_source == CORPUS_INITIAL_PLUS_SELECTED else
                        "; pass --initial-corpus N to add the initial corpus."))
    notes += [f"Cycle {c.cycle}: {note}." for c in exp.cycles for note in c.notes]
    notes += [f"All: {note}." for note in o.notes]
    return Table(caption=f"Per-cycle statistics of experiment {exp.name!r}",
                 headers=headers, rows=tuple(rows), total=total, notes=tuple(notes))


def table3(exps: Sequence[ExperimentStats]) -> Table:
    thr = threshold_label(exps[0].accuracy_threshold)
    headers = ("Method", "Cycles", "Valid/Gen", "Valid rate (%)", "Mean per-cycle valid (%)",
               "Mean acc. (%)", f"≥ {thr} acc. (%)", "Selected", "Novel models")
    rows = []
    for exp in exps:
        o = exp.overall
        rows.append((exp.name, str(o.n_cycles), f"{o.n_valid}/{o.n_gen}",
                     with_interval(o.valid_rate, o.valid_rate_ci, 1, NA),
                     with_interval(o.mean_cycle_valid_rate, o.mean_cycle_valid_rate_ci, 1,
                                   "no CI: 1 cycle"),
                     _mean_cell(o.accuracy), _share_cell(o.accuracy),
                     str(o.selected), str(o.unique_selected)))
    notes = (interval_note(exps[0]),
             "Valid rate and accuracies pooled over all cycles; mean per-cycle valid rate with a "
             "t interval over cycles.",
             "Novel models: selected models (added to the corpus) not flagged as near-duplicates.")
    return Table(caption="Experiments compared", headers=headers, rows=tuple(rows), notes=notes)


def _pct(value: float | None) -> object:
    return "" if value is None else round(value * 100, 4)


def _ci(ci: Interval | None) -> tuple[object, object]:
    return ("", "") if ci is None else (_pct(ci.low), _pct(ci.high))


def table2_csv(exps: Sequence[ExperimentStats]) -> CsvTable:
    key = share_key(exps[0].accuracy_threshold)
    headers = ("experiment", "cycle", "n_gen", "n_valid", "valid_pct", "valid_ci_low_pct",
               "valid_ci_high_pct", "best_pct", "mean_pct", "mean_ci_low_pct", "mean_ci_high_pct",
               "median_pct", f"n_{key[len('share_'):]}", f"{key}_pct", f"{key}_ci_low_pct",
               f"{key}_ci_high_pct", "unique_models", "selected", "corpus_size",
               "corpus_size_source")
    rows = []
    for exp in exps:
        for c in exp.cycles:
            acc = c.accuracy
            rows.append((exp.name, c.cycle, c.n_gen, c.n_valid, _pct(c.valid_rate),
                         *_ci(c.valid_rate_ci), _pct(acc.best), _pct(acc.mean), *_ci(acc.mean_ci),
                         _pct(acc.median), acc.n_ge_threshold, _pct(acc.share_ge_threshold),
                         *_ci(acc.share_ge_threshold_ci), c.unique_selected, c.selected,
                         c.corpus_size, exp.corpus_source))
    return CsvTable(headers=headers, rows=tuple(rows))


def table3_csv(exps: Sequence[ExperimentStats]) -> CsvTable:
    key = share_key(exps[0].accuracy_threshold)
    headers = ("experiment", "n_cycles", "n_gen", "n_valid", "valid_pct", "valid_ci_low_pct",
               "valid_ci_high_pct", "mean_cycle_valid_pct", "mean_cycle_valid_ci_low_pct",
               "mean_cycle_valid_ci_high_pct", "mean_pct", "mean_ci_low_pct", "mean_ci_high_pct",
               f"{key}_pct", f"{key}_ci_low_pct", f"{key}_ci_high_pct", "selected", "novel_models")
    rows = []
    for exp in exps:
        o = exp.overall
        rows.append((exp.name, o.n_cycles, o.n_gen, o.n_valid, _pct(o.valid_rate),
                     *_ci(o.valid_rate_ci), _pct(o.mean_cycle_valid_rate),
                     *_ci(o.mean_cycle_valid_rate_ci), _pct(o.accuracy.mean),
                     *_ci(o.accuracy.mean_ci), _pct(o.accuracy.share_ge_threshold),
                     *_ci(o.accuracy.share_ge_threshold_ci), o.selected, o.unique_selected))
    return CsvTable(headers=headers, rows=tuple(rows))


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(table: Table) -> str:
    lines = [f"**{_md_escape(table.caption)}**", "",
             "| " + " | ".join(_md_escape(h) for h in table.headers) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(table.headers))) + "|"]
    lines += ["| " + " | ".join(_md_escape(cell) for cell in row) + " |" for row in table.all_rows]
    if table.notes:
        lines.append("")
        lines += [f"- {_md_escape(note)}" for note in table.notes]
    return "\n".join(lines) + "\n"


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                "^": r"\textasciicircum{}", "≥": r"$\geq$", "±": r"$\pm$"}


def tex_escape(text: str) -> str:
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(table: Table) -> str:
    """A `table` float with a `tabular` (plain LaTeX, no packages needed)."""
    spec = "l" + "r" * (len(table.headers) - 1)
    lines = [r"\begin{table}[ht]", r"\centering", r"\small", rf"\begin{{tabular}}{{{spec}}}",
             r"\hline", " & ".join(tex_escape(h) for h in table.headers) + r" \\", r"\hline"]
    lines += [" & ".join(tex_escape(cell) for cell in row) + r" \\" for row in table.rows]
    if table.total:
        lines += [r"\hline", " & ".join(tex_escape(cell) for cell in table.total) + r" \\"]
    lines += [r"\hline", r"\end{tabular}",
              rf"\caption{{{tex_escape(' '.join((table.caption + '.',) + table.notes))}}}",
              r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, table: CsvTable) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(table.headers)
        writer.writerows(table.rows)


def _fraction_cell(value: float | None) -> str:
    return NA if value is None else f"{value:.3f}"


def novelty_table(exp: ExperimentStats) -> Table:
    """Novelty per cycle: similarities of valid candidates, near-duplicates, rejections."""
    headers = ("Cycle", "Checked", "Mean J_train", "Mean J_gen", "Near-dup", "Near-dup (%)",
               "Rejections (total)", "Rejections (max)")

    def row(label: str, n: NoveltySummary) -> tuple[str, ...]:
        return (label, str(n.n_checked), _fraction_cell(n.mean_nn_jaccard_train),
                _fraction_cell(n.mean_nn_jaccard_gen), str(n.n_near_dup),
                percent(n.near_dup_share, 1),
                NA if n.rejection_total is None else str(n.rejection_total),
                NA if n.rejection_max is None else str(n.rejection_max))

    return Table(
        caption=f"Novelty per cycle of experiment {exp.name!r}",
        headers=headers,
        rows=tuple(row(str(c.cycle), c.novelty) for c in exp.cycles),
        total=row("All", exp.overall.novelty),
        notes=("Checked: valid candidates with a near-duplicate flag in the log. J_train / J_gen: "
               "nearest-neighbour MinHash-Jaccard to the corpus / to earlier candidates of the "
               "cycle "
               "(nn_jaccard_train / nn_jaccard_gen). Near-dup: flagged near_dup_text_train or "
               "near_dup_text_gen. Rejections: sum and maximum of rejection_count.",))
