"""The local executor: this machine's Docker daemon, in a container started ahead of the candidate
(a warm pool per phase and GPU, when `warm` is on) or in one started for it. A phase's containers
are removed in the background once its outcome is read (`Reaper`); `close` waits for that."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import docker

from contracts.sandbox import CONTAINER_JOB_DIR
from orchestrator.containers.client import InfraError, daemon_name
from orchestrator.containers.hardened import Limits, Phase, Reaper, run_phase
from orchestrator.containers.images import ResolvedImage
from orchestrator.containers.labels import GROUP_LABEL, remove_group, sweep_orphans
from orchestrator.containers.pool import WarmPool
from orchestrator.executors.base import PhaseRun, PhaseSpec, write_job_dir


@dataclass
class LocalExecutor:
    """Either way the same runner does the same thing after the handover, under the same hardening,
    mounts and limits."""

    client: docker.DockerClient
    image: ResolvedImage
    warm: bool
    pool_size: int  # containers kept ready per phase and GPU (with `warm`)
    pool_root: Path  # job directories of the containers started ahead (on the job directories' filesystem)
    pools: dict[tuple[str, int | None], WarmPool] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Labels every container this executor starts (and its output volume), so that closing it removes
    # whatever is left of them on any path.
    group: str = field(default_factory=lambda: uuid.uuid4().hex)
    reaper: Reaper = field(default_factory=Reaper)

    def __post_init__(self) -> None:
        self.node = daemon_name(self.client)

    def run(self, spec: PhaseSpec) -> PhaseRun:
        """Write the candidate's files and job into its job directory and run the phase; the job
        directory ends up at `spec.job_dir` either way."""
        began = time.monotonic()
        if not self.warm:
            write_job_dir(spec.job_dir, spec.files, spec.job)
            outcome = run_phase(self.client, Phase(spec.name, self.image.id, spec.command,
                                                   {spec.job_dir: CONTAINER_JOB_DIR, **spec.data},
                                                   {**spec.labels, GROUP_LABEL: self.group}, gpu=spec.gpu), spec.limits,
                                self.reaper)
            return PhaseRun(outcome, self.node, spec.gpu, time.monotonic() - began)
        warm = self._pool(spec.name, spec.limits, spec.data, spec.gpu, spec.command).take()
        try:
            warm.container.hand_over()
            write_job_dir(warm.job_dir, spec.files, spec.job)
        except BaseException:
            warm.container.remove()
            raise
        started = time.monotonic()  # the candidate's time starts at the handover
        try:
            return PhaseRun(warm.container.run(started, self.reaper), self.node, spec.gpu, time.monotonic() - began)
        finally:
            spec.job_dir.parent.mkdir(parents=True, exist_ok=True)
            warm.job_dir.rename(spec.job_dir)

    def _pool(self, phase: str, limits: Limits, data: dict[Path, str], gpu: int | None, command: list[str]) -> WarmPool:
        with self.lock:
            key = (phase, gpu)
            if key not in self.pools:
                self.pools[key] = WarmPool(self.client, Phase(phase, self.image.id, command, dict(data),
                                                              {GROUP_LABEL: self.group}, gpu=gpu),
                                           CONTAINER_JOB_DIR, limits, self.pool_size, self.pool_root)
            return self.pools[key]

    def sweep(self) -> int:
        return sweep_orphans(self.client)

    def close(self) -> None:
        with self.lock:
            for pool in self.pools.values():
                pool.close()
            self.pools.clear()
            try:
                self.reaper.close()
            except InfraError:
                pass  # removed by label next
            try:
                remove_group(self.client, self.group)
            except docker.errors.DockerException as exc:
                raise InfraError(f"could not remove this executor's containers: {exc}") from None
            shutil.rmtree(self.pool_root, ignore_errors=True)  # job directories nobody was handed
