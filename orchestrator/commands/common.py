"""Options and helpers shared by every `nasloop` command: the workspace, the profile, the database."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError

from orchestrator.config import ConfigError, ExperimentConfig, load_config
from orchestrator.store.database import DB_URL_ENV, Database, open_database

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


def executor_options(func: F) -> F:
    """`--executor local|ray` and `--ray-address ADDRESS`: where candidates' containers run."""
    func = click.option("--ray-address", default=None,
                        help='The Ray cluster to join with --executor ray: "auto" (started on this machine) or '
                             "HOST:PORT of its head [default: the profile's executor.address].")(func)
    return click.option("--executor", type=click.Choice(["local", "ray"]), default=None,
                        help="Where candidates' containers run: this machine's Docker daemon, or the nodes of a Ray "
                             "cluster [default: the profile's executor.kind].")(func)


def executor_overrides(executor: str | None, ray_address: str | None) -> dict[str, Any]:
    """The `[executor]` keys the options set, as config overrides."""
    chosen: dict[str, Any] = {}
    if executor is not None:
        chosen["kind"] = executor
    if ray_address is not None:
        chosen["address"] = ray_address
    return {"executor": chosen} if chosen else {}


def load_profile(profile: str, config_file: Path | None,
                 overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """The resolved configuration, or a usage error naming the bad key."""
    try:
        return load_config(profile, config_file, overrides)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def connect(workdir: Path, db_url: str | None) -> Database:
    """The experiment database (migrated), or a clear error."""
    try:
        return open_database(workdir, db_url)
    except (SQLAlchemyError, OSError) as exc:
        raise click.ClickException(f"cannot open the database: {exc}") from None
