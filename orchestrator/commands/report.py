"""`nasloop report`: the paper's tables, figures and statistics for one or more experiments."""

from __future__ import annotations

import json
from pathlib import Path

import click

from orchestrator.commands.common import config_option, load_profile, profile_option, workdir_option
from orchestrator.report import ReportSettings, write_report
from orchestrator.report.records import RecordError, group_experiments, load_records
from orchestrator.report.stats import CORPUS_FROM_LOG
from orchestrator.report.tables import NA, percent, with_interval


@click.command()
@workdir_option
@profile_option
@config_option
@click.option("--experiment", "experiments", multiple=True, metavar="NAME",
              help="Experiment to report (repeatable; default: every experiment in the input).")
@click.option("--log", "logs", multiple=True, metavar="FILE.jsonl",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Per-candidate JSONL log from `nasloop export --format jsonl` (repeatable).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory [default: WORKDIR/report].")
@click.option("--initial-corpus", type=click.IntRange(min=0), default=None, metavar="N",
              help="Size of the initial training corpus, added to the selected models when the log "
                   "has no corpus size.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the per-cycle and overall statistics as one JSON document.")
def report(workdir: Path, profile: str, config_file: Path | None, experiments: tuple[str, ...],
           logs: tuple[Path, ...], out: Path | None, initial_corpus: int | None,
           as_json: bool) -> None:
    """Write Table 2/3 (md, csv, tex), PNG figures, report.html, report.md and stats.json.

    Accuracy threshold from the profile; 95% intervals: Wilson for proportions, t-based for means.
    """
    config = load_profile(profile, config_file)
    try:
        grouped = group_experiments(load_records(logs, workdir), experiments)
    except RecordError as exc:
        raise click.ClickException(str(exc)) from None
    settings = ReportSettings(
        accuracy_threshold=config.selection.accuracy_threshold,
        profile=profile if config_file is None else f"{profile} + {config_file}",
        initial_corpus=initial_corpus)
    out = out if out is not None else workdir / "report"
    try:
        result = write_report(grouped, settings, out, sources=logs)
    except (RecordError, OSError) as exc:
        raise click.ClickException(str(exc)) from None

    if as_json:
        click.echo(json.dumps(result.document, indent=2))
        return
    for exp in result.stats:
        o = exp.overall
        click.echo(f"{exp.name}: {o.n_cycles} cycle(s), {o.n_valid}/{o.n_gen} valid "
                   f"({with_interval(o.valid_rate, o.valid_rate_ci, 1, NA)} %), mean accuracy "
                   f"{with_interval(o.accuracy.mean, o.accuracy.mean_ci, 2, 'no CI')} %, "
                   f"best {percent(o.accuracy.best, 2)} %, {o.selected} selected")
        if initial_corpus is not None and exp.corpus_source == CORPUS_FROM_LOG:
            click.echo("  note: the log records the corpus size; --initial-corpus is not used")
    click.echo(f"wrote {len(result.files)} files to {result.out}")
