"""`nasloop cycle`, `nasloop status`, `nasloop export`: run the loop and read its state."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from contracts.files import write_jsonl_atomic
from orchestrator.commands.common import (config_option, connect, db_url_option, executor_options,
                                         executor_overrides, load_profile, profile_option, workdir_option)
from orchestrator.config import Ablations
from orchestrator.containers.client import InfraError
from orchestrator.data import DataError
from orchestrator.loop.errors import CycleError
from orchestrator.loop.run import run_cycles
from orchestrator.store.readers import experiment_names, experiment_status, export_rows
from orchestrator.untrusted import printable


@click.command()
@profile_option
@config_option
@click.option("--cycles", type=click.IntRange(min=1), default=None,
              help="How many more cycles to run now (a resumed one counts) [default: the profile's cycle.cycles].")
@click.option("--until", type=click.IntRange(min=1), default=None,
              help="Run until the experiment has N completed cycles (nothing if it has them already).")
@click.option("--experiment", "name", default=None,
              help="Experiment name [default: the profile name plus the ablations].")
@click.option("--no-novelty", is_flag=True, help="Ablation: select near-duplicates too (similarities still logged).")
@click.option("--no-threshold", is_flag=True, help="Ablation: select any valid, novel candidate.")
@click.option("--no-iteration", is_flag=True,
              help="Ablation: fine-tune once on the initial corpus, then always sample from that adapter.")
@executor_options
@db_url_option
@workdir_option
def cycle(profile: str, config_file: Path | None, cycles: int | None, until: int | None, name: str | None,
          no_novelty: bool, no_threshold: bool, no_iteration: bool, executor: str | None, ray_address: str | None,
          db_url: str | None, workdir: Path) -> None:
    """Run an experiment (created on first use) for --cycles more cycles or --until it has N:
    generate, evaluate, select, fine-tune. Interrupted runs resume where they stopped."""
    if cycles is not None and until is not None:
        raise click.UsageError("give --cycles (more cycles) or --until (a total), not both")
    config = load_profile(profile, config_file, executor_overrides(executor, ray_address))
    try:
        run_cycles(workdir, config, profile, None if until else (cycles or config.cycle.cycles),
                   Ablations(no_novelty, no_threshold, no_iteration), name=name, db_url=db_url, until=until)
    except (CycleError, InfraError, DataError) as exc:
        raise click.ClickException(f"{exc}\nthe experiment is resumable: run the same command again") from None


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@db_url_option
@workdir_option
def status(as_json: bool, db_url: str | None, workdir: Path) -> None:
    """Experiments, their cycles, phases and counts."""
    db = connect(workdir, db_url)
    try:
        with db.transaction() as session:
            experiments = experiment_status(session)
    finally:
        db.close()
    if as_json:
        click.echo(json.dumps({"workdir": str(workdir), "experiments": [e.as_dict() for e in experiments]}, indent=1))
        return
    if not experiments:
        click.echo(f"no experiments in {workdir}")
        return
    table = Table(title=f"nasloop status ({workdir})")
    columns = ("cycle", "phase", "generated", "evaluated", "valid", "selected", "corpus_size", "finetune_loss")
    for column in ("experiment", *columns):
        table.add_column(column.replace("corpus_size", "corpus").replace("finetune_loss", "loss"))
    for e in experiments:
        label = Text(printable(f"{e.experiment} ({e.ablations})", keep_lines=False))  # names are never markup
        if not e.cycles:
            table.add_row(label, "-", "created")
        for c in e.cycles:
            table.add_row(label, *("" if getattr(c, k) is None else str(getattr(c, k)) for k in columns))
    Console().print(table)


@click.command()
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@click.option("--experiment", "experiments", multiple=True, help="Only these experiments [default: all].")
@click.argument("out", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@db_url_option
@workdir_option
def export(fmt: str, experiments: tuple[str, ...], out: Path, db_url: str | None, workdir: Path) -> None:
    """Write one JSON line per candidate (the paper's log fields) to OUT ('-' for stdout)."""
    db = connect(workdir, db_url)
    try:
        with db.transaction() as session:
            known = set(experiment_names(session))
            unknown = sorted(set(experiments) - known)
            if unknown:
                raise click.ClickException(f"unknown experiment(s): {', '.join(unknown)} "
                                           f"(known: {', '.join(sorted(known)) or 'none'})")
            rows = list(export_rows(session, list(experiments) or None))
    finally:
        db.close()
    if str(out) == "-":
        sys.stdout.writelines(json.dumps(row) + "\n" for row in rows)
        return
    write_jsonl_atomic(out, rows)
    click.echo(f"wrote {len(rows)} candidates to {out}", err=True)
