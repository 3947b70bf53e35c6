"""Host side of the LLM container: turn the profile into job files, run them, read the results.

A job runs either in the LLM image (`run_in_container`, the loop's way: the workspace is mounted at
/workspace, a local model elsewhere read-only at /model, a Hugging Face cache at /hf) or as a local
subprocess of this Python (`run_local`, for tests and for machines with the `llm` extra installed).
Both run the same entry points: `python -m llm.generate JOB.json` and
`accelerate launch -m llm.finetune JOB.json`.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from llm.jobs import Decoding, FinetuneJob, GenerateJob, LoraHyperparameters, write_job
from llm.prompt import DEFAULT_VERSION, generation_task, load_template, prompt_messages
from orchestrator.config import TINY_MODEL, ExperimentConfig, as_dict

CONTAINER_WORKDIR = "/workspace"
CONTAINER_MODEL = "/model"
CONTAINER_HF_HOME = "/hf"
CONTAINER_LABEL = "org.nasloop.role"


class LLMRunError(RuntimeError):
    """A generation or fine-tuning job failed (the message carries the tail of its output)."""


def tiny_model_dir(workdir: Path) -> Path:
    """Where `generation.model = "tiny"` lives: `<workdir>/models/tiny` (`nasloop llm tiny-model`)."""
    return Path(workdir).resolve() / "models" / TINY_MODEL


def resolve_model(model: str, workdir: Path) -> str:
    """The profile's model reference as a loadable one: "tiny" becomes the workspace's tiny model."""
    if model != TINY_MODEL:
        return model
    path = tiny_model_dir(workdir)
    if not (path / "config.json").is_file():
        raise LLMRunError(f"the tiny model is not built at {path}: run "
                          f"`nasloop llm tiny-model {path} --corpus LEMUR.jsonl.gz`")
    return str(path)


def generate_job(config: ExperimentConfig, workdir: Path, output_dir: Path, adapter: Path | None = None,
                 num_samples: int | None = None, device: str | None = None) -> GenerateJob:
    """A generation job for one cycle: the fixed prompt and decoding of the profile."""
    gen = config.generation
    template = load_template(DEFAULT_VERSION)
    return GenerateJob(
        model=resolve_model(gen.model, workdir),
        messages=prompt_messages(generation_task(config.evaluation.param_budget)),
        prompt_version=template.version,
        prompt_sha256=template.sha256,
        num_samples=num_samples or gen.candidates_per_cycle,
        batch_size=gen.batch_size,
        decoding=Decoding(temperature=gen.temperature, top_k=gen.top_k, top_p=gen.top_p,
                          do_sample=gen.do_sample, max_new_tokens=gen.max_new_tokens, seed=gen.seed),
        output_dir=str(Path(output_dir).resolve()),
        adapter=str(Path(adapter).resolve()) if adapter else None,
        backend=gen.backend,
        device=device or config.evaluation.device,
        max_lora_rank=max(32, config.finetune.lora_r),
    )


def finetune_job(config: ExperimentConfig, workdir: Path, corpus: Path, output_dir: Path,
                 previous_adapter: Path | None = None, max_steps: int | None = None,
                 measure_loss: bool = False, device: str | None = None,
                 seed: int | None = None) -> FinetuneJob:
    """A fine-tuning job with the profile's LoRA settings. It continues from `previous_adapter` (the
    previous cycle's) when `finetune.continue_from_previous` is on, else restarts from the base model."""
    hp = {k: v for k, v in as_dict(config.finetune).items() if k != "continue_from_previous"}
    parent = previous_adapter if config.finetune.continue_from_previous else None
    return FinetuneJob(
        model=resolve_model(config.generation.model, workdir),
        corpus=str(Path(corpus).resolve()),
        output_dir=str(Path(output_dir).resolve()),
        hyperparameters=LoraHyperparameters(**hp),
        parent_adapter=str(Path(parent).resolve()) if parent else None,
        seed=config.generation.seed if seed is None else seed,
        device=device or config.evaluation.device,
        measure_loss=measure_loss,
        max_steps=max_steps,
    )


def _command(job: GenerateJob | FinetuneJob, job_path: str, python: str) -> list[str]:
    if isinstance(job, GenerateJob):
        return [python, "-m", "llm.generate", job_path]
    # One process: the paper fine-tunes on one GPU; accelerate still owns device placement and precision.
    return [python, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
            "--dynamo_backend", "no", "--mixed_precision", "no", "-m", "llm.finetune", job_path]


def run_local(job: GenerateJob | FinetuneJob, job_path: Path, timeout: float | None = None,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `job` in a subprocess of this interpreter (needs the `llm` extra); raise LLMRunError on failure."""
    write_job(job, job_path)
    repo_root = Path(__file__).resolve().parent.parent
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo_root), full_env.get("PYTHONPATH")]))
    result = subprocess.run(_command(job, str(job_path), sys.executable), capture_output=True, text=True,
                            timeout=timeout, env=full_env, cwd=repo_root)
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


def run_in_container(job: GenerateJob | FinetuneJob, workdir: Path, image: str, gpu: bool = False,
                     timeout: float | None = None, client=None) -> str:
    """Run `job` in the LLM image with the workspace mounted; return its output; LLMRunError on failure.

    The container runs as the calling user (files in the workspace stay the user's), is labelled for
    sweeping, and is removed on every path. `gpu=True` reserves all GPUs (the SDK's DeviceRequest).
    """
    import docker
    import docker.errors

    from orchestrator.images import docker_client

    workdir = Path(workdir).resolve()
    mounts = container_mounts(job, workdir)
    inner = in_container_job(job, mounts)
    kind = "generate" if isinstance(job, GenerateJob) else "finetune"
    host_job_path = workdir / "llm-jobs" / f"{kind}-{uuid.uuid4().hex[:12]}.json"
    write_job(inner, host_job_path)
    environment = {"HF_HOME": CONTAINER_HF_HOME, "HOME": "/tmp", "PYTHONUNBUFFERED": "1"}
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN"):
        if name in os.environ:
            environment[name] = os.environ[name]
    client = client or docker_client()
    device_requests = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])] if gpu else None
    container = client.containers.run(
        image, _command(inner, mounts.to_container(str(host_job_path)), "python3"),
        volumes=mounts.volumes(), environment=environment, user=f"{os.getuid()}:{os.getgid()}",
        device_requests=device_requests, labels={CONTAINER_LABEL: "llm"}, shm_size="2g",
        working_dir="/tmp", detach=True,
    )
    try:
        try:
            status = container.wait(timeout=timeout)
        except Exception as exc:  # requests' ReadTimeout: the job overran
            container.kill()
            raise LLMRunError(f"{_kind(job)} container timed out after {timeout}s") from exc
        logs = container.logs(stdout=True, stderr=True).decode(errors="replace")
        if status.get("StatusCode") != 0:
            raise LLMRunError(f"{_kind(job)} container failed (exit {status.get('StatusCode')}):\n"
                              f"{logs[-4000:]}")
        return logs
    finally:
        try:
            container.remove(force=True)
        except docker.errors.DockerException:
            pass
