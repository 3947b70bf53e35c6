"""The files-in, files-out contract between the orchestrator and the LLM container.

The host writes a job as JSON; `python -m llm.generate JOB.json` or
`accelerate launch -m llm.finetune JOB.json` reads it and writes its results into the job's output
directory. Paths in a job are as the container sees them. This module is dependency-free: the host
imports it to write jobs and to read results.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    batch_size: int
    decoding: Decoding
    output_dir: str
    adapter: str | None = None  # LoRA adapter directory, or None for the base model
    backend: str = "transformers"
    device: str = "auto"
    max_lora_rank: int = 32  # vLLM only: must be >= the adapter's rank

    def __post_init__(self) -> None:
        _check_choice("backend", self.backend, BACKENDS)
        _check_choice("device", self.device, DEVICES)
        if self.num_samples < 1 or self.batch_size < 1:
            raise ValueError("num_samples and batch_size must be >= 1")


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
    notes: dict[str, Any] = field(default_factory=dict)  # free-form, copied into the metadata

    def __post_init__(self) -> None:
        _check_choice("device", self.device, DEVICES)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: {value!r} is not one of {', '.join(choices)}")


def write_job(job: GenerateJob | FinetuneJob, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kind = "generate" if isinstance(job, GenerateJob) else "finetune"
    path.write_text(json.dumps({"kind": kind, **dataclasses.asdict(job)}, indent=2) + "\n")
    return path


def read_job(path: Path) -> GenerateJob | FinetuneJob:
    data = json.loads(Path(path).read_text())
    kind = data.pop("kind", None)
    try:
        if kind == "generate":
            return GenerateJob(**{**data, "decoding": Decoding(**data["decoding"])})
        if kind == "finetune":
            return FinetuneJob(**{**data, "hyperparameters": LoraHyperparameters(**data["hyperparameters"])})
    except (TypeError, KeyError) as exc:
        raise ValueError(f"{path}: malformed {kind} job: {exc}") from None
    raise ValueError(f"{path}: unknown job kind {kind!r}")


def read_samples(output_dir: Path) -> list[dict[str, Any]]:
    """The samples a generation job wrote, in index order (complete lines only)."""
    path = Path(output_dir) / SAMPLES_FILE
    if not path.is_file():
        return []
    samples = []
    for line in path.read_text().splitlines():
        try:
            samples.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut short by a killed job ends the usable part
    return sorted(samples, key=lambda s: s["index"])
