"""`nasloop corpus import|synth|stats|check|export`: the supervised corpus in the experiment database."""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from orchestrator.commands.common import (config_option, connect, db_url_option, load_profile, profile_option,
                                         workdir_option)
from orchestrator.containers.client import ImageError, InfraError
from orchestrator.corpus.checks import (ChecksMissing, check_corpus, check_counts, checked_protocols,
                                        prompt_check_protocol, unchecked_programs, valid_program_ids)
from orchestrator.corpus.export import corpus_stats, export_chat_jsonl
from orchestrator.corpus.importing import ImportReport, import_lemur
from orchestrator.corpus.synth import synthesize_into_corpus
from orchestrator.evaluation.result import EvaluationResult
from orchestrator.evaluation.run import fit_to_machine, make_checker, sandbox_docker
from orchestrator.untrusted import printable


@click.group()
def corpus() -> None:
    """The supervised seed corpus: LEMUR programs, de-duplicated, and their validity checks."""


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
    _echo_import(report)
    if report.read == 0 and report.problems:
        raise click.ClickException(f"nothing could be read from {lemur_path}")


def _echo_import(report: ImportReport) -> None:
    for reason, count in sorted(report.dropped.items()):
        click.echo(f"  dropped {count:6d}  {reason}")
    click.echo(f"  kept    {report.kept:6d}  new corpus programs")


def _checker_for(config, workdir: Path, jobs: int | None, what: str):  # type: ignore[no-untyped-def]
    """(config fitted to this machine, Checker at the prompt's shape, placement); a usage error
    without Docker or the sandbox image."""
    if jobs is not None:
        config = dataclasses.replace(config, evaluation=dataclasses.replace(
            config.evaluation, jobs=jobs, jobs_per_gpu=jobs))
    try:
        docker = sandbox_docker()
        config, placement = fit_to_machine(config, docker, say=lambda m: click.echo(m, err=True))
    except ImageError as exc:
        raise click.ClickException(f"{exc}\nnothing was {what} (program code never runs outside Docker)") from None
    except InfraError as exc:
        raise click.ClickException(f"infrastructure failure: {exc}\nnothing was {what}") from None
    return config, make_checker(docker, config, prompt_check_protocol(config), workdir, placement), placement


