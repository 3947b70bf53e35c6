"""Options shared by every `nasloop` command."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

import click

F = TypeVar("F", bound=Callable[..., object])

DEFAULT_WORKDIR = Path("runs")


def workdir_option(func: F) -> F:
    """`--workdir DIR` (default `runs/`): database, data, artefacts and adapters live there."""
    return click.option(
        "--workdir",
        type=click.Path(file_okay=False, path_type=Path),
        default=DEFAULT_WORKDIR,
        show_default=True,
        help="Workspace directory: database, prepared data, candidate artefacts, adapters.",
    )(func)


def profile_option(func: F) -> F:
    return click.option("--profile", default="paper", show_default=True,
                        help="Configuration profile (configs/<name>.toml).")(func)


def config_option(func: F) -> F:
    return click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
                        default=None, help="TOML file layered on top of the profile.")(func)
