"""`nasloop evaluate FILE...`: run untrusted candidate programs in the sandbox and score them."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from orchestrator.commands.common import config_option, profile_option, sandbox, workdir_option
from orchestrator.commands.data import data_dir_option
from orchestrator.config import ConfigError, load_config
from orchestrator.containers import InfraError
from orchestrator.data import DATASETS, DataError, ensure_prepared
from orchestrator.evaluate import (CHECK_PROTOCOL_NAME, Checker, EvaluationResult, Evaluator, evaluate_many,
                                  make_check_protocol, scoring_set)


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dataset", type=click.Choice(DATASETS), default=None, help="Dataset [default: the profile's].")
@data_dir_option
@profile_option
@config_option
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Wall-clock limit per phase in seconds [default: the profile's].")
@click.option("--memory", default=None, help="Memory limit per container, e.g. 4g [default: the profile's].")
@click.option("--jobs", type=click.IntRange(min=1), default=None, help="Candidates evaluated at once.")
@click.option("--check-only", is_flag=True,
              help="Only the validity checks (contract, import, instantiation, parameter budget, dummy "
                   "forward) at the dataset's input shape: no training, no accuracy.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line per file.")
@workdir_option
def evaluate(files: tuple[Path, ...], dataset: str | None, data_dir: Path | None, profile: str,
             config_file: Path | None, timeout: float | None, memory: str | None, jobs: int | None,
             check_only: bool, as_json: bool, workdir: Path) -> None:
    """Evaluate each FILE in hardened Docker containers: contract check, one training epoch,
    prediction, host-computed accuracy on the test split and the private hold-out."""
    overrides: dict[str, Any] = {"evaluation": {}, "data": {}}
    if timeout is not None:
        overrides["evaluation"].update(train_timeout_s=timeout, predict_timeout_s=timeout, check_timeout_s=timeout)
    if memory is not None:
        overrides["evaluation"]["memory"] = memory
    if jobs is not None:
        overrides["evaluation"]["jobs"] = jobs
    if dataset is not None:
        overrides["data"]["dataset"] = dataset
    try:
        config = load_config(profile, config_file, overrides)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    client, image = sandbox("nothing was evaluated")
    try:
        prepared = ensure_prepared(config.data.dataset, workdir, data_dir or workdir / "data",
                                   config.data.holdout_fraction, config.data.seed)
    except DataError as exc:
        raise click.ClickException(str(exc)) from None

    sources = [(str(path), path.read_bytes()) for path in files]
    console = Console(stderr=True)
    printer = _print_json if as_json else None
    if check_only:
        meta = prepared.meta
        protocol = make_check_protocol(config.evaluation, meta.in_shape, meta.num_classes)
        checker = Checker(client, image, config.evaluation, protocol, workdir / "scratch" / "checks")
        console.print(f"checking {len(sources)} file(s) at {'x'.join(map(str, meta.in_shape[1:]))} with "
                      f"{image.tag} ({protocol.id}, {config.evaluation.jobs} at a time)")
        try:
            results = evaluate_many(checker, sources, config.evaluation.jobs, on_result=printer)
        except InfraError as exc:
            raise click.ClickException(f"infrastructure failure: {exc}") from None
        if not as_json:
            _print_table(results)
        return
    try:
        with scoring_set(prepared, workdir / "scratch") as scoring:
            evaluator = Evaluator(client, image, prepared, config.evaluation, workdir / "artefacts", scoring)
            console.print(f"evaluating {len(sources)} file(s) on {config.data.dataset} with {image.tag} "
                          f"({evaluator.protocol.id}, {config.evaluation.jobs} at a time)")
            results = evaluate_many(evaluator, sources, config.evaluation.jobs, on_result=printer)
    except InfraError as exc:
        raise click.ClickException(f"infrastructure failure: {exc}") from None
    if not as_json:
        _print_table(results)


def _print_json(result: EvaluationResult) -> None:
    sys.stdout.write(json.dumps(result.as_json()) + "\n")
    sys.stdout.flush()


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}%"


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def _print_table(results: list[EvaluationResult]) -> None:
    table = Table(title="nasloop evaluate")
    checks = all(r.protocol.startswith(CHECK_PROTOCOL_NAME) for r in results)
    columns = ["file", "sha256", "outcome", "params"]
    columns += ["check s"] if checks else ["test acc", "hold-out acc", "train s", "predict s"]
    for column in columns:
        table.add_column(column, overflow="fold")
    for r in results:
        row = [r.path, r.sha256[:12], "ok" if r.valid else str(r.failure), "" if r.params is None else f"{r.params:,}"]
        if checks:
            row.append(_seconds(r.check_seconds))
        else:
            row += [_pct(r.accuracy), _pct(r.holdout_accuracy), _seconds(r.train_seconds), _seconds(r.predict_seconds)]
        table.add_row(*row)
    console = Console()
    console.print(table)
    for r in results:
        if r.error:
            first = r.error.strip().splitlines()[-1] if r.error.strip() else ""
            console.print(f"{r.path}: {r.failure}: {first}", markup=False, highlight=False)
