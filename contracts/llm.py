"""The files-in, files-out contract between the host and the LLM container.

The host writes a job (`GenerateJob`, `FinetuneJob`) with `contracts.jobfile.write_job`;
`python -m llm.generate JOB.json` or `accelerate launch -m llm.finetune JOB.json` reads it and writes
its results into the job's output directory: `samples.jsonl` (one `Sample` a line) and
`generation.json`, or an adapter directory with `nasloop-adapter.json` (`AdapterMetadata`). Paths in a
job are as the container sees them. The LLM service (`contracts.service`) runs the same jobs with the
same outputs. Standard library only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from contracts.files import read_jsonl
from contracts.jobfile import build

# Files a generation job writes into its output directory.
SAMPLES_FILE = "samples.jsonl"
GENERATION_SUMMARY_FILE = "generation.json"
# The metadata file inside every adapter directory written by a fine-tuning job.
ADAPTER_METADATA_FILE = "nasloop-adapter.json"

BACKENDS = ("transformers", "vllm")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Decoding:
    """Sampling settings: the profile's `[generation]` numbers, fixed across cycles."""

    temperature: float
    top_k: int
    top_p: float
    do_sample: bool
    max_new_tokens: int
    seed: int


@dataclass(frozen=True)
class GenerateJob:
    model: str  # Hugging Face id or local directory
    messages: list[dict[str, str]]  # the prompt, rendered with the model's own chat template
    prompt_version: str
    prompt_sha256: str
    num_samples: int
    batch_size: int  # sequences decoded at once; 0: as many as the device's free memory holds
    decoding: Decoding
    output_dir: str
    adapter: str | None = None  # LoRA adapter directory, or None for the base model
    backend: str = "transformers"
    batching: str = "continuous"  # "continuous" (a finished sequence's slot refilled at once) or "static"
    device: str = "auto"
    max_lora_rank: int = 32  # vLLM only: must be >= the adapter's rank

    def __post_init__(self) -> None:
        _check_choice("backend", self.backend, BACKENDS)
        _check_choice("batching", self.batching, ("continuous", "static"))
        _check_choice("device", self.device, DEVICES)
        if self.num_samples < 1 or self.batch_size < 0:
            raise ValueError("num_samples must be >= 1 and batch_size >= 0 (0: as many as memory holds)")


@dataclass(frozen=True)
class LoraHyperparameters:
    """The profile's `[finetune]` numbers the container needs (continue_from_previous is the host's
    decision: it picks `parent_adapter`)."""

    lora_r: int
    lora_alpha: int
    lora_dropout: float
    target_modules: list[str]
    epochs: int
    lr: float
    per_device_batch_size: int
    grad_accum_steps: int
    scheduler: str
    warmup_steps: int
    weight_decay: float
    max_grad_norm: float
    optimizer: str
    precision: str
    max_seq_length: int
    over_length: str
    gradient_checkpointing: bool


@dataclass(frozen=True)
class FinetuneJob:
    model: str
    corpus: str  # chat JSONL: one {"messages": [...]} per line
    output_dir: str  # the new adapter's directory; must not exist yet
    hyperparameters: LoraHyperparameters
    parent_adapter: str | None = None  # continue from this adapter (None: a fresh LoRA on the base)
    seed: int = 0
    device: str = "auto"
    # Also measure the mean loss over the training examples before and after training (costs about
    # two extra forward passes over the corpus).
    measure_loss: bool = False
    # Stop after this many optimiser steps (tests, smoke runs); None: the full `epochs`.
    max_steps: int | None = None

    def __post_init__(self) -> None:
        _check_choice("device", self.device, DEVICES)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: {value!r} is not one of {', '.join(choices)}")


JOB_KINDS = (GenerateJob, FinetuneJob)


def generate_command(python: str, job_path: str) -> list[str]:
    """The one-shot generation entry point."""
    return [python, "-m", "llm.generate", job_path]


def finetune_command(python: str, job_path: str) -> list[str]:
    """The fine-tuning entry point: one process (the paper fine-tunes on one GPU); accelerate still
    owns device placement and precision."""
    return [python, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
            "--dynamo_backend", "no", "--mixed_precision", "no", "-m", "llm.finetune", job_path]


@dataclass(frozen=True)
class Sample:
    """One line of `samples.jsonl`."""

    index: int
    text: str  # the raw completion, special tokens removed
    prompt_tokens: int
    completion_tokens: int  # including the end-of-turn token when it stopped on one
    finish_reason: str  # "stop" (end of turn) or "length" (max_new_tokens reached)
    seconds: float  # wall time of the batch that produced it
    batch_size: int
    seed: int  # the seed of its batch

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_samples(output_dir: Path) -> list[Sample]:
    """The samples a generation job wrote, in index order (a line cut short by a killed job ends
    the usable part)."""
    path = Path(output_dir) / SAMPLES_FILE
    if not path.is_file():
        return []
    samples = [build(Sample, value, f"{path}:{number}") for number, value in read_jsonl(path, cut_tail_ok=True)]
    return sorted(samples, key=lambda s: s.index)


@dataclass(frozen=True)
class CorpusSummary:
    file: str
    sha256: str
    examples: int
    trained_examples: int
    skipped_over_length: int
    over_length: list[dict[str, int]]  # {"example": line number, "tokens": length}
    assistant_tokens: int


@dataclass(frozen=True)
class AdapterMetadata:
    """`nasloop-adapter.json`, written beside the weights of every adapter a fine-tune produces."""

    base_model: dict[str, Any]  # {"model": reference, "revision": hub commit or local fingerprint}
    parent_adapter: dict[str, Any] | None  # {"path", "adapter_sha256"}
    corpus: CorpusSummary
    hyperparameters: LoraHyperparameters
    effective_precision: str
    effective_optimizer: str
    fallbacks: list[str]
    lora_targets: dict[str, int]
    trainable_parameters: int
    seed: int
    max_steps: int | None
    steps: int
    train_loss: float
    loss_curve: list[dict[str, float]]
    mean_loss_before: float | None
    mean_loss_after: float | None
    loss_scope: str
    device: str
    world_size: int
    train_seconds: float
    train_tokens: int  # input tokens the trainer processed (every epoch)
    tokens_per_second: float | None
    wall_seconds: float
    libraries: dict[str, str | None]
    adapter_sha256: str | None
    # The fused or fast kernels the fine-tune used on CUDA, e.g. {"attention": "sdpa", "optimizer":
    # "adamw_torch_fused"}; empty on the CPU (and in adapters written before it was recorded).
    kernels: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_adapter_metadata(adapter_dir: Path) -> AdapterMetadata:
    path = Path(adapter_dir) / ADAPTER_METADATA_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read the adapter metadata: {exc}") from None
    return build(AdapterMetadata, data, str(path))
