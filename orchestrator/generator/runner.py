"""Running LLM jobs: in the LLM image (`run_in_container`, the loop's way: the workspace is mounted at
/workspace, a local model elsewhere read-only at /model, a Hugging Face cache at /hf) or as a local
subprocess of this Python (`run_local`, for tests and for machines with the `llm` extra installed).
Both run the same entry points: `python -m llm.generate JOB.json` and
`accelerate launch -m llm.finetune JOB.json`. The loop runs its jobs through the LLM service instead
(`orchestrator.generator.service`: one container for a whole run), which uses the mounts, environment
and output following defined here.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from contracts.jobfile import write_job
from contracts.llm import FinetuneJob, GenerateJob, finetune_command, generate_command
from orchestrator.config import REPO_ROOT
from orchestrator.containers.gpu import device_request
from orchestrator.containers.labels import managed_labels
from orchestrator.generator.jobs import LLMRunError

CONTAINER_WORKDIR = "/workspace"
CONTAINER_MODEL = "/model"
CONTAINER_HF_HOME = "/hf"
CACHE_DIR = "cache"  # the compile caches, under the workspace
CONTAINER_CACHE = f"{CONTAINER_WORKDIR}/{CACHE_DIR}"


def _command(job: GenerateJob | FinetuneJob, job_path: str, python: str) -> list[str]:
    if isinstance(job, GenerateJob):
        return generate_command(python, job_path)
    return finetune_command(python, job_path)


def cache_environment(cache_root: str) -> dict[str, str]:
    """Environment variables that put the compile caches of the LLM container under `cache_root` (in
    the workspace), so that they outlive the container: vLLM's (its torch.compile artefacts among
    them), torch inductor's, Triton's, the CUDA driver's JIT cache and anything else under
    XDG_CACHE_HOME. The next run's engine then starts from compiled kernels."""
    return {"VLLM_CACHE_ROOT": f"{cache_root}/vllm",
            "TORCHINDUCTOR_CACHE_DIR": f"{cache_root}/torchinductor",
            "TRITON_CACHE_DIR": f"{cache_root}/triton",
            "CUDA_CACHE_PATH": f"{cache_root}/cuda",
            "XDG_CACHE_HOME": f"{cache_root}/xdg"}


def container_environment() -> dict[str, str]:
    """The LLM container's environment: the Hugging Face cache mount, HOME in /tmp, unbuffered output,
    the compile caches in the workspace, and the caller's Hugging Face settings."""
    environment = {"HF_HOME": CONTAINER_HF_HOME, "HOME": "/tmp", "PYTHONUNBUFFERED": "1",
                   **cache_environment(CONTAINER_CACHE)}
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN"):
        if name in os.environ:
            environment[name] = os.environ[name]
    return environment


