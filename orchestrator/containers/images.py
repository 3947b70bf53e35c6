"""The Docker images nasloop runs, named by their content.

An image's tag is `nasloop-<name>:<hash>`, where the hash covers its Dockerfile, requirements and
the Python package baked into it. The orchestrator computes the tag from the sources it has, so a
result always records exactly which image (tag and image id) evaluated a candidate, and a stale
image is never used silently.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import docker
import docker.errors

from orchestrator.config import REPO_ROOT
from orchestrator.containers.client import ImageError, docker_client

WHEELHOUSE = REPO_ROOT / "build" / "wheelhouse"
DEFAULT_BASE_IMAGE = "nasloop-base:bookworm"
SOURCE_HASH_LABEL = "org.nasloop.source-hash"
BASE_IMAGE_LABEL = "org.nasloop.base-image"


@dataclass(frozen=True)
class ImageSpec:
    name: str
    sources: tuple[str, ...]  # repository paths whose content defines the image

    @property
    def dockerfile(self) -> str:
        return f"images/{self.name}/Dockerfile"

    def source_hash(self) -> str:
        digest = hashlib.sha256()
        for rel in sorted(self._files()):
            digest.update(rel.encode() + b"\0" + (REPO_ROOT / rel).read_bytes() + b"\0")
        return digest.hexdigest()

    def tag(self) -> str:
        return f"nasloop-{self.name}:{self.source_hash()[:16]}"

    def _files(self) -> list[str]:
        files = []
        for source in self.sources:
            path = REPO_ROOT / source
            candidates = [path] if path.is_file() else sorted(path.rglob("*"))
            for file in candidates:
                if file.is_file() and "__pycache__" not in file.parts and file.suffix != ".pyc":
                    files.append(file.relative_to(REPO_ROOT).as_posix())
        return files


IMAGES: dict[str, ImageSpec] = {
    "sandbox": ImageSpec("sandbox", ("images/sandbox", "contracts", "sandbox")),
    "llm": ImageSpec("llm", ("images/llm", "contracts", "llm")),
}


@dataclass(frozen=True)
class ResolvedImage:
    tag: str
    id: str  # sha256:...

    def __str__(self) -> str:
        return f"{self.tag}@{self.id}"


@dataclass(frozen=True)
class Docker:
    """A reachable daemon and the images built for the current sources."""

    client: docker.DockerClient
    images: dict[str, ResolvedImage]


def connect(*names: str) -> Docker:
    """The daemon and the images `names` resolved; ImageError (clear, actionable) when either is missing."""
    client = docker_client()
    return Docker(client, {name: resolve(client, name) for name in names})


def resolve(client: docker.DockerClient, name: str) -> ResolvedImage:
    """The built image for the current sources, or ImageError telling how to build it."""
    tag = IMAGES[name].tag()
    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        raise ImageError(f"image {tag} is not built for the current sources: run `make images`") from None
    return ResolvedImage(tag=tag, id=image.id)


def build(client: docker.DockerClient, name: str, base_image: str = DEFAULT_BASE_IMAGE,
          build_args: dict[str, str] | None = None,
          log: Callable[[str], None] = print) -> ResolvedImage:
    """Build image `name` from the repository on `base_image` (skipped when already built)."""
    spec = IMAGES[name]
    tag = spec.tag()
    try:
        existing = client.images.get(tag)
        if existing.labels.get(BASE_IMAGE_LABEL) == base_image:
            log(f"{tag} is up to date")
            return ResolvedImage(tag=tag, id=existing.id)
    except docker.errors.ImageNotFound:
        pass
    if not list(WHEELHOUSE.glob("pip-*.whl")):
        raise ImageError(f"no wheelhouse at {WHEELHOUSE.relative_to(REPO_ROOT)}: run `make wheelhouse`")
    try:
        client.images.get(base_image)
    except docker.errors.ImageNotFound:
        raise ImageError(f"base image {base_image} is missing: run images/base/build.sh "
                         "(as root) or pull a CUDA PyTorch image and pass BASE_IMAGE=...") from None
    log(f"building {tag} FROM {base_image} ...")
    args = {"BASE_IMAGE": base_image, **(build_args or {})}
    labels = {SOURCE_HASH_LABEL: spec.source_hash(), BASE_IMAGE_LABEL: base_image}
    stream = client.api.build(path=str(REPO_ROOT), dockerfile=spec.dockerfile, tag=tag, buildargs=args,
                              labels=labels, rm=True, forcerm=True, decode=True, pull=False)
    for chunk in stream:
        if "error" in chunk:
            raise ImageError(f"building {tag} failed: {chunk['error'].strip()}")
        text = chunk.get("stream", "").rstrip()
        if text.startswith("Step "):
            log(f"  {text}")
    image = client.images.get(tag)
    log(f"built {tag} ({image.id[:19]})")
    return ResolvedImage(tag=tag, id=image.id)
