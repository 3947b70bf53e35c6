"""`nasloop cycle`, `nasloop status`, `nasloop export`: run the loop and read its state."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from orchestrator import images as img
from orchestrator.commands.common import config_option, db_url_option, load_profile, profile_option, workdir_option
from orchestrator.cycle import CycleError, CycleRunner, export_rows, open_experiment, workspace_lock
from orchestrator.data import DataError
from orchestrator.db import open_database
from orchestrator.experiments import Candidate, Experiment
from orchestrator.selection import Ablations


@click.command()
@profile_option
@config_option
@click.option("--cycles", type=click.IntRange(min=1), default=None,
              help="How many cycles to run now [default: the profile's cycle.cycles].")
@click.option("--experiment", "name", default=None,
              help="Experiment name [default: the profile name plus the ablations].")
@click.option("--no-novelty", is_flag=True, help="Ablation: select near-duplicates too (similarities still logged).")
@click.option("--no-threshold", is_flag=True, help="Ablation: select any valid, novel candidate.")
@click.option("--no-iteration", is_flag=True,
              help="Ablation: fine-tune once on the initial corpus, then always sample from that adapter.")
@db_url_option
@workdir_option
def cycle(profile: str, config_file: Path | None, cycles: int | None, name: str | None, no_novelty: bool,
          no_threshold: bool, no_iteration: bool, db_url: str | None, workdir: Path) -> None:
    """Run the next CYCLES cycles of an experiment (created on first use): generate, evaluate,
    select, fine-tune. Interrupted runs resume where they stopped."""
    config = load_profile(profile, config_file)
    ablations = Ablations(no_novelty, no_threshold, no_iteration)
    name = name or (profile if ablations.label == "full" else f"{profile}-{ablations.label}")
    console = Console()
    try:
        with workspace_lock(workdir):
            db = open_database(workdir, db_url)
            try:
                with db.transaction() as session:
                    experiment_id = open_experiment(session, name, profile, config, ablations).id
                console.print(f"experiment [bold]{name}[/bold] ({profile}, {ablations.label}) in {workdir}")
                CycleRunner(workdir, db, config, experiment_id, ablations, console).run(cycles or config.cycle.cycles)
            finally:
                db.close()
    except (CycleError, img.ImageError, DataError) as exc:
        raise click.ClickException(f"{exc}\nthe experiment is resumable: run the same command again") from None


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@db_url_option
@workdir_option
def status(as_json: bool, db_url: str | None, workdir: Path) -> None:
    """Experiments, their cycles, phases and counts."""
    db = open_database(workdir, db_url)
    try:
        with db.transaction() as session:
            experiments = []
            for experiment in session.scalars(select(Experiment).order_by(Experiment.name)):
                cycles = []
                for c in experiment.cycles:
                    evaluated = session.scalar(select(func.count()).where(
                        Candidate.cycle_id == c.id, Candidate.outcome.is_not(None))) or 0
                    cycles.append({"cycle": c.index, "phase": c.phase, "generated": c.n_generated,
                                   "evaluated": evaluated, "valid": c.n_valid, "selected": c.n_selected,
                                   "corpus_size": c.corpus_size, "finetune_loss": c.finetune_loss,
                                   "adapter_in": c.adapter_in, "adapter_out": c.adapter_out,
                                   "timings": c.timings})
                experiments.append({"experiment": experiment.name, "profile": experiment.profile,
                                    "config_sha256": experiment.config_sha256,
                                    "code_version": experiment.code_version,
                                    "ablations": Ablations(experiment.no_novelty, experiment.no_threshold,
                                                           experiment.no_iteration).label,
                                    "cycles": cycles})
    finally:
        db.close()
    if as_json:
        click.echo(json.dumps({"workdir": str(workdir), "experiments": experiments}, indent=1))
        return
    if not experiments:
        click.echo(f"no experiments in {workdir}")
        return
    table = Table(title=f"nasloop status ({workdir})")
    for column in ("experiment", "cycle", "phase", "generated", "evaluated", "valid", "selected", "corpus", "loss"):
        table.add_column(column)
    for e in experiments:
        for c in e["cycles"] or [{"cycle": "-", "phase": "created"}]:
            table.add_row(f"{e['experiment']} ({e['ablations']})", *(
                "" if c.get(k) is None else str(c.get(k))
                for k in ("cycle", "phase", "generated", "evaluated", "valid", "selected", "corpus_size",
                          "finetune_loss")))
    Console().print(table)


@click.command()
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@click.option("--experiment", "experiments", multiple=True, help="Only these experiments [default: all].")
@click.argument("out", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@db_url_option
@workdir_option
def export(fmt: str, experiments: tuple[str, ...], out: Path, db_url: str | None, workdir: Path) -> None:
    """Write one JSON line per candidate (the paper's log fields) to OUT ('-' for stdout)."""
    db = open_database(workdir, db_url)
    try:
        with db.transaction() as session:
            known = set(session.scalars(select(Experiment.name)))
            unknown = sorted(set(experiments) - known)
            if unknown:
                raise click.ClickException(f"unknown experiment(s): {', '.join(unknown)} "
                                           f"(known: {', '.join(sorted(known)) or 'none'})")
            lines = [json.dumps(row) + "\n" for row in export_rows(session, list(experiments) or None)]
    finally:
        db.close()
    if str(out) == "-":
        sys.stdout.writelines(lines)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_text("".join(lines))
    partial.replace(out)
    click.echo(f"wrote {len(lines)} candidates to {out}", err=True)
