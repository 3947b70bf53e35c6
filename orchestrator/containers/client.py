"""The Docker daemon nasloop talks to, and the errors that are the infrastructure's, never a candidate's."""

from __future__ import annotations

import docker
import docker.errors


class InfraError(RuntimeError):
    """Docker itself failed (daemon down, image missing, API error): never the candidate's fault."""


class ImageError(InfraError):
    """An image is missing or cannot be built."""


def docker_client() -> docker.DockerClient:
    """A client for the local daemon, or ImageError saying clearly that Docker is not reachable."""
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as exc:
        raise ImageError(
            f"Docker is not available ({exc}). nasloop runs candidate code only inside Docker "
            "containers: start the Docker daemon (or check DOCKER_HOST and your permissions)."
        ) from None
    return client


def daemon_name(client: docker.DockerClient) -> str:
    """The name of the machine the daemon runs on (what evaluated a candidate), or "" if unknown."""
    try:
        return str(client.info().get("Name", ""))
    except docker.errors.DockerException:
        return ""