@corpus.command("synth")
@click.option("--count", type=click.IntRange(min=1), default=None,
              help="Programs to draw from the grammar [default: the profile's grammar.programs].")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="The grammar's seed; program i of a seed is always the same program "
                   "[default: the profile's grammar.seed, else 0].")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Programs checked at once [default: the profile's evaluation.jobs].")
@workdir_option
@db_url_option
@profile_option
@config_option
def synth_command(count: int | None, seed: int | None, jobs: int | None, workdir: Path, db_url: str | None,
                  profile: str, config_file: Path | None) -> None:
    """Import programs of the seed-corpus grammar (source "grammar"), each checked first.

    The programs are small CNNs in the API contract, valid by construction at the profile's budget
    (see orchestrator/corpus/grammar). They are de-duplicated as a LEMUR import is; those that would
    join the corpus run through the sandbox's validity checks at the shape of the profile's prompt,
    and only those that pass are imported, with their check results. Not part of the paper: a CPU
    stand-in for what a large code model knows.
    """
    config = load_profile(profile, config_file)
    if count is None:
        if config.grammar is None:
            raise click.UsageError(f"profile {profile!r} has no [grammar] section: give --count (or use --profile mini)")
        count = config.grammar.programs
    if seed is None:
        seed = config.grammar.seed if config.grammar else 0
    config, checker, placement = _checker_for(config, workdir, jobs, "imported")
    db = connect(workdir, db_url)
    console = Console(stderr=True)
    started = time.monotonic()
    try:
        with Progress(TextColumn("check"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[valid]} valid"),
                      TimeElapsedColumn(), console=console, transient=True) as progress:
            task = progress.add_task("check", total=None, valid=0)
            valid = Counter[str]()

            def advance(result: EvaluationResult) -> None:
                valid["ok" if result.valid else "failed"] += 1
                progress.update(task, advance=1, valid=valid["ok"])

            try:
                with checker:
                    report = synthesize_into_corpus(db, config, checker, placement, count, seed, on_result=advance)
            except InfraError as exc:
                raise click.ClickException(f"infrastructure failure: {exc}\nnothing was imported") from None
    finally:
        db.close()
    styles = ", ".join(f"{k} {v}" for k, v in sorted(report.styles.items()))
    blocks = ", ".join(f"{k} {v}" for k, v in sorted(report.blocks.items()))
    click.echo(f"drew {report.drawn} programs of grammar seed {seed} (styles: {styles}; blocks: {blocks})")
    click.echo(f"checked {report.checked} in the sandbox under {checker.protocol.id}: "
               f"{report.checked - len(report.failed)} valid, {len(report.failed)} failed "
               f"({time.monotonic() - started:.0f}s)")
    for name, result in report.failed:  # the error text comes from a container: shown escaped
        last = (result.error or "").strip().splitlines()[-1:] or [""]
        click.echo(printable(f"  not imported: {name}: {result.failure}: {last[0]}", 300, keep_lines=False), err=True)
    assert report.imported is not None
    _echo_import(report.imported)


@corpus.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@workdir_option
@db_url_option
def stats_command(as_json: bool, workdir: Path, db_url: str | None) -> None:
    """Programs by source and cycle, clusters, chat examples, validity checks."""
    db = connect(workdir, db_url)
    try:
        with db.transaction() as session:
            stats = corpus_stats(session)
            stats["checks"] = {protocol: check_counts(session, protocol) for protocol in checked_protocols(session)}
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
    for protocol, counts in stats["checks"].items():
        _echo_counts(protocol, counts)


@corpus.command("check")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Programs checked at once [default: the profile's evaluation.jobs].")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Check at most N programs this run.")
@workdir_option
@db_url_option
@profile_option
@config_option
def check_command(jobs: int | None, limit: int | None, workdir: Path, db_url: str | None, profile: str,
                  config_file: Path | None) -> None:
    """Run every unchecked corpus program through the sandbox's validity checks.

    Each program gets one hardened container (import, instantiation, parameter budget, dummy
    forward; no data, no training) at the shape the generation prompt states. Outcomes are stored
    per check protocol; an interrupted run resumes with the programs not yet checked.
    """
    config, checker, placement = _checker_for(load_profile(profile, config_file), workdir, jobs, "checked")
    protocol = checker.protocol
    db = connect(workdir, db_url)
    console = Console(stderr=True)
    try:
        with db.transaction() as session:
            pending = len(unchecked_programs(session, protocol.id))
        total = min(pending, limit) if limit else pending
        console.print(f"checking {total} corpus program(s) under {protocol.id} with {checker.image.tag} "
                      f"({len(placement.slots())} at a time)")
        outcomes: Counter[str] = Counter()
        started = time.monotonic()
        with Progress(TextColumn("check"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[valid]} valid"),
                      TimeElapsedColumn(), console=console, transient=True) as progress:
            task = progress.add_task("check", total=total, valid=0)

            def advance(result: EvaluationResult) -> None:
                outcomes["ok" if result.valid else str(result.failure)] += 1
                progress.update(task, advance=1, valid=outcomes["ok"])

            try:
                with checker:
                    check_corpus(db, checker, placement, limit, on_result=advance)
            except InfraError as exc:
                raise click.ClickException(f"infrastructure failure: {exc}\n"
                                           f"{sum(outcomes.values())} results were kept; run again to resume") from None
        with db.transaction() as session:
            counts = check_counts(session, protocol.id)
    finally:
        db.close()
    click.echo(f"checked {sum(outcomes.values())} program(s) in {time.monotonic() - started:.0f}s")
    _echo_counts(protocol.id, counts)


def _echo_counts(protocol_id: str, counts: dict[str, int]) -> None:
    checked = sum(n for outcome, n in counts.items() if outcome != "unchecked")
    click.echo(f"corpus under {protocol_id}: {counts.get('ok', 0)} of {checked} checked programs valid, "
               f"{counts.get('unchecked', 0)} unchecked")
    for outcome, n in counts.items():
        if outcome not in ("ok", "unchecked"):
            click.echo(f"  {outcome:<20} {n}")


@corpus.command("export")
@click.option("--format", "fmt", type=click.Choice(["chat-jsonl"]), required=True,
              help="chat-jsonl: one {\"messages\": [...]} per line (transformers chat templates, TRL).")
@click.option("--valid-only", is_flag=True,
              help="Only the programs that passed `nasloop corpus check` under this profile.")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@workdir_option
@db_url_option
@profile_option
@config_option
def export_command(fmt: str, valid_only: bool, out: Path, workdir: Path, db_url: str | None, profile: str,
                   config_file: Path | None) -> None:
    """Write the fine-tuning dataset: two chat examples (CIFAR-10, MNIST) per corpus program."""
    config = load_profile(profile, config_file)
    db = connect(workdir, db_url)
    try:
        with db.transaction() as session:
            program_ids = None
            if valid_only:
                try:
                    program_ids = valid_program_ids(session, prompt_check_protocol(config).id)
                except ChecksMissing as exc:
                    raise click.ClickException(str(exc)) from None
            count = export_chat_jsonl(session, out, config.evaluation.param_budget, program_ids)
    finally:
        db.close()
    click.echo(f"wrote {count} chat examples to {out}")
