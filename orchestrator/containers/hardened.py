"""Run one sandbox phase in a fresh, hardened container and report what the host observed.

Every limit is enforced from outside: no network, read-only root, non-root user, no capabilities,
no-new-privileges, default seccomp, pids/memory(=memory+swap)/CPU limits, a size-capped /tmp, a
per-file size limit, closed stdin, a small log, an allow-listed environment and read-only mounts of
only what the phase needs. The host owns time: on expiry the container is killed and removed.
Containers are labelled with their owner so that a later run can sweep those left behind by a
crashed orchestrator. Nothing is ever exec'd or copied into a candidate container.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
import docker.types
import requests.exceptions

from orchestrator.containers.client import InfraError
from orchestrator.containers.labels import managed_labels

CANDIDATE_UID = 10001
_LOG_TAIL_CHARS = 4000
_POLL_SECONDS = 0.25
_MAX_OUTPUT_ENTRIES = 64


@dataclass(frozen=True)
class Limits:
    timeout_s: float
    memory: str
    cpus: float
    pids: int
    tmpfs_size: str
    max_output_bytes: int

    @property
    def threads(self) -> int:
        """Threads the candidate's BLAS/OpenMP may use: its whole CPUs, at least one."""
        return max(1, int(self.cpus))


@dataclass(frozen=True)
class Phase:
    """One container run: image, command, read-only mounts (host path -> container path), output dir."""

    name: str
    image: str
    command: list[str]
    mounts: dict[Path, str]
    out_dir: Path
    labels: dict[str, str] = field(default_factory=dict)
    gpu: int | None = None  # pin this GPU index; None: no GPU (placement, not part of a protocol)


@dataclass(frozen=True)
class PhaseOutcome:
    exit_code: int | None
    timed_out: bool
    oom_killed: bool
    output_overflow: str | None  # why the output directory broke its caps, if it did
    seconds: float  # host wall clock from start to exit (or kill)
    log_tail: str  # untrusted text, trimmed and escaped


def escape_log(raw: bytes) -> str:
    """Untrusted output as printable text: the tail only, control characters escaped."""
    text = raw.decode("utf-8", errors="replace")[-_LOG_TAIL_CHARS:]
    return "".join(c if c.isprintable() or c in "\n\t" else f"\\x{ord(c):02x}" for c in text)


def _output_problem(out_dir: Path, max_bytes: int) -> str | None:
    total = 0
    entries = 0
    for root, dirs, files in os.walk(out_dir):
        for name in dirs + files:
            entries += 1
            if entries > _MAX_OUTPUT_ENTRIES:
                return f"more than {_MAX_OUTPUT_ENTRIES} entries in the output directory"
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
        if total > max_bytes:
            return f"output directory over {max_bytes:,} bytes"
    return None


def _container_user() -> str:
    uid = os.getuid()
    return f"{CANDIDATE_UID}:{CANDIDATE_UID}" if uid == 0 else f"{uid}:{os.getgid()}"


def prepare_out_dir(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=False)
    if os.getuid() == 0:
        os.chown(out_dir, CANDIDATE_UID, CANDIDATE_UID)
    out_dir.chmod(0o755)


def run_phase(client: docker.DockerClient, phase: Phase, limits: Limits) -> PhaseOutcome:
    """Run `phase` to completion or timeout; the container is always removed."""
    prepare_out_dir(phase.out_dir)
    mounts = [docker.types.Mount(target, str(source.resolve()), type="bind", read_only=True)
              for source, target in phase.mounts.items()]
    mounts.append(docker.types.Mount("/out", str(phase.out_dir.resolve()), type="bind", read_only=False))
    device_requests = None
    if phase.gpu is not None:
        device_requests = [docker.types.DeviceRequest(device_ids=[str(phase.gpu)], capabilities=[["gpu"]])]
    threads = limits.threads
    environment = {"HOME": "/tmp", "TMPDIR": "/tmp", "PYTHONHASHSEED": "0",
                   "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    try:
        container = client.containers.create(
            phase.image, command=phase.command, user=_container_user(), network_mode="none",
            read_only=True, cap_drop=["ALL"], security_opt=["no-new-privileges"], privileged=False,
            pids_limit=limits.pids, mem_limit=limits.memory, memswap_limit=limits.memory,
            nano_cpus=int(limits.cpus * 1e9), shm_size="64m",
            tmpfs={"/tmp": f"rw,noexec,nosuid,nodev,size={limits.tmpfs_size}"},
            ulimits=[docker.types.Ulimit(name="fsize", soft=limits.max_output_bytes, hard=limits.max_output_bytes),
                     docker.types.Ulimit(name="core", soft=0, hard=0),
                     docker.types.Ulimit(name="nofile", soft=1024, hard=1024)],
            stdin_open=False, tty=False, environment=environment, mounts=mounts, working_dir="/tmp",
            log_config=docker.types.LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
            labels=managed_labels("sandbox", **{"org.nasloop.phase": phase.name, **phase.labels}),
            device_requests=device_requests, detach=True,
        )
    except docker.errors.DockerException as exc:
        raise InfraError(f"could not create the {phase.name} container: {exc}") from None

    timed_out = False
    overflow = None
    exit_code: int | None = None
    try:
        try:
            container.start()
        except docker.errors.DockerException as exc:
            raise InfraError(f"could not start the {phase.name} container: {exc}") from None
        started = time.monotonic()
        deadline = started + limits.timeout_s
        while True:
            try:
                exit_code = int(container.wait(timeout=_POLL_SECONDS)["StatusCode"])
                break
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                pass
            overflow = _output_problem(phase.out_dir, limits.max_output_bytes)
            if overflow or time.monotonic() > deadline:
                timed_out = overflow is None
                _kill(container)
                break
        seconds = time.monotonic() - started
        try:
            container.reload()
            oom_killed = bool(container.attrs["State"].get("OOMKilled")) and not timed_out
            logs = container.logs(stdout=True, stderr=True, tail=200)
        except docker.errors.DockerException as exc:
            raise InfraError(f"lost the {phase.name} container: {exc}") from None
        overflow = overflow or _output_problem(phase.out_dir, limits.max_output_bytes)
    finally:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.DockerException as exc:
            raise InfraError(f"could not remove the {phase.name} container: {exc}") from None
    return PhaseOutcome(exit_code=None if timed_out or overflow else exit_code, timed_out=timed_out,
                        oom_killed=oom_killed, output_overflow=overflow, seconds=seconds,
                        log_tail=escape_log(logs))


def _kill(container: docker.models.containers.Container) -> None:
    try:
        container.kill()
    except docker.errors.APIError:
        pass  # it exited on its own meanwhile
    try:
        container.wait(timeout=30)
    except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError, docker.errors.DockerException):
        pass
