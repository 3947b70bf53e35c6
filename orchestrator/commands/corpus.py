"""`nasloop corpus import|stats|export`: the supervised corpus in the experiment database."""

from __future__ import annotations

import json
from pathlib import Path

import click
from sqlalchemy.exc import SQLAlchemyError

from orchestrator.commands.common import config_option, db_url_option, load_profile, profile_option, workdir_option
from orchestrator.corpus import corpus_stats, export_chat_jsonl, import_lemur
from orchestrator.db import Database, open_database

def connect(workdir: Path, db_url: str | None) -> Database:
    try:
        return open_database(workdir, db_url)
    except (SQLAlchemyError, OSError) as exc:
        raise click.ClickException(f"cannot open the database: {exc}") from None


@click.group()
def corpus() -> None:
    """The supervised corpus: LEMUR programs plus accepted generations."""


@corpus.command("import")
@click.option("--lemur", "lemur_path", required=True, type=click.Path(exists=True, path_type=Path),
              help="LEMUR JSONL(.gz) export or nn-dataset checkout directory.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes for tokenising and hashing [default: up to 4 for large imports].")
@click.option("--verbose", "-v", is_flag=True, help="List every dropped program.")
@workdir_option
@db_url_option
@profile_option
@config_option
def import_command(lemur_path: Path, workers: int | None, verbose: bool, workdir: Path,
                   db_url: str | None, profile: str, config_file: Path | None) -> None:
    """Import image-classification programs from LEMUR, without exact and near-duplicates.

    Near-duplicates (MinHash-Jaccard > tau) keep the program with the highest recorded CIFAR-10
    first-epoch accuracy, then the best documented. Importing the same source twice changes
    nothing. The import is one transaction.
    """
    config = load_profile(profile, config_file)
    db = connect(workdir, db_url)
    try:
        with db.transaction() as session:
            report = import_lemur(session, lemur_path, config.novelty, workers)
    finally:
        db.close()
    for problem in report.problems:
        click.echo(f"problem: {problem.location}: {problem.message}", err=True)
    if verbose:
        for drop in report.drops:
            detail = f" ({drop.detail})" if drop.detail else ""
            click.echo(f"dropped {drop.name} [{drop.origin}]: {drop.reason}{detail}")
    click.echo(f"read {report.read} programs from {lemur_path}"
               + (f" ({len(report.problems)} problems, listed above)" if report.problems else ""))
    for reason, count in sorted(report.dropped.items()):
        click.echo(f"  dropped {count:6d}  {reason}")
    click.echo(f"  kept    {report.kept:6d}  new corpus programs")
    if report.read == 0 and report.problems:
        raise click.ClickException(f"nothing could be read from {lemur_path}")


@corpus.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@workdir_option
@db_url_option
def stats_command(as_json: bool, workdir: Path, db_url: str | None) -> None:
    """Programs by source and cycle, clusters, chat examples."""
    db = connect(workdir, db_url)
    try:
        with db.transaction() as session:
            stats = corpus_stats(session)
    finally:
        db.close()
    if as_json:
        click.echo(json.dumps(stats, indent=2))
        return
    click.echo(f"corpus programs      {stats['corpus_programs']}  (= near-duplicate clusters)")
    click.echo(f"stored programs      {stats['programs']}  (corpus + their near-duplicates)")
    click.echo(f"largest cluster      {stats['largest_cluster']}")
    click.echo(f"with CIFAR-10 ep.1   {stats['with_cifar10_epoch1_accuracy']}")
    click.echo(f"chat examples        {stats['chat_examples']}")
    for source, counts in sorted(stats["by_source"].items()):
        click.echo(f"source {source:<13} {counts['corpus']} corpus, {counts['near_duplicates']} near-duplicates")
    for cycle, count in stats["generated_by_cycle"].items():
        click.echo(f"cycle {cycle:<14} {count} accepted")


@corpus.command("export")
@click.option("--format", "fmt", type=click.Choice(["chat-jsonl"]), required=True,
              help="chat-jsonl: one {\"messages\": [...]} per line (transformers chat templates, TRL).")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@workdir_option
@db_url_option
@profile_option
@config_option
def export_command(fmt: str, out: Path, workdir: Path, db_url: str | None, profile: str,
                   config_file: Path | None) -> None:
    """Write the fine-tuning dataset: two chat examples (CIFAR-10, MNIST) per corpus program."""
    config = load_profile(profile, config_file)
    db = connect(workdir, db_url)
    try:
        with db.transaction() as session:
            count = export_chat_jsonl(session, out, config.evaluation.param_budget)
    finally:
        db.close()
    click.echo(f"wrote {count} chat examples to {out}")
