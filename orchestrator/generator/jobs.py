"""LLM jobs from the profile: the generation job of a cycle (fixed prompt and decoding, a sampling
seed of its own) and the fine-tuning job of an adapter (the profile's LoRA settings)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from contracts.llm import Decoding, FinetuneJob, GenerateJob, LoraHyperparameters
from llm.prompt import DEFAULT_VERSION, load_template, prompt_messages
from orchestrator.config import TINY_MODEL, ExperimentConfig, as_dict
from orchestrator.corpus.tasks import generation_task


class LLMRunError(RuntimeError):
    """A generation or fine-tuning job failed or cannot run (the message says why, with its output's tail)."""


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


def cycle_seed(seed: int, cycle: int) -> int:
    """Cycle `cycle`'s sampling seed, derived from the profile's `generation.seed` (numpy's
    SeedSequence mixes the two): every cycle draws new samples (under --no-iteration, from the same
    adapter), and a resumed cycle draws the same ones."""
    return int(np.random.SeedSequence([seed, cycle]).generate_state(1, dtype=np.uint32)[0] >> 1)


def generate_job(config: ExperimentConfig, workdir: Path, output_dir: Path, adapter: Path | None = None,
                 num_samples: int | None = None, device: str | None = None, cycle: int | None = None) -> GenerateJob:
    """A generation job: the fixed prompt and decoding of the profile; for the loop's cycle `cycle`
    its own sampling seed (`cycle_seed`), else the profile's seed."""
    gen = config.generation
    seed = gen.seed if cycle is None else cycle_seed(gen.seed, cycle)
    template = load_template(DEFAULT_VERSION)
    return GenerateJob(
        model=resolve_model(gen.model, workdir),
        messages=prompt_messages(generation_task(config)),
        prompt_version=template.version,
        prompt_sha256=template.sha256,
        num_samples=num_samples or gen.candidates_per_cycle,
        batch_size=gen.batch_size,
        decoding=Decoding(temperature=gen.temperature, top_k=gen.top_k, top_p=gen.top_p,
                          do_sample=gen.do_sample, max_new_tokens=gen.max_new_tokens, seed=seed),
        output_dir=str(Path(output_dir).resolve()),
        adapter=str(Path(adapter).resolve()) if adapter else None,
        backend=gen.backend,
        batching=gen.batching,
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
