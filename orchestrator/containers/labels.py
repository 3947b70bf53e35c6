"""Labels on every container nasloop starts, and the sweep of those a crashed orchestrator left.

Containers outlive the process that started them (SIGKILL, a crash, a lost machine). Each carries
`org.nasloop.managed=1`, its role (`sandbox` or `llm`) and its owner: `host:pid:start-ticks` of the
orchestrator process, unique even after pid reuse. `sweep_orphans` removes those whose owner is gone.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import docker
import docker.errors

MANAGED_LABEL = "org.nasloop.managed"
OWNER_LABEL = "org.nasloop.owner"
ROLE_LABEL = "org.nasloop.role"
GROUP_LABEL = "org.nasloop.group"  # the evaluator (launcher) that started a sandbox container


def managed_labels(role: str, **extra: str) -> dict[str, str]:
    """The labels of a container of `role` started by this process."""
    return {MANAGED_LABEL: "1", OWNER_LABEL: owner_id(), ROLE_LABEL: role, **extra}


def _process_start_ticks(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def owner_id() -> str:
    """host:pid:start-ticks of this orchestrator process (unique even after pid reuse)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_process_start_ticks(os.getpid())}"


def _owner_alive(owner: str) -> bool:
    try:
        host, pid, ticks = owner.rsplit(":", 2)
    except ValueError:
        return False
    if host != socket.gethostname():
        return True  # another machine's container on a shared daemon: not ours to judge
    return _process_start_ticks(int(pid)) == ticks


def sweep_orphans(client: docker.DockerClient) -> int:
    """Remove nasloop containers (sandbox, keeper and LLM) and output volumes whose orchestrator
    process is gone. Returns how many containers were removed."""
    removed = 0
    managed = {"label": f"{MANAGED_LABEL}=1"}
    # Other runs' containers may go while this lists them (a sweep on each node of a cluster, say).
    for container in client.containers.list(all=True, filters=managed, ignore_removed=True):
        if not _owner_alive(container.labels.get(OWNER_LABEL, "")):
            try:
                container.remove(force=True)
                removed += 1
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if exc.status_code != 409:
                    raise  # 409: another sweep of the same daemon is removing it
    for volume in client.volumes.list(filters=managed):
        if not _owner_alive((volume.attrs.get("Labels") or {}).get(OWNER_LABEL, "")):
            try:
                volume.remove(force=True)
            except (docker.errors.NotFound, docker.errors.APIError):
                pass  # gone, or still held by a container being removed: the next sweep takes it
    return removed


def remove_group(client: docker.DockerClient, group: str) -> int:
    """Remove every container and output volume of `group` (one evaluator's), whatever state they
    are in: the backstop that runs when an evaluator closes, so that nothing it started outlives it
    on any path. Returns how many containers were removed."""
    removed = 0
    labelled = {"label": f"{GROUP_LABEL}={group}"}
    for container in client.containers.list(all=True, filters=labelled):
        try:
            container.remove(force=True)
            removed += 1
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError:
            pass  # already being removed by the daemon
    for volume in client.volumes.list(filters=labelled):
        try:
            volume.remove(force=True)
        except (docker.errors.NotFound, docker.errors.APIError):
            pass  # gone, or held by a container still being removed: the next sweep takes it
    return removed
