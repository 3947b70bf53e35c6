"""`nasloop data`: fetch and prepare datasets."""

from __future__ import annotations

import json
from pathlib import Path

import click

from orchestrator.commands.common import load_profile, profile_option, workdir_option
from orchestrator.data import (CIFAR10_MD5, CIFAR10_URL, DATASETS, DataError, DatasetMeta, default_source, fetch_cifar10,
                               open_prepared, prepare_from)


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
@click.option("--train-subset", type=click.IntRange(min=0), default=None,
              help="Train on this many images of the training split (0: all) [default: the profile's "
                   "data.train_subset when DATASET is the profile's dataset, else 0].")
@profile_option
@data_dir_option
@workdir_option
def prepare_command(dataset: str, source: Path | None, secret_seed: int | None, train_subset: int | None, profile: str,
                    data_dir: Path | None, workdir: Path) -> None:
    """Prepare DATASET into the data directory (uint8 arrays, a private hold-out chosen by a secret)."""
    try:
        _prepare(dataset, source or default_source(dataset, workdir), profile, data_dir or workdir / "data",
                 secret_seed, train_subset)
    except DataError as exc:
        raise click.ClickException(str(exc)) from None


def _prepare(dataset: str, source: Path | None, profile: str, data_dir: Path, secret: int | None = None,
             train_subset: int | None = None) -> None:
    config = load_profile(profile, None).data
    if train_subset is None:
        train_subset = config.train_subset if dataset == config.dataset else 0
    prepared = prepare_from(dataset, source, data_dir, config.holdout_fraction, secret, train_subset)
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
    for meta in _prepared_metas(root):
        try:
            m = open_prepared(root, meta.dataset, meta.train_subset).meta
        except DataError:
            continue
        found = True
        subset = f" (training subset of {m.train_subset})" if m.train_subset else ""
        click.echo(f"{m.dataset}: {m.n_train} train{subset} / {m.n_holdout} hold-out / {m.n_test} test, "
                   f"{m.channels}x{m.height}x{m.width}, source: {m.source}")
    if not found:
        click.echo(f"no prepared datasets in {root}")


def _prepared_metas(root: Path) -> list[DatasetMeta]:
    """What each prepared directory under `root` says it holds (unreadable ones are left out)."""
    metas = []
    for meta_path in sorted(root.glob("*/meta.json")):
        try:
            raw = json.loads(meta_path.read_text())
            meta = DatasetMeta(**raw)
        except (OSError, ValueError, TypeError):
            continue
        if meta.dataset in DATASETS:
            metas.append(meta)
    return metas
