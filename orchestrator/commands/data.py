"""`nasloop data`: fetch and prepare datasets."""

from __future__ import annotations

from pathlib import Path

import click

from orchestrator.commands.common import load_profile, profile_option, workdir_option
from orchestrator.data import CIFAR10_MD5, CIFAR10_URL, DATASETS, DataError, default_source, fetch_cifar10, open_prepared, prepare_from


def data_dir_option(func):  # type: ignore[no-untyped-def]
    return click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="Prepared datasets directory [default: WORKDIR/data].")(func)


@click.group()
def data() -> None:
    """Download and prepare datasets."""


@data.command("fetch")
@click.argument("dataset", type=click.Choice(["cifar10"]))
@click.option("--url", default=CIFAR10_URL, show_default=True, help="Where to download the archive from.")
@click.option("--md5", default=CIFAR10_MD5, show_default=True, help="Expected MD5 of the archive.")
@click.option("--prepare/--no-prepare", "then_prepare", default=True, show_default=True,
              help="Prepare the dataset after downloading.")
@profile_option
@data_dir_option
@workdir_option
def fetch(dataset: str, url: str, md5: str, then_prepare: bool, profile: str, data_dir: Path | None,
          workdir: Path) -> None:
    """Download DATASET's official archive into WORKDIR/downloads and verify it."""
    try:
        archive = fetch_cifar10(workdir / "downloads", url=url, md5=md5)
        click.echo(f"{archive} (md5 {md5} verified)")
        if then_prepare:
            _prepare(dataset, archive, profile, data_dir or workdir / "data")
    except DataError as exc:
        raise click.ClickException(str(exc)) from None


@data.command("prepare")
@click.argument("dataset", type=click.Choice(DATASETS))
@click.option("--source", type=click.Path(path_type=Path), default=None,
              help="CIFAR-10 archive, or directory of IDX files (default: WORKDIR/downloads or the "
                   "Debian dataset-fashion-mnist package).")
@click.option("--secret-seed", type=click.IntRange(min=0, max=2**63 - 1), default=None,
              help="Reproduce a split made elsewhere with this secret (keep it private) [default: a fresh one].")
@profile_option
@data_dir_option
@workdir_option
def prepare_command(dataset: str, source: Path | None, secret_seed: int | None, profile: str, data_dir: Path | None,
                    workdir: Path) -> None:
    """Prepare DATASET into the data directory (uint8 arrays, a private hold-out chosen by a secret)."""
    try:
        _prepare(dataset, source or default_source(dataset, workdir), profile, data_dir or workdir / "data",
                 secret_seed)
    except DataError as exc:
        raise click.ClickException(str(exc)) from None


def _prepare(dataset: str, source: Path | None, profile: str, data_dir: Path, secret: int | None = None) -> None:
    config = load_profile(profile, None).data
    prepared = prepare_from(dataset, source, data_dir, config.holdout_fraction, secret)
    m = prepared.meta
    click.echo(f"prepared {dataset} in {prepared.root}: {m.n_train} train, {m.n_holdout} hold-out, "
               f"{m.n_test} test images of {m.channels}x{m.height}x{m.width}, {m.num_classes} classes")


@data.command("show")
@data_dir_option
@workdir_option
def show(data_dir: Path | None, workdir: Path) -> None:
    """List the prepared datasets."""
    root = data_dir or workdir / "data"
    found = False
    for dataset in DATASETS:
        try:
            m = open_prepared(root, dataset).meta
        except DataError:
            continue
        found = True
        click.echo(f"{dataset}: {m.n_train} train / {m.n_holdout} hold-out / {m.n_test} test, "
                   f"{m.channels}x{m.height}x{m.width}, source: {m.source}")
    if not found:
        click.echo(f"no prepared datasets in {root}")
