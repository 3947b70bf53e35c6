"""Candidate containers started ahead of need: a small pool per phase (and GPU) whose containers
have started Python, imported torch and what the phase uses, put the training split on the device
(the CUDA context with it), and then wait for exactly one candidate.

Each is a `SandboxContainer` like any other (same hardening, mounts, limits, output volume, labels,
swept by label after a crash), with its own empty job directory mounted read-only. While it waits
it has the lowest CPU weight (warming up uses only CPU the running candidates leave idle); the host
hands over by giving it the full weight and writing the candidate and, last, its job file there, and
the candidate's time limit starts then. Every container serves one candidate and is removed. A background thread keeps `size` of them
ready; `take` waits for one (never starting a candidate in a container that is still warming up).
"""

from __future__ import annotations

import dataclasses
import queue
import shutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import docker

from orchestrator.containers.client import InfraError
from orchestrator.containers.hardened import Limits, Phase, SandboxContainer

READY_TIMEOUT_S = 600.0


@dataclass
class WarmContainer:
    container: SandboxContainer
    job_dir: Path  # mounted read-only at the phase's job path; the host writes the candidate's job here


class WarmPool:
    def __init__(self, client: docker.DockerClient, phase: Phase, job_target: str, limits: Limits, size: int,
                 root: Path) -> None:
        """`phase`: the phase's container without its job directory (mounted at `job_target`)."""
        self.client, self.phase, self.job_target, self.limits = client, phase, job_target, limits
        self.size, self.root = max(1, size), root
        self.ready: queue.Queue[WarmContainer | BaseException] = queue.Queue()
        self.closed = threading.Event()
        self.wanted = threading.Semaphore(self.size)  # one permit per container to keep warm
        self.thread = threading.Thread(target=self._keep_warm, daemon=True, name=f"warm-{phase.name}")
        self.thread.start()

    def _start_one(self) -> WarmContainer:
        job_dir = self.root / f"{self.phase.name}-{uuid.uuid4().hex[:12]}"
        job_dir.mkdir(parents=True)
        job_dir.chmod(0o755)
        mounts = {**self.phase.mounts, job_dir: self.job_target}
        try:
            container = SandboxContainer(self.client, dataclasses.replace(self.phase, mounts=mounts), self.limits,
                                         ahead=True)
        except BaseException:
            shutil.rmtree(job_dir, ignore_errors=True)
            raise
        try:
            ready = container.wait_ready(READY_TIMEOUT_S)
            if not ready:
                container.kill()  # it exited, or hangs before its candidate: nothing to wait for
                outcome = container.run()
        except BaseException:
            _discard(container, job_dir)
            raise
        if not ready:
            shutil.rmtree(job_dir, ignore_errors=True)
            raise InfraError(f"a {self.phase.name} container did not get ready ahead of its candidate "
                             f"(exit {outcome.exit_code}): {outcome.log_tail[-1000:]}")
        return WarmContainer(container, job_dir)

    def _keep_warm(self) -> None:
        while not self.closed.is_set():
            if not self.wanted.acquire(timeout=0.2):
                continue
            if self.closed.is_set():
                break
            try:
                self.ready.put(self._start_one())
            except BaseException as exc:  # noqa: BLE001  reported to whoever takes next
                self.ready.put(exc)
                return

    def take(self) -> WarmContainer:
        """A container ready for its candidate (another starts warming at once). InfraError when none
        could be started."""
        item = self.ready.get(timeout=READY_TIMEOUT_S + 60)
        if isinstance(item, BaseException):
            self.ready.put(item)  # every later caller learns it too
            raise item if isinstance(item, InfraError) else InfraError(f"warm {self.phase.name} container: {item}")
        self.wanted.release()
        return item

    def close(self) -> None:
        """Stop warming and remove the containers nobody took."""
        self.closed.set()
        self.thread.join(timeout=READY_TIMEOUT_S)
        while True:
            try:
                item = self.ready.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, WarmContainer):
                _discard(item.container, item.job_dir)


def _discard(container: SandboxContainer, job_dir: Path) -> None:
    """Remove a container nobody will run (its evaluator's group sweep is the backstop)."""
    try:
        container.remove()
    except InfraError:
        pass
    shutil.rmtree(job_dir, ignore_errors=True)
