"""`nasloop images base|wheelhouse|build|show`: the base image, the wheelhouse and the content-tagged
images (what `make images` runs, in that order)."""

from __future__ import annotations

import shlex

import click
import docker.errors

from orchestrator.config import REPO_ROOT
from orchestrator.containers import images as img
from orchestrator.containers.base import choose_base_image
from orchestrator.containers.client import ImageError, docker_client
from orchestrator.containers.wheelhouse import download, wheelhouse_build_args

CHOSEN_BASE = REPO_ROOT / "build" / "base-image"

_base_option = click.option("--base-image", default=None,
                            help="Base image [default: the one `nasloop images base` chose, see README].")
_build_args_option = click.option(
    "--build-args", "build_args_text", envvar="IMAGE_BUILD_ARGS", default="", show_envvar=True,
    help="Build arguments as one shell-quoted string, e.g. \"SANDBOX_PACKAGES='numpy safetensors' TORCHVISION=1\".")


@click.group()
def images() -> None:
    """Build and inspect nasloop's Docker images."""


def _client():  # type: ignore[no-untyped-def]
    try:
        return docker_client()
    except ImageError as exc:
        raise click.ClickException(str(exc)) from None


def parse_build_args(text: str, items: tuple[str, ...] = ()) -> dict[str, str]:
    """KEY=VALUE pairs from a shell-quoted string (values keep their spaces) and single items."""
    args = {}
    for item in [*shlex.split(text), *items]:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="build arguments")
        args[key] = value
    return args


def _chosen_base(base_image: str | None) -> str:
    if base_image:
        return base_image
    if CHOSEN_BASE.is_file():
        return CHOSEN_BASE.read_text().strip()
    raise click.ClickException("no base image chosen yet: run `make base-image` (or pass --base-image)")


@images.command("base")
@_base_option
def base(base_image: str | None) -> None:
    """Choose the base image (pull it, or build the local Debian one as root) and record it."""
    try:
        chosen = choose_base_image(_client(), base_image, say=lambda m: click.echo(m, err=True))
    except ImageError as exc:
        raise click.ClickException(str(exc)) from None
    CHOSEN_BASE.parent.mkdir(parents=True, exist_ok=True)
    CHOSEN_BASE.write_text(chosen + "\n")
    click.echo(chosen)


@images.command("wheelhouse")
@_base_option
@_build_args_option
def wheelhouse(base_image: str | None, build_args_text: str) -> None:
    """Download the images' wheels for the base image's Python and platform (not the host's)."""
    try:
        download(_client(), _chosen_base(base_image), parse_build_args(build_args_text), say=click.echo)
    except ImageError as exc:
        raise click.ClickException(str(exc)) from None


@images.command("build")
@_base_option
@_build_args_option
@click.option("--build-arg", "items", multiple=True, metavar="KEY=VALUE", help="One more build argument.")
@click.argument("names", nargs=-1, type=click.Choice(sorted(img.IMAGES)))
def build(base_image: str | None, build_args_text: str, items: tuple[str, ...], names: tuple[str, ...]) -> None:
    """Build NAMES (default: all images) for the current sources, base image and build arguments."""
    args = parse_build_args(build_args_text, items)
    for key, value in wheelhouse_build_args(img.WHEELHOUSE).items():  # as the wheelhouse was made
        args.setdefault(key, value)
    config = img.BuildConfig(_chosen_base(base_image), args)
    try:
        client = _client()
        for name in names or tuple(sorted(img.IMAGES)):
            if not (img.REPO_ROOT / img.IMAGES[name].dockerfile).is_file():
                click.echo(f"skipping {name}: {img.IMAGES[name].dockerfile} does not exist")
                continue
            img.build(client, name, config, log=click.echo)
    except (ImageError, docker.errors.DockerException) as exc:
        raise click.ClickException(str(exc)) from None


@images.command("show")
def show() -> None:
    """Print each image's content tag, whether it is built, and how."""
    client = _client()
    for name in sorted(img.IMAGES):
        try:
            click.echo(f"{name}: {img.resolve(client, name)} {img.image_build_config(client, name)}")
        except ImageError as exc:
            click.echo(f"{name}: {exc}")
