"""Which base image nasloop's images are built on, chosen so that a user in the `docker` group can
build without root.

In order: the image the user names (`BASE_IMAGE=...`, pulled if missing); else a registry image
(`python:3.11-slim-bookworm`) when it is present or the daemon can pull it; else the local Debian
image (`nasloop-base:bookworm`) when it exists, or built with debootstrap when this process is root
(machines without a registry, such as CI); else an error that says both ways.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable

import docker
import docker.errors

from orchestrator.config import REPO_ROOT
from orchestrator.containers.client import ImageError
from orchestrator.containers.images import DEFAULT_BASE_IMAGE

REGISTRY_BASE_IMAGE = "python:3.11-slim-bookworm"
LOCAL_BASE_SCRIPT = REPO_ROOT / "images" / "base" / "build.sh"


def _present(client: docker.DockerClient, name: str) -> bool:
    try:
        client.images.get(name)
        return True
    except docker.errors.ImageNotFound:
        return False


def _pull(client: docker.DockerClient, name: str) -> str | None:
    """None when `name` was pulled, else why not."""
    repository, _, tag = name.partition(":")
    try:
        client.images.pull(repository, tag=tag or "latest")
        return None
    except docker.errors.DockerException as exc:
        return str(exc).splitlines()[0][:300]


def choose_base_image(client: docker.DockerClient, requested: str | None,
                      say: Callable[[str], None] = print, is_root: bool | None = None) -> str:
    """The base image to build on (present after this call), chosen as the module docstring says."""
    if requested:
        if _present(client, requested):
            return requested
        problem = _pull(client, requested)
        if problem is None:
            return requested
        raise ImageError(f"base image {requested} is not present and cannot be pulled ({problem})")
    if _present(client, REGISTRY_BASE_IMAGE):
        return REGISTRY_BASE_IMAGE
    if _present(client, DEFAULT_BASE_IMAGE):
        return DEFAULT_BASE_IMAGE
    problem = _pull(client, REGISTRY_BASE_IMAGE)
    if problem is None:
        say(f"pulled {REGISTRY_BASE_IMAGE}")
        return REGISTRY_BASE_IMAGE
    root = os.geteuid() == 0 if is_root is None else is_root
    if not root:
        raise ImageError(
            f"no base image: {REGISTRY_BASE_IMAGE} cannot be pulled ({problem}), and the local "
            f"{DEFAULT_BASE_IMAGE} does not exist. Either let Docker reach a registry (or `docker pull` any "
            "Python 3.11 Debian image and pass BASE_IMAGE=...), or have root build the local one once: "
            f"`sudo bash {LOCAL_BASE_SCRIPT.relative_to(REPO_ROOT)}` (debootstrap, Debian packages only)")
    say(f"{REGISTRY_BASE_IMAGE} cannot be pulled ({problem}): building {DEFAULT_BASE_IMAGE} with debootstrap")
    result = subprocess.run(["bash", str(LOCAL_BASE_SCRIPT), DEFAULT_BASE_IMAGE], capture_output=True, text=True)
    if result.returncode != 0 or not _present(client, DEFAULT_BASE_IMAGE):
        raise ImageError(f"building {DEFAULT_BASE_IMAGE} failed: {(result.stderr or result.stdout)[-2000:]}")
    return DEFAULT_BASE_IMAGE
