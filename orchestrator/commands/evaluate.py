"""`nasloop evaluate FILE...`: run untrusted candidate programs in the sandbox and score them."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from orchestrator.commands.common import (config_option, executor_options, executor_overrides, load_profile,
                                         profile_option, workdir_option)
from orchestrator.commands.data import data_dir_option
from orchestrator.containers.client import ImageError, InfraError
from orchestrator.data import DATASETS, DataError
from orchestrator.evaluation.evaluator import Checker, Evaluator
from orchestrator.evaluation.protocol import CHECK_PROTOCOL_NAME
from orchestrator.evaluation.result import EvaluationResult
from orchestrator.evaluation.run import check_files, evaluate_files
from orchestrator.untrusted import printable


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
@executor_options
@workdir_option
def evaluate(files: tuple[Path, ...], dataset: str | None, data_dir: Path | None, profile: str,
             config_file: Path | None, timeout: float | None, memory: str | None, jobs: int | None,
             check_only: bool, as_json: bool, executor: str | None, ray_address: str | None, workdir: Path) -> None:
    """Evaluate each FILE in hardened Docker containers: contract check, one training epoch,
    prediction, host-computed accuracy on the test split and the private hold-out."""
    overrides: dict[str, Any] = {"evaluation": {}, "data": {}, **executor_overrides(executor, ray_address)}
    if timeout is not None:
        overrides["evaluation"].update(train_timeout_s=timeout, predict_timeout_s=timeout, check_timeout_s=timeout)
    if memory is not None:
        overrides["evaluation"]["memory"] = memory
    if jobs is not None:
        overrides["evaluation"]["jobs"] = jobs
    if dataset is not None:
        overrides["data"]["dataset"] = dataset
    config = load_profile(profile, config_file, overrides)
    console = Console(stderr=True)
    jobs_now = config.evaluation.jobs

    def started(runner: Evaluator | Checker) -> None:
        at_once = f"{jobs_now} at a time" if runner.executor is None else "on the Ray cluster"
        if isinstance(runner, Checker):
            shape = "x".join(map(str, runner.protocol.in_shape[1:]))
            console.print(f"checking {len(files)} file(s) at {shape} with {runner.image.tag} "
                          f"({runner.protocol.id}, {at_once})")
        else:
            console.print(f"evaluating {len(files)} file(s) on {runner.protocol.dataset} with {runner.image.tag} "
                          f"({runner.protocol.id}, {at_once})")

    run = check_files if check_only else evaluate_files
    try:
        results = run(files, config, workdir, data_dir, on_start=started,  # type: ignore[operator]
                      on_result=_print_json if as_json else None, say=lambda m: console.print(m, markup=False))
    except ImageError as exc:
        raise click.ClickException(f"{exc}\nnothing was evaluated (program code never runs outside Docker)") from None
    except InfraError as exc:
        raise click.ClickException(f"infrastructure failure: {exc}") from None
    except DataError as exc:
        raise click.ClickException(str(exc)) from None
    if not as_json:
        _print_table(results)


def result_json(result: EvaluationResult) -> dict[str, Any]:
    """A result as `nasloop evaluate --json` prints it: `path` first, then the result's fields."""
    fields = result.as_json()
    fields.pop("key")
    return {"path": fields.pop("name"), **fields}


def _print_json(result: EvaluationResult) -> None:
    sys.stdout.write(json.dumps(result_json(result)) + "\n")
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
        row = [r.name, r.sha256[:12], "ok" if r.valid else str(r.failure), "" if r.params is None else f"{r.params:,}"]
        if checks:
            row.append(_seconds(r.check_seconds))
        else:
            row += [_pct(r.accuracy), _pct(r.holdout_accuracy), _seconds(r.train_seconds), _seconds(r.predict_seconds)]
        table.add_row(*(Text(printable(cell, keep_lines=False)) for cell in row))  # never rich markup
    console = Console()
    console.print(table)
    for r in results:
        if r.error:
            first = r.error.strip().splitlines()[-1] if r.error.strip() else ""
            console.print(Text(printable(f"{r.name}: {r.failure}: {first}", keep_lines=False)), highlight=False)
