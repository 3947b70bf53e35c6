"""The host side of the LLM service (`llm.serve`, protocol in `contracts.service`): one LLM container
per `nasloop cycle` run, started by the loop's first LLM job and stopped when the run ends or fails,
which keeps the base model (and vLLM's engine) loaded across the run's cycles.

`start_container_service` runs `python -m llm.serve /workspace/llm-service/<id>` in the LLM image with
the mounts, user, GPUs and environment of a one-shot LLM container (`runner`) and the same managed
labels, so a crashed orchestrator's service is removed by the next start's sweep; besides, the service
stops by itself once the host's heartbeat is older than `HOST_TIMEOUT_S`. `start_local_service` runs
the same service as a subprocess of this Python (tests; machines with the `llm` extra).

`LLMService.run(job)` writes the job file, routes the service's output lines between the job's start
and end markers to the job's log file and callback, and waits for the job's final status. A failed job
is an LLMRunError with the job's output tail; so is a service that stopped (then with the tail of its
whole output): an infrastructure error, which leaves the cycle resumable.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import docker.errors

from contracts.jobfile import write_job
from contracts.llm import FinetuneJob, GenerateJob
from contracts.service import (FAILED, FINAL_STATES, JOB_ENDED, JOB_STARTED, JobStatus, ServicePaths, ServiceState,
                               read_state, read_status)
from orchestrator.config import REPO_ROOT
from orchestrator.containers.gpu import device_request
from orchestrator.containers.labels import managed_labels
from orchestrator.generator.jobs import LLMRunError
from orchestrator.generator.runner import (CACHE_DIR, CONTAINER_WORKDIR, LogFollower, Mounts, container_environment,
                                           container_output, in_container_job)

SERVICE_DIR = "llm-service"  # under the workspace: one directory per service
HEARTBEAT_S = 5.0
HOST_TIMEOUT_S = 120.0  # the service stops when the host has not beaten for this long
SERVICE_LOG = "service.log"


class ServiceProcess(ABC):
    """What runs `python -m llm.serve`: a container, or a subprocess."""

    @abstractmethod
    def exit_code(self) -> int | None:
        """None while it runs."""

    @abstractmethod
    def kill(self) -> None:
        """Stop it now and release it (remove the container)."""


class ContainerProcess(ServiceProcess):
    def __init__(self, container) -> None:  # type: ignore[no-untyped-def]
        self.container = container

    def exit_code(self) -> int | None:
        try:
            self.container.reload()
        except docker.errors.NotFound:
            return -1  # removed under us
        if self.container.status in ("created", "running", "restarting"):
            return None
        return int(self.container.attrs.get("State", {}).get("ExitCode", -1))

    def kill(self) -> None:
        try:
            self.container.remove(force=True)
        except docker.errors.DockerException:
            pass


class LocalProcess(ServiceProcess):
    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    def exit_code(self) -> int | None:
        return self.process.poll()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


class ServiceLog(LogFollower):
    """The service's output: every line to DIR/service.log; the lines of the job being waited for also
    to that job's log file and callback, and kept for its error message."""

    def __init__(self, chunks, log_file: Path) -> None:  # type: ignore[no-untyped-def]
        super().__init__(chunks, log_file, None)
        self.lines = deque(maxlen=2000)  # type: ignore[assignment]  # a whole run's output stays in the log file
        self.lock = threading.Lock()
        self.job: str | None = None
        self.job_file: Path | None = None
        self.job_callback: Callable[[str], None] | None = None
        self.job_lines: list[str] = []
        self.ended: set[str] = set()

    def attach(self, job: str, log_file: Path | None, on_line: Callable[[str], None] | None) -> None:
        with self.lock:
            self.job, self.job_file, self.job_callback, self.job_lines = job, log_file, on_line, []
            if log_file is not None:
                log_file.parent.mkdir(parents=True, exist_ok=True)

    def detach(self) -> list[str]:
        with self.lock:
            lines, self.job, self.job_file, self.job_callback = self.job_lines, None, None, None
            return lines

    def wait_ended(self, job: str, timeout: float) -> None:
        """Wait until the job's end marker came through (the output may lag its status file)."""
        deadline = time.monotonic() + timeout
        while job not in self.ended and time.monotonic() < deadline and self.is_alive():
            time.sleep(0.05)

    def _line(self, line: str, handle) -> None:  # type: ignore[no-untyped-def]
        super()._line(line, handle)
        if not line.strip():
            return
        with self.lock:
            if line.startswith(JOB_ENDED):
                self.ended.add(line[len(JOB_ENDED):].split()[0])
            if self.job is None or line.startswith((JOB_STARTED, JOB_ENDED)):
                return
            self.job_lines.append(line)
            if self.job_file is not None:
                with self.job_file.open("a", encoding="utf-8") as fh:
                    fh.write(line + "\n")
            if self.job_callback is not None:
                self.job_callback(line)


