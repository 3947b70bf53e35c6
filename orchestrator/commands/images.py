"""`nasloop images`: build and inspect the content-tagged Docker images."""

from __future__ import annotations

import click
import docker.errors

from orchestrator.containers import images as img
from orchestrator.containers.client import ImageError, docker_client


@click.group()
def images() -> None:
    """Build and inspect nasloop's Docker images."""


@images.command("build")
@click.option("--base-image", default=img.DEFAULT_BASE_IMAGE, show_default=True,
              help="Base image: a CUDA PyTorch image on a GPU workstation, or the local Debian one.")
@click.option("--build-arg", "build_args", multiple=True, metavar="KEY=VALUE",
              help="Extra Docker build argument (e.g. SANDBOX_PACKAGES='numpy safetensors').")
@click.argument("names", nargs=-1, type=click.Choice(sorted(img.IMAGES)))
def build(base_image: str, build_args: tuple[str, ...], names: tuple[str, ...]) -> None:
    """Build NAMES (default: all images) for the current sources."""
    args = {}
    for item in build_args:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--build-arg")
        args[key] = value
    try:
        client = docker_client()
        for name in names or tuple(sorted(img.IMAGES)):
            if not (img.REPO_ROOT / img.IMAGES[name].dockerfile).is_file():
                click.echo(f"skipping {name}: {img.IMAGES[name].dockerfile} does not exist")
                continue
            img.build(client, name, base_image=base_image, build_args=args, log=click.echo)
    except (ImageError, docker.errors.DockerException) as exc:
        raise click.ClickException(str(exc)) from None


@images.command("show")
def show() -> None:
    """Print each image's content tag and whether it is built."""
    try:
        client = docker_client()
    except ImageError as exc:
        raise click.ClickException(str(exc)) from None
    for name in sorted(img.IMAGES):
        try:
            click.echo(f"{name}: {img.resolve(client, name)}")
        except ImageError as exc:
            click.echo(f"{name}: {exc}")
