"""Run one sandbox phase in a fresh, hardened container and report what the host observed.

Every limit is enforced from outside: no network, read-only root, non-root user, no capabilities,
no-new-privileges, default seccomp, pids/memory(=memory+swap)/CPU limits, a size-capped /tmp, a
per-file size limit, core dumps off (RLIMIT_CORE = 1, which Linux also honours for a piped
`core_pattern`), closed stdin, a small log, an allow-listed environment and read-only mounts of only
what the phase needs. The host owns time: on expiry the container is killed and removed (removal of
a phase that has ended, read back and reported can be left to a `Reaper`, off the critical path).

Outputs never touch the host's disk unchecked: `/out` is a tmpfs volume capped in bytes and inodes
by the kernel (a candidate that fills it gets ENOSPC), held by a tiny keeper container so that it
outlives the candidate's; after the phase the host reads it back as one size-capped tar stream into
memory and keeps only regular files at its top. Containers and volumes are labelled with their owner
so that a later run can sweep those left behind by a crashed orchestrator. Nothing is ever exec'd or
copied into a candidate container.
"""

from __future__ import annotations

import io
import os
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
import docker.models.containers
import docker.types
import requests.exceptions

from contracts.sandbox import CONTAINER_OUT_DIR
from orchestrator.containers.client import InfraError
from orchestrator.containers.labels import managed_labels
from orchestrator.untrusted import printable_bytes

CANDIDATE_UID = 10001
READY_LINE = "NASLOOP-READY"  # what `python -m sandbox.serve` prints once it waits for its candidate
# CPU weight (cgroup shares) of a container that is started ahead and waits, and of one that runs a
# candidate: warming up uses only CPU that running candidates leave idle.
WAITING_CPU_SHARES = 2
RUNNING_CPU_SHARES = 1024
MAX_OUTPUT_ENTRIES = 64  # files and directories a phase may leave in /out
_LOG_TAIL_CHARS = 4000
_POLL_SECONDS = 0.25
_TAR_SLACK = 1 << 20  # tar headers and padding on top of the output bytes
_FULL_MARGIN = 1 << 20  # an output this close to the cap filled the volume


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
    """One container run: image, command, read-only mounts (host path -> container path)."""

    name: str
    image: str
    command: list[str]
    mounts: dict[Path, str]
    labels: dict[str, str] = field(default_factory=dict)
    gpu: int | None = None  # pin this GPU index; None: no GPU (placement, not part of a protocol)


@dataclass(frozen=True)
class Outputs:
    """What a phase left in /out, read back by the host: regular files by name (in memory), the
    names of anything else at the top (directories, links, devices), and why it broke its caps."""

    files: dict[str, bytes] = field(default_factory=dict)
    irregular: frozenset[str] = frozenset()
    overflow: str | None = None


@dataclass(frozen=True)
class PhaseOutcome:
    exit_code: int | None
    timed_out: bool
    oom_killed: bool
    outputs: Outputs
    seconds: float  # host wall clock from start to exit (or kill)
    log_tail: str  # untrusted text, trimmed and escaped


CORE_PATTERN = Path("/proc/sys/kernel/core_pattern")


def piped_core_notice(core_pattern: Path = CORE_PATTERN) -> str | None:
    """A one-line notice when this kernel pipes core dumps to a helper (apport, systemd-coredump):
    a candidate that lowers its own RLIMIT_CORE to 0 and crashes runs that helper as root on the
    host. None when dumps go to a file or the pattern cannot be read."""
    try:
        pattern = core_pattern.read_text().strip()
    except OSError:
        return None
    if not pattern.startswith("|"):
        return None
    helper = pattern[1:].split()[0] if pattern[1:].split() else "?"
    return (f"note: kernel.core_pattern pipes core dumps to {helper}: a candidate that crashes on purpose "
            "can make the kernel run it as root on this host; `sysctl kernel.core_pattern=core` (as root) "
            "stops that (README: Residual risks)")