class LLMService:
    """A running service and the way to give it jobs; `close()` (or the context manager) stops it."""

    def __init__(self, root: Path, process: ServiceProcess, log: ServiceLog,
                 translate: Callable[[GenerateJob | FinetuneJob], GenerateJob | FinetuneJob]) -> None:
        self.paths = ServicePaths(root)
        self.process, self.log, self.translate = process, log, translate
        self.count = 0
        self._stop_beating = threading.Event()
        self._beat()
        self._heart = threading.Thread(target=self._beating, daemon=True)
        self._heart.start()
        log.start()

    def __enter__(self) -> LLMService:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _beat(self) -> None:
        self.paths.root.mkdir(parents=True, exist_ok=True)
        self.paths.heartbeat.touch()

    def _beating(self) -> None:
        while not self._stop_beating.wait(HEARTBEAT_S):
            try:
                self._beat()
            except OSError:
                pass  # the workspace is going away: the service will stop by itself

    def state(self) -> ServiceState | None:
        return read_state(self.paths)

    def run(self, job: GenerateJob | FinetuneJob, log_file: Path | None = None,
            on_line: Callable[[str], None] | None = None, timeout: float | None = None) -> JobStatus:
        """Run `job` in the service and return its final status; LLMRunError when it failed, the service
        stopped, or it ran past `timeout` seconds (then the service is stopped)."""
        return self.wait(self.submit(job, log_file, on_line), timeout)

    def submit(self, job: GenerateJob | FinetuneJob, log_file: Path | None = None,
               on_line: Callable[[str], None] | None = None) -> str:
        """Hand `job` to the service (its lines go to `log_file` and `on_line`); returns its name."""
        kind = "generate" if isinstance(job, GenerateJob) else "finetune"
        self.count += 1
        name = f"{self.count:04d}-{kind}-{uuid.uuid4().hex[:8]}"
        self.log.attach(name, log_file, on_line)
        write_job(self.translate(job), self.paths.job_file(name))
        return name

    def wait(self, name: str, timeout: float | None = None) -> JobStatus:
        """The final status of job `name` (see `run`)."""
        kind = "finetune" if "-finetune-" in name else "generate"
        started = time.monotonic()
        try:
            status = self._wait(name, kind, started, timeout)
            self.log.wait_ended(name, timeout=10.0)
        finally:
            lines = self.log.detach()
        if status.state == FAILED:
            tail = "\n".join(lines)[-4000:]
            raise LLMRunError(f"{_kind(kind)} job {name} failed in the LLM service (exit {status.exit_code}): "
                              f"{status.error}\n{tail}")
        return status

    def _wait(self, name: str, kind: str, started: float, timeout: float | None) -> JobStatus:
        checked = 0.0
        while True:
            try:
                status = read_status(self.paths, name)
            except ValueError:
                status = None
            if status is not None and status.state in FINAL_STATES:
                return status
            code = None
            if time.monotonic() - checked >= 1.0:  # asking the daemon costs more than reading a file
                checked, code = time.monotonic(), self.process.exit_code()
            if code is not None:
                self.log.join(5.0)
                raise LLMRunError(f"infrastructure failure: the LLM service stopped (exit {code}) during "
                                  f"{_kind(kind)} job {name}:\n{self.log.tail()}")
            if timeout is not None and time.monotonic() - started > timeout:
                self.kill()
                raise LLMRunError(f"{_kind(kind)} job {name} timed out after {timeout}s in the LLM service:\n"
                                  f"{self.log.tail()}")
            time.sleep(0.2)

    def close(self, timeout: float = 60.0) -> None:
        """Ask the service to stop (it ends its current job first), wait up to `timeout` seconds,
        then remove it whatever state it is in."""
        self._stop_beating.set()
        try:
            self.paths.stop.touch()
        except OSError:
            pass
        deadline = time.monotonic() + timeout
        while self.process.exit_code() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        self.kill()

    def kill(self) -> None:
        self._stop_beating.set()
        self.process.kill()
        self.log.join(5.0)


