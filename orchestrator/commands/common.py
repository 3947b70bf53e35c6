"""Options shared by every `nasloop` command."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

import click

from orchestrator.config import ConfigError, ExperimentConfig, load_config
from orchestrator.db import DB_URL_ENV

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


def db_url_option(func: F) -> F:
    """`--db-url URL` (or $NASLOOP_DB_URL): any SQLAlchemy URL instead of <workdir>/nasloop.db."""
    return click.option("--db-url", envvar=DB_URL_ENV, default=None, show_envvar=True,
                        help="SQLAlchemy database URL [default: sqlite file <workdir>/nasloop.db].")(func)


def load_profile(profile: str, config_file: Path | None) -> ExperimentConfig:
    try:
        return load_config(profile, config_file)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def sandbox(nothing_done: str):  # type: ignore[no-untyped-def]
    """The Docker client and the sandbox image for these sources, orphans swept; a ClickException
    saying `nothing_done` (e.g. "nothing was evaluated") when Docker or the image is missing."""
    from orchestrator import images as img
    from orchestrator.containers import sweep_orphans

    try:
        client = img.docker_client()
        image = img.resolve(client, "sandbox")
        sweep_orphans(client)
    except img.ImageError as exc:
        raise click.ClickException(f"{exc}\n{nothing_done} (program code never runs outside Docker)") from None
    return client, image