def container_user() -> str:
    """Candidates run as uid 10001 under a root orchestrator, else as the calling user (so that the
    read-only job files of the workspace are readable whatever its permissions)."""
    uid = os.getuid()
    return f"{CANDIDATE_UID}:{CANDIDATE_UID}" if uid == 0 else f"{uid}:{os.getgid()}"


def _hardening(limits: Limits, user: str) -> dict[str, object]:
    """The container settings every candidate phase (and its keeper) runs under."""
    return dict(
        user=user, network_mode="none", read_only=True, cap_drop=["ALL"], security_opt=["no-new-privileges"],
        privileged=False, pids_limit=limits.pids, mem_limit=limits.memory, memswap_limit=limits.memory,
        nano_cpus=int(limits.cpus * 1e9), shm_size="64m",
        tmpfs={"/tmp": f"rw,noexec,nosuid,nodev,size={limits.tmpfs_size}"},
        ulimits=[docker.types.Ulimit(name="fsize", soft=limits.max_output_bytes, hard=limits.max_output_bytes),
                 docker.types.Ulimit(name="core", soft=1, hard=1),
                 docker.types.Ulimit(name="nofile", soft=1024, hard=1024)],
        stdin_open=False, tty=False, working_dir="/tmp",
        log_config=docker.types.LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
    )


class OutputVolume:
    """A tmpfs volume for one phase's /out, kept mounted by a keeper container until read back."""

    def __init__(self, client: docker.DockerClient, image: str, limits: Limits, user: str,
                 labels: dict[str, str]) -> None:
        uid, gid = user.split(":")
        self.max_bytes = limits.max_output_bytes
        self.keeper = None
        self.volume = client.volumes.create(driver="local", labels=managed_labels("output", **labels), driver_opts={
            "type": "tmpfs", "device": "tmpfs",
            "o": f"size={self.max_bytes},nr_inodes={MAX_OUTPUT_ENTRIES + 1},uid={uid},gid={gid},mode=0700"})
        try:
            # The keeper runs nothing but `sleep`, under the phase's hardening (its CPU share too: a
            # tiny quota slows runc's start enough to fail it on a loaded machine).
            keeper_limits = Limits(timeout_s=limits.timeout_s, memory="64m", cpus=limits.cpus, pids=8,
                                   tmpfs_size="1m", max_output_bytes=limits.max_output_bytes)
            self.keeper = client.containers.create(
                image, command=["sleep", "infinity"], labels=managed_labels("keeper", **labels), mounts=[self.mount()],
                environment={"HOME": "/tmp"}, detach=True, **_hardening(keeper_limits, user))
            self.keeper.start()
        except BaseException:
            self.remove()
            raise

    def mount(self) -> docker.types.Mount:
        return docker.types.Mount(CONTAINER_OUT_DIR, self.volume.name, type="volume", read_only=False)

    def read(self) -> Outputs:
        """The volume's content as one tar stream, read into memory up to the cap; full if it cannot
        take one more MiB (bytes or inodes exhausted, whatever the stream shows of it)."""
        assert self.keeper is not None
        stream, _ = self.keeper.get_archive(CONTAINER_OUT_DIR)
        limit = self.max_bytes + _TAR_SLACK
        chunks, size = [], 0
        for chunk in stream:
            size += len(chunk)
            if size > limit:
                return Outputs(overflow=f"output directory over {self.max_bytes:,} bytes")
            chunks.append(chunk)
        files: dict[str, bytes] = {}
        irregular: set[str] = set()
        entries = 0
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks)), mode="r:") as archive:
            for member in archive:
                parts = member.name.split("/")
                if len(parts) < 2:
                    continue  # "out" itself
                entries += 1
                top = parts[1]
                if len(parts) == 2 and member.isreg():
                    extracted = archive.extractfile(member)
                    files[top] = extracted.read() if extracted else b""
                else:
                    irregular.add(top)
        overflow = None
        if entries >= MAX_OUTPUT_ENTRIES:
            overflow = f"{entries} entries in the output directory (at most {MAX_OUTPUT_ENTRIES - 1})"
        elif not self._has_room():
            overflow = f"output directory full (its {self.max_bytes:,} bytes or {MAX_OUTPUT_ENTRIES} entries)"
        return Outputs(files=files, irregular=frozenset(irregular - set(files)), overflow=overflow)

    def _has_room(self) -> bool:
        """Whether the volume takes a 1 MiB probe file (written by the daemon through the keeper)."""
        assert self.keeper is not None
        probe = io.BytesIO()
        with tarfile.open(fileobj=probe, mode="w") as archive:
            info = tarfile.TarInfo(".nasloop-room-probe")
            info.size = _FULL_MARGIN
            archive.addfile(info, io.BytesIO(bytes(_FULL_MARGIN)))
        try:
            return bool(self.keeper.put_archive(CONTAINER_OUT_DIR, probe.getvalue()))
        except docker.errors.APIError:
            return False

    def remove(self) -> None:
        if self.keeper is not None:
            _remove(self.keeper)
            self.keeper = None
        for attempt in range(5):
            try:
                self.volume.remove(force=True)
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError:  # still held by the keeper the daemon is removing
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))