def _kind(kind: str) -> str:
    return "generation" if kind == "generate" else "fine-tuning"


def new_service_dir(workdir: Path) -> Path:
    """A fresh directory for one service under the workspace; directories of services whose host
    stopped beating long ago (killed runs) are removed."""
    parent = Path(workdir).resolve() / SERVICE_DIR
    parent.mkdir(parents=True, exist_ok=True)
    for old in parent.iterdir():
        heartbeat = old / "heartbeat"
        try:
            stale = time.time() - heartbeat.stat().st_mtime > 2 * HOST_TIMEOUT_S
        except FileNotFoundError:
            stale = old.is_dir() and time.time() - old.stat().st_mtime > 2 * HOST_TIMEOUT_S
        if stale:
            shutil.rmtree(old, ignore_errors=True)
    root = parent / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    return root


def start_container_service(client: docker.DockerClient, image: str, workdir: Path, mounts: Mounts,
                            gpus: list[int] | str | None = None) -> LLMService:
    """The service in the LLM image: the workspace (and a model outside it, a Hugging Face cache) mounted
    as `mounts` says, run as the calling user, with the managed labels, `gpus` (host indices or "all";
    None: none) and the compile caches in the workspace's cache/ directory."""
    workdir = Path(workdir).resolve()
    root = new_service_dir(workdir)
    (workdir / CACHE_DIR).mkdir(exist_ok=True)
    inner_root = f"{CONTAINER_WORKDIR}/{root.relative_to(workdir).as_posix()}"
    container = client.containers.run(
        image, ["python3", "-m", "llm.serve", inner_root, "--host-timeout", str(HOST_TIMEOUT_S)],
        volumes=mounts.volumes(), environment=container_environment(), user=f"{os.getuid()}:{os.getgid()}",
        device_requests=[device_request(gpus)] if gpus is not None else None,
        labels=managed_labels("llm", **{"org.nasloop.llm-service": root.name}),
        shm_size="2g", working_dir="/tmp", detach=True,
    )
    log = ServiceLog(container_output(container), root / SERVICE_LOG)
    return LLMService(root, ContainerProcess(container), log, lambda job: in_container_job(job, mounts))


def start_local_service(workdir: Path, env: dict[str, str] | None = None, host_timeout: float = HOST_TIMEOUT_S,
                        root: Path | None = None) -> LLMService:
    """The service as a subprocess of this interpreter (needs the `llm` extra); jobs keep host paths.
    `root`: an existing service directory to serve (its unfinished jobs run first), else a new one."""
    root = Path(root) if root is not None else new_service_dir(workdir)
    full_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), full_env.get("PYTHONPATH")]))
    process = subprocess.Popen([sys.executable, "-m", "llm.serve", str(root), "--host-timeout", str(host_timeout)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=full_env, cwd=REPO_ROOT)
    assert process.stdout is not None
    log = ServiceLog(_pipe_output(process.stdout), root / SERVICE_LOG)
    return LLMService(root, LocalProcess(process), log, lambda job: job)


def _pipe_output(stream) -> Iterator[bytes]:  # type: ignore[no-untyped-def]
    while chunk := stream.read1(65536):
        yield chunk
