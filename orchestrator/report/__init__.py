"""Reports: the paper's statistics, tables and figures for one or more experiments.

Per-candidate records (`records`: from exported JSONL logs or the database's read-only views), their
statistics (`stats`: Wilson and t intervals), tables, figures and pages. Imports `store` (read-only)
and `contracts`; never the loop.

`write_report` takes candidate records grouped by experiment and writes into one directory:
`table2.{md,csv,tex}`, `table3.{md,csv,tex}` (two or more experiments), PNG figures, `report.html`
(self-contained), `report.md` and `stats.json`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from importlib import metadata
from pathlib import Path
from typing import Any

from orchestrator.report.records import REQUIRED_FIELDS, CandidateRecord
from orchestrator.report import figures, tables
from orchestrator.report.document import stats_document
from orchestrator.report.pages import (
    ExperimentSection,
    FigureEntry,
    Provenance,
    ReportContent,
    SourceInfo,
    render_html,
    render_markdown,
)
from orchestrator.report.stats import CONFIDENCE, ExperimentStats, summarize_experiment

NOT_IN_LOGS = (
    "The experiment's configuration (profile, resolved settings and their hash) and code version.",
    "The evaluation protocol as run (data split, seeds, training hyperparameters, timeouts).",
    "Container images (sandbox and LLM) and the adapter lineage (which adapter each cycle sampled "
    "from and produced).",
    "These are recorded in the experiment database; exported JSONL logs do not carry them.",
)


@dataclass(frozen=True)
class ReportSettings:
    accuracy_threshold: float
    profile: str
    initial_corpus: int | None = None
    confidence: float = CONFIDENCE


@dataclass(frozen=True)
class ReportResult:
    out: Path
    files: tuple[Path, ...]
    stats: tuple[ExperimentStats, ...]
    document: dict[str, Any]


def _slug(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "experiment"
    slug, i = base, 2
    while slug in taken:
        slug, i = f"{base}-{i}", i + 1
    taken.add(slug)
    return slug


def _accuracies(records: Sequence[CandidateRecord]) -> dict[int, list[float]]:
    by_cycle: dict[int, list[float]] = {}
    for r in records:
        by_cycle.setdefault(r.cycle, [])
        if r.valid and r.accuracy is not None:
            by_cycle[r.cycle].append(r.accuracy)
    return by_cycle


def _provenance(experiments: Mapping[str, Sequence[CandidateRecord]], sources: Sequence[Path],
                settings: ReportSettings, stats: Sequence[ExperimentStats]) -> Provenance:
    infos = []
    for path in sources:
        data = path.read_bytes()
        names = {r.experiment for rs in experiments.values() for r in rs
                 if r.source.rsplit(":", 1)[0] == str(path)}
        count = sum(1 for rs in experiments.values() for r in rs
                    if r.source.rsplit(":", 1)[0] == str(path))
        infos.append(SourceInfo(path=str(path), sha256=hashlib.sha256(data).hexdigest(),
                                records=count,
                                experiments=tuple(sorted(names)) or ("(none selected)",)))
    records = [r for rs in experiments.values() for r in rs]
    optional = [f.name for f in fields(CandidateRecord)
                if f.name not in REQUIRED_FIELDS and f.name != "source"]
    present = [name for name in optional if any(getattr(r, name) is not None for r in records)]
    absent = [name for name in optional if name not in present]
    corpus = "; ".join(f"{s.name}: {tables.corpus_header(s)}" for s in stats)
    report_settings = (
        ("profile the threshold is read from", settings.profile),
        ("accuracy threshold (from the profile)",
         tables.threshold_label(settings.accuracy_threshold)),
        ("confidence level", f"{settings.confidence * 100:g}%"),
        ("initial corpus", "not given" if settings.initial_corpus is None
         else str(settings.initial_corpus)),
        ("corpus size per cycle", corpus),
    )
    return Provenance(sources=tuple(infos), settings=report_settings,
                      fields_present=REQUIRED_FIELDS + tuple(present), fields_absent=tuple(absent),
                      not_recorded=NOT_IN_LOGS)


def _version() -> str:
    try:
        return metadata.version("nasloop")
    except metadata.PackageNotFoundError:
        return "unknown"


def write_report(experiments: Mapping[str, Sequence[CandidateRecord]], settings: ReportSettings,
                 out: Path, sources: Sequence[Path] = ()) -> ReportResult:
    """Compute the statistics of every experiment and write all report files into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def write_text(name: str, text: str) -> None:
        path = out / name
        path.write_text(text, encoding="utf-8")
        written.append(path)

    stats = tuple(summarize_experiment(name, records, settings.accuracy_threshold,
                                       settings.initial_corpus, settings.confidence)
                  for name, records in experiments.items())

    table2s = [tables.table2(exp) for exp in stats]
    write_text("table2.md", "\n".join(tables.to_markdown(t) for t in table2s))
    write_text("table2.tex", "\n".join(tables.to_latex(t) for t in table2s))
    tables.write_csv(out / "table2.csv", tables.table2_csv(stats))
    written.append(out / "table2.csv")
    comparison = tables.table3(stats) if len(stats) > 1 else None
    if comparison is not None:
        write_text("table3.md", tables.to_markdown(comparison))
        write_text("table3.tex", tables.to_latex(comparison))
        tables.write_csv(out / "table3.csv", tables.table3_csv(stats))
        written.append(out / "table3.csv")

    def render(fig: figures.Figure, filename: str, caption: str) -> FigureEntry:
        path = out / filename
        figures.save_png(fig, path)
        written.append(path)
        return FigureEntry(filename=filename, caption=caption, png=path.read_bytes())

    thr = tables.threshold_label(settings.accuracy_threshold)
    key = tables.share_key(settings.accuracy_threshold)
    shared = (
        render(figures.valid_rate_figure(stats), "valid_rate.png",
               "Valid generation rate per cycle with Wilson 95% intervals"),
        render(figures.share_figure(stats), f"{key}.png",
               f"Share of valid models with first-epoch accuracy ≥ {thr} per cycle, Wilson 95% "
               f"intervals"),
    )
    sections = []
    taken: set[str] = set()
    for exp, table2 in zip(stats, table2s):
        slug = _slug(exp.name, taken)
        accuracies = _accuracies(experiments[exp.name])
        sections.append(ExperimentSection(name=exp.name, tables=(table2, tables.novelty_table(exp)),
                                          figures=(
            render(figures.accuracy_figure(exp), f"accuracy-{slug}.png",
                   f"{exp.name}: best, mean (t 95% interval) and median first-epoch accuracy of "
                   f"valid models per cycle"),
            render(figures.overview_figure(exp, accuracies), f"overview-{slug}.png",
                   f"{exp.name}: accuracy trends, quality distribution by accuracy threshold, "
                   f"selection and novelty, training-data growth"),
            render(figures.histogram_figure(exp, accuracies), f"histogram-{slug}.png",
                   f"{exp.name}: accuracy histogram of valid models per cycle"),
        )))

    document = stats_document(stats)
    write_text("stats.json", json.dumps(document, indent=2) + "\n")
    names = ", ".join(exp.name for exp in stats)
    content = ReportContent(
        title=f"nasloop report: {names}",
        summary=(f"Experiments: {names}. Generated by nasloop {_version()}.",
                 f"Accuracies are top-1 first-epoch accuracies of valid candidates; intervals are "
                 f"{settings.confidence * 100:g}% (Wilson score for proportions, t-based for "
                 f"means)."),
        comparison=comparison,
        overview_figures=shared,
        experiments=tuple(sections),
        provenance=_provenance(experiments, sources, settings, stats),
    )
    write_text("report.md", render_markdown(content))
    write_text("report.html", render_html(content))
    return ReportResult(out=out, files=tuple(written), stats=stats, document=document)