class SandboxContainer:
    """One hardened candidate container with its output volume: created, started (ahead of its
    candidate for a warm one), run to exit or its deadline, read back and removed, once."""

    def __init__(self, client: docker.DockerClient, phase: Phase, limits: Limits, ahead: bool = False) -> None:
        """`ahead`: started before its candidate, with a low CPU weight until `hand_over`."""
        self.phase, self.limits = phase, limits
        mounts = [docker.types.Mount(target, str(source.resolve()), type="bind", read_only=True)
                  for source, target in phase.mounts.items()]
        device_requests = None
        if phase.gpu is not None:
            device_requests = [docker.types.DeviceRequest(device_ids=[str(phase.gpu)], capabilities=[["gpu"]])]
        threads = limits.threads
        environment = {"HOME": "/tmp", "TMPDIR": "/tmp", "PYTHONHASHSEED": "0",
                       "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        user = container_user()
        self.output: OutputVolume | None = None
        self.container: docker.models.containers.Container | None = None
        try:
            self.output = OutputVolume(client, phase.image, limits, user, phase.labels)
            self.container = client.containers.create(
                phase.image, command=phase.command, environment=environment, mounts=[*mounts, self.output.mount()],
                labels=managed_labels("sandbox", **{"org.nasloop.phase": phase.name, **phase.labels}),
                device_requests=device_requests, detach=True,
                cpu_shares=WAITING_CPU_SHARES if ahead else RUNNING_CPU_SHARES, **_hardening(limits, user))
            self.container.start()
        except docker.errors.DockerException as exc:
            self.remove()
            raise InfraError(f"could not start the {phase.name} container: {exc}") from None
        self.started = time.monotonic()

    def wait_ready(self, timeout_s: float) -> bool:
        """Whether the runner said it is ready for its candidate within `timeout_s` (a warm start):
        its log followed as one stream (no polling), the container killed if it takes too long."""
        assert self.container is not None
        container = self.container
        timer = threading.Timer(timeout_s, _kill, (container,))
        timer.daemon = True
        timer.start()
        seen = b""
        try:
            for chunk in container.logs(stdout=True, stderr=False, stream=True, follow=True):
                seen = (seen + chunk)[-4 * len(READY_LINE):]
                if READY_LINE.encode() in seen:
                    return True
            return False  # the stream ended: the container exited (or was killed) before it was ready
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            return False
        finally:
            timer.cancel()

    def kill(self) -> None:
        """Kill the container (it stays until `run` or `remove`)."""
        if self.container is not None:
            _kill(self.container)

    def hand_over(self) -> None:
        """From waiting to running a candidate: the container gets its full CPU weight back."""
        assert self.container is not None
        try:
            self.container.update(cpu_shares=RUNNING_CPU_SHARES)
        except docker.errors.DockerException as exc:
            raise InfraError(f"could not hand over the {self.phase.name} container: {exc}") from None

    def run(self, started: float | None = None, reaper: Reaper | None = None) -> PhaseOutcome:
        """Wait for the phase to end (its time limit counted from `started`, default the container's
        start), read back logs and outputs, remove everything: at once, or by `reaper` once the
        outcome is read (the container has exited then). InfraError when Docker fails."""
        assert self.container is not None and self.output is not None
        started = self.started if started is None else started
        read_back = False
        try:
            exit_code, timed_out = _wait(self.container, started + self.limits.timeout_s)
            seconds = time.monotonic() - started
            try:
                self.container.reload()
                state = self.container.attrs["State"]
                oom_killed = bool(state.get("OOMKilled")) and not timed_out
                logs = self.container.logs(stdout=True, stderr=True, tail=200)
                if state.get("Running") or state.get("Paused") or reaper is None:
                    _remove(self.container)  # nothing may write to /out while it is read
                    self.container = None
                outputs = self.output.read()
            except docker.errors.DockerException as exc:
                raise InfraError(f"lost the {self.phase.name} container: {exc}") from None
            read_back = True
        finally:
            if read_back and reaper is not None:
                reaper.defer(self)
            else:
                self.remove()
        logs = logs.replace(READY_LINE.encode() + b"\n", b"", 1)
        return PhaseOutcome(exit_code=None if timed_out else exit_code, timed_out=timed_out, oom_killed=oom_killed,
                            outputs=outputs, seconds=seconds, log_tail=printable_bytes(logs, _LOG_TAIL_CHARS))

    def remove(self) -> None:
        """Remove the container and its output volume (both tried, whatever fails first)."""
        errors = []
        if self.container is not None:
            try:
                _remove(self.container)
                self.container = None
            except docker.errors.DockerException as exc:
                errors.append(exc)
        if self.output is not None:
            try:
                self.output.remove()
                self.output = None
            except docker.errors.DockerException as exc:
                errors.append(exc)
        if errors:
            raise InfraError(f"could not remove the {self.phase.name} container: {errors[0]}")


class Reaper:
    """Removes the containers and output volumes of phases that have ended and been read back, in
    one background thread, so that the next candidate need not wait for Docker's removals. `close`
    waits until all are removed and raises the first failure (InfraError); the owner's sweep by
    label stays the backstop."""

    def __init__(self) -> None:
        self._threads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reaper")
        self._failures: list[Exception] = []
        self._lock = threading.Lock()

    def defer(self, container: SandboxContainer) -> None:
        with self._lock:
            self._threads.submit(self._remove, container)

    def _remove(self, container: SandboxContainer) -> None:
        try:
            container.remove()
        except Exception as exc:  # noqa: BLE001  reported by close
            self._failures.append(exc)

    def close(self) -> None:
        """Wait for every removal handed over so far (the reaper stays usable)."""
        with self._lock:
            threads, self._threads = self._threads, ThreadPoolExecutor(max_workers=1, thread_name_prefix="reaper")
        threads.shutdown(wait=True)
        failures, self._failures = self._failures, []
        if failures:
            raise InfraError(str(failures[0]))


def run_phase(client: docker.DockerClient, phase: Phase, limits: Limits, reaper: Reaper | None = None) -> PhaseOutcome:
    """Run `phase` cold: start a fresh container (its job already in place), wait for it to end or
    time out (counted from its start), read back its outputs; everything is always removed (by
    `reaper` after the return, when given)."""
    return SandboxContainer(client, phase, limits).run(reaper=reaper)


def _wait(container: docker.models.containers.Container, deadline: float) -> tuple[int | None, bool]:
    """(exit status, timed out): wait until the container exits, or kill it at the deadline."""
    while True:
        try:
            return int(container.wait(timeout=_POLL_SECONDS)["StatusCode"]), False
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            pass
        if time.monotonic() > deadline:
            _kill(container)
            return None, True


def _remove(container: docker.models.containers.Container) -> None:
    for attempt in range(5):
        try:
            container.remove(force=True)
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            if "already in progress" in str(exc):
                return  # the daemon is removing it
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))  # e.g. a kill the daemon has not seen through yet


def _kill(container: docker.models.containers.Container) -> None:
    try:
        container.kill()
    except docker.errors.APIError:
        pass  # it exited on its own meanwhile
    try:
        container.wait(timeout=30)
    except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError, docker.errors.DockerException):
        pass
