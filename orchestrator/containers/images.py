"""The Docker images nasloop runs, named by their content and their build.

An image is built from its Dockerfile, its requirements and the packages baked into it (the
sources), on a base image with the build arguments its Dockerfile declares and the wheels of the
wheelhouse (the build). Its tag is `nasloop-<name>:<sources hash>-<build hash>`; the last build for the current sources is also
tagged `nasloop-<name>:<sources hash>`, which is what `resolve` uses. So a result always records
exactly which image (tag and image id) evaluated a candidate, a stale image is never used silently,
and changing the base image, a build argument or a wheel rebuilds.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import docker
import docker.errors

from orchestrator.config import REPO_ROOT
from orchestrator.containers.client import ImageError, docker_client

WHEELHOUSE = REPO_ROOT / "build" / "wheelhouse"
DEFAULT_BASE_IMAGE = "nasloop-base:bookworm"
SOURCE_HASH_LABEL = "org.nasloop.source-hash"
BUILD_HASH_LABEL = "org.nasloop.build-hash"
BASE_IMAGE_LABEL = "org.nasloop.base-image"
BUILD_ARGS_LABEL = "org.nasloop.build-args"


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
        """The tag of the current build for these sources."""
        return f"nasloop-{self.name}:{self.source_hash()[:16]}"

    def declared_args(self) -> set[str]:
        """The build arguments its Dockerfile declares (`ARG NAME`): only these are passed to its build
        and part of its identity, so an argument of one image never rebuilds another."""
        text = (REPO_ROOT / self.dockerfile).read_text()
        return set(re.findall(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)", text, flags=re.MULTILINE))

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
class BuildConfig:
    """How an image is built: the base image and the build arguments, passed intact."""

    base_image: str
    build_args: dict[str, str] = field(default_factory=dict)

    def fingerprint(self, client: docker.DockerClient) -> str:
        """The build's identity: the base image's id, the arguments, and the wheels it installs from."""
        try:
            base_id = client.images.get(self.base_image).id
        except docker.errors.ImageNotFound:
            raise ImageError(f"base image {self.base_image} is missing: run `make base-image` "
                             "(it pulls a registry image or builds the local one as root)") from None
        wheels = sorted(p.name for p in WHEELHOUSE.glob("*.whl")) if WHEELHOUSE.is_dir() else []
        return hashlib.sha256(json.dumps({"base": self.base_image, "base_id": base_id, "args": self.build_args,
                                          "wheels": wheels}, sort_keys=True).encode()).hexdigest()


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
    """The built image for the current sources (its last build), or ImageError telling how to build it."""
    tag = IMAGES[name].tag()
    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        raise ImageError(f"image {tag} is not built for the current sources: run `make images`") from None
    return ResolvedImage(tag=tag, id=image.id)


def build(client: docker.DockerClient, name: str, config: BuildConfig,
          log: Callable[[str], None] = print) -> ResolvedImage:
    """Build image `name` for the current sources with `config` (skipped when that build exists) and
    make it the current one for these sources."""
    spec = IMAGES[name]
    declared = spec.declared_args()
    config = BuildConfig(config.base_image, {k: v for k, v in config.build_args.items() if k in declared})
    source_hash = spec.source_hash()
    build_hash = config.fingerprint(client)
    current = spec.tag()
    full = f"{current}-{build_hash[:8]}"
    try:
        image = client.images.get(full)
        log(f"{full} is up to date")
    except docker.errors.ImageNotFound:
        if not list(WHEELHOUSE.glob("pip-*.whl")):
            raise ImageError(f"no wheelhouse at {WHEELHOUSE.relative_to(REPO_ROOT)}: run `make wheelhouse`") from None
        log(f"building {full} FROM {config.base_image} ...")
        args = {"BASE_IMAGE": config.base_image, **config.build_args}
        labels = {SOURCE_HASH_LABEL: source_hash, BUILD_HASH_LABEL: build_hash, BASE_IMAGE_LABEL: config.base_image,
                  BUILD_ARGS_LABEL: json.dumps(config.build_args, sort_keys=True)}
        stream = client.api.build(path=str(REPO_ROOT), dockerfile=spec.dockerfile, tag=full, buildargs=args,
                                  labels=labels, rm=True, forcerm=True, decode=True, pull=False)
        for chunk in stream:
            if "error" in chunk:
                raise ImageError(f"building {full} failed: {chunk['error'].strip()}")
            text = chunk.get("stream", "").rstrip()
            if text.startswith("Step "):
                log(f"  {text}")
        image = client.images.get(full)
        log(f"built {full} ({image.id[:19]})")
    repository, tag = current.split(":")
    image.tag(repository, tag)
    return ResolvedImage(tag=current, id=image.id)


LLM_BACKEND_LABEL = "org.nasloop.llm-backend"  # set by images/llm/Dockerfile from its LLM_BACKEND argument


def llm_backend_of(client: docker.DockerClient, image: str) -> str:
    """The sampling backend the LLM image `image` (tag or id) was built for: transformers or vllm."""
    labels = client.images.get(image).labels or {}
    return labels.get(LLM_BACKEND_LABEL, "transformers")


def require_llm_backend(client: docker.DockerClient, image: str, backend: str) -> None:
    """ImageError unless the LLM image can run `backend` (the vLLM one runs both)."""
    built = llm_backend_of(client, image)
    if backend == "vllm" and built != "vllm":
        raise ImageError(f"the profile's [generation] backend is vllm but the LLM image {image} was built "
                         "without vLLM: run `make images LLM_BACKEND=vllm` (GPU only; see the README)")


def image_build_config(client: docker.DockerClient, name: str) -> dict[str, str] | None:
    """The base image and build arguments of the current build of `name`, if it is built."""
    try:
        labels = client.images.get(IMAGES[name].tag()).labels
    except docker.errors.ImageNotFound:
        return None
    return {"base_image": labels.get(BASE_IMAGE_LABEL, ""), "build_args": labels.get(BUILD_ARGS_LABEL, "{}")}