def run_local(job: GenerateJob | FinetuneJob, job_path: Path, timeout: float | None = None,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `job` in a subprocess of this interpreter (needs the `llm` extra); raise LLMRunError on failure."""
    write_job(job, job_path)
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), full_env.get("PYTHONPATH")]))
    result = subprocess.run(_command(job, str(job_path), sys.executable), capture_output=True, text=True,
                            timeout=timeout, env=full_env, cwd=REPO_ROOT)
    if result.returncode != 0:
        raise LLMRunError(f"{_kind(job)} job {job_path} failed (exit {result.returncode}):\n"
                          f"{result.stderr[-4000:]}")
    return result


def _kind(job: GenerateJob | FinetuneJob) -> str:
    return "generation" if isinstance(job, GenerateJob) else "fine-tuning"


@dataclass(frozen=True)
class Mounts:
    """Host paths as the LLM container sees them."""

    workdir: Path
    model_dir: Path | None = None  # a local model outside the workspace, mounted read-only
    hf_home: Path | None = None  # a Hugging Face cache for hub ids

    def to_container(self, path: str | None) -> str | None:
        if path is None:
            return None
        host = Path(path).resolve()
        for root, target in ((self.workdir.resolve(), CONTAINER_WORKDIR),
                             (self.model_dir.resolve() if self.model_dir else None, CONTAINER_MODEL)):
            if root is not None and host.is_relative_to(root):
                return str(Path(target) / host.relative_to(root))
        raise LLMRunError(f"{host} is outside the workspace {self.workdir}: the LLM container cannot see it")

    def volumes(self) -> dict[str, dict[str, str]]:
        volumes = {str(self.workdir.resolve()): {"bind": CONTAINER_WORKDIR, "mode": "rw"}}
        if self.model_dir:
            volumes[str(self.model_dir.resolve())] = {"bind": CONTAINER_MODEL, "mode": "ro"}
        if self.hf_home:
            volumes[str(self.hf_home.resolve())] = {"bind": CONTAINER_HF_HOME, "mode": "rw"}
        return volumes


def container_mounts(job: GenerateJob | FinetuneJob, workdir: Path) -> Mounts:
    model = Path(job.model)
    if model.is_dir():
        inside = model.resolve().is_relative_to(Path(workdir).resolve())
        return Mounts(Path(workdir), model_dir=None if inside else model)
    hf_home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    hf_home.mkdir(parents=True, exist_ok=True)
    return Mounts(Path(workdir), hf_home=hf_home)


def in_container_job(job: GenerateJob | FinetuneJob, mounts: Mounts) -> GenerateJob | FinetuneJob:
    """`job` with every path rewritten as the container sees it."""
    model = job.model if not Path(job.model).is_dir() else mounts.to_container(job.model)
    common = {"model": model, "output_dir": mounts.to_container(job.output_dir)}
    if isinstance(job, GenerateJob):
        return dataclasses.replace(job, adapter=mounts.to_container(job.adapter), **common)
    return dataclasses.replace(job, corpus=mounts.to_container(job.corpus),
                               parent_adapter=mounts.to_container(job.parent_adapter), **common)


def run_in_container(job: GenerateJob | FinetuneJob, workdir: Path, image: str, client: docker.DockerClient,
                     gpus: list[int] | str | None = None, timeout: float | None = None,
                     log_file: Path | None = None, on_line: Callable[[str], None] | None = None) -> str:
    """Run `job` in the LLM image with the workspace mounted; return its output; LLMRunError (with
    the tail of its output) on failure.

    The container runs as the calling user (files in the workspace stay the user's), carries the
    managed labels (a crashed orchestrator's LLM container is swept like a sandbox one), and is
    removed on every path. `gpus`: the GPUs it gets (host indices, or "all"; None: none). Its output
    is followed while it runs: every line goes to `log_file` and to `on_line` as it happens (model
    download, samples done, fine-tune steps)."""
    workdir = Path(workdir).resolve()
    mounts = container_mounts(job, workdir)
    inner = in_container_job(job, mounts)
    kind = "generate" if isinstance(job, GenerateJob) else "finetune"
    host_job_path = workdir / "llm-jobs" / f"{kind}-{uuid.uuid4().hex[:12]}.json"
    write_job(inner, host_job_path)
    container = client.containers.run(
        image, _command(inner, mounts.to_container(str(host_job_path)), "python3"),
        volumes=mounts.volumes(), environment=container_environment(), user=f"{os.getuid()}:{os.getgid()}",
        device_requests=[device_request(gpus)] if gpus is not None else None, labels=managed_labels("llm"),
        shm_size="2g", working_dir="/tmp", detach=True,
    )
    follower = LogFollower(container_output(container), log_file, on_line)
    try:
        follower.start()
        try:
            status = container.wait(timeout=timeout)
        except Exception as exc:  # requests' ReadTimeout: the job overran
            container.kill()
            raise LLMRunError(f"{_kind(job)} container timed out after {timeout}s:\n{follower.tail()}") from exc
        follower.join()
        if status.get("StatusCode") != 0:
            raise LLMRunError(f"{_kind(job)} container failed (exit {status.get('StatusCode')}):\n{follower.tail()}")
        return follower.text()
    finally:
        try:
            container.remove(force=True)
        except docker.errors.DockerException:
            pass


def container_output(container) -> Iterator[bytes]:  # type: ignore[no-untyped-def]
    """A container's output (stdout and stderr) as it is written, until it ends."""
    yield from container.logs(stream=True, follow=True, stdout=True, stderr=True)


class LogFollower(threading.Thread):
    """Follows a process's output as it is written (`chunks`, e.g. `container_output(container)`):
    lines (split at newlines and at the carriage returns of progress bars) to a log file and a
    callback; the whole text kept for the caller."""

    def __init__(self, chunks: Iterable[bytes], log_file: Path | None, on_line: Callable[[str], None] | None) -> None:
        super().__init__(daemon=True)
        self.chunks, self.log_file, self.on_line = chunks, log_file, on_line
        self.lines: list[str] = []

    def run(self) -> None:
        handle = None
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            handle = self.log_file.open("a", encoding="utf-8")
        pending = ""
        try:
            for chunk in self.chunks:
                pending += chunk.decode("utf-8", errors="replace")
                *complete, pending = re.split(r"\r\n|\n|\r", pending)
                for line in complete:
                    self._line(line, handle)
            if pending:
                self._line(pending, handle)
        except (docker.errors.DockerException, OSError, ValueError):
            pass  # the process went away: what was read is kept
        finally:
            if handle is not None:
                handle.close()

    def _line(self, line: str, handle) -> None:  # type: ignore[no-untyped-def]
        if not line.strip():
            return
        self.lines.append(line)
        if handle is not None:
            handle.write(line + "\n")
            handle.flush()
        if self.on_line is not None:
            self.on_line(line)

    def join(self, timeout: float | None = 30.0) -> None:
        super().join(timeout)

    def text(self) -> str:
        return "\n".join(self.lines)

    def tail(self, chars: int = 4000) -> str:
        return self.text()[-chars:]
