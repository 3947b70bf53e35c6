"""`nasloop llm ...`: the tiny local model, and manual generation / fine-tuning runs.

`tiny-model` runs in this process (it needs the `llm` extra: torch, transformers, tokenizers);
`generate` and `finetune` run the LLM container's entry points, in the LLM image (default) or, with
`--local`, as a subprocess of this Python.
"""

from __future__ import annotations

from pathlib import Path

import click

from contracts.llm import FinetuneJob, GenerateJob, read_adapter_metadata, read_samples
from orchestrator.commands.common import config_option, load_profile, profile_option, workdir_option
from orchestrator.containers.client import ImageError, InfraError
from orchestrator.generator.jobs import LLMRunError


def _need_llm_extra() -> None:
    try:
        import tokenizers  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise click.ClickException(
            f"this command needs the llm extra (pip install -e '.[llm]'): {exc}") from None


@click.group()
def llm() -> None:
    """The code LLM: tiny local model, sampling, LoRA fine-tuning."""


@llm.command("tiny-model")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--corpus", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Programs to learn from: a chat export (`messages` per line; `nasloop corpus export "
                   "--valid-only` for the programs that pass the checks) or a LEMUR JSONL(.gz) export "
                   "(`code` per line).")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Training steps (default: the profile's tiny_model.steps).")
@click.option("--samples", type=click.IntRange(min=0), default=16, show_default=True,
              help="Draw this many samples afterwards (profile prompt and decoding) and report how many "
                   "parse, pass the validity checks and are not near-copies of a training program.")
@click.option("--sandbox/--no-sandbox", "use_sandbox", default=None,
              help="Check the samples in the sandbox [default: when Docker and the sandbox image are there].")
@workdir_option
@profile_option
@config_option
def tiny_model(out: Path, corpus: Path, steps: int | None, samples: int, use_sandbox: bool | None,
               workdir: Path, profile: str, config_file: Path | None) -> None:
    """Build the tiny local Llama + byte-level BPE tokenizer into OUT (no downloads).

    The smoke profile (`generation.model = "tiny"`) looks for it at WORKDIR/models/tiny.
    """
    _need_llm_extra()
    from orchestrator.generator.tiny import build_tiny, check_line, sample_checker

    config = load_profile(profile, config_file)
    if config.tiny_model is None:
        raise click.UsageError(f"profile {profile!r} has no [tiny_model] section (use --profile smoke)")
    say = lambda message: click.echo(message, err=True)  # noqa: E731
    try:
        checker = sample_checker(config, workdir, use_sandbox, say) if samples else None
        report = build_tiny(out, corpus, config, steps, samples, checker, say)
    except ImageError as exc:
        raise click.ClickException(f"cannot check samples in the sandbox: {exc}") from None
    except InfraError as exc:
        raise click.ClickException(f"infrastructure failure while checking the samples: {exc}") from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"tiny model: {report['parameters']:,} parameters, {report['trained_tokens']:,} tokens "
               f"({report['epochs']} epochs) in {report['train_seconds']}s "
               f"({report['tokens_per_second']:,.0f} tokens/s); saved to {out}")
    if "check" in report:
        click.echo(check_line(report["check"]))


def _run(job: GenerateJob | FinetuneJob, workdir: Path, local: bool, image: str | None,
         gpus: list[int] | str | None) -> str:
    from orchestrator.generator import runner

    try:
        if local:
            _need_llm_extra()
            kind = "generate" if isinstance(job, GenerateJob) else "finetune"
            return runner.run_local(job, workdir / "llm-jobs" / f"{kind}-manual.json").stdout
        from orchestrator.containers.images import connect

        try:
            docker = connect() if image else connect("llm")
        except ImageError as exc:
            raise click.ClickException(str(exc)) from None
        return runner.run_in_container(job, workdir, image or docker.images["llm"].tag, client=docker.client,
                                       gpus=gpus, on_line=lambda line: click.echo(line, err=True))
    except LLMRunError as exc:
        raise click.ClickException(str(exc)) from None


_local_option = click.option(
    "--local", is_flag=True, help="Run as a subprocess of this Python (llm extra) instead of the LLM image.")
_image_option = click.option(
    "--image", default=None, help="LLM image tag (default: the one built for these sources).")
_gpu_option = click.option(
    "--gpu/--no-gpu", default=None,
    help="Reserve the GPUs for the container (default: when the profile's device is cuda).")


def _gpus(config, gpu: bool | None):  # type: ignore[no-untyped-def]
    """The profile's LLM GPUs when the job gets GPUs (--gpu, or by default when the device is cuda)."""
    wanted = config.evaluation.device == "cuda" if gpu is None else gpu
    return config.generation.gpus if wanted else None


def _job_options(func):  # type: ignore[no-untyped-def]
    """Where and how a manual LLM job runs: --local/--image/--gpu, the profile, the workspace."""
    for option in (workdir_option, config_option, profile_option, _gpu_option, _image_option, _local_option):
        func = option(func)
    return func


@llm.command("generate")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output directory (samples.jsonl, generation.json); an interrupted run resumes.")
@click.option("--adapter", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None)
@click.option("-n", "num_samples", type=click.IntRange(min=1), default=None,
              help="Samples (default: the profile's candidates_per_cycle).")
@_job_options
def generate(out: Path, adapter: Path | None, num_samples: int | None, local: bool, image: str | None,
             gpu: bool | None, profile: str, config_file: Path | None, workdir: Path) -> None:
    """Sample programs from the profile's model (+ adapter) with the fixed prompt and decoding."""
    from llm import extract_code
    from orchestrator.generator.jobs import generate_job

    config = load_profile(profile, config_file)
    try:
        job = generate_job(config, workdir, out, adapter=adapter, num_samples=num_samples)
    except LLMRunError as exc:
        raise click.ClickException(str(exc)) from None
    _run(job, workdir, local, image, _gpus(config, gpu))
    samples = read_samples(out)
    extracted = sum(extract_code(s.text) is not None for s in samples)
    click.echo(f"{len(samples)} samples in {out}; code extracted from {extracted}")


@llm.command("finetune")
@click.option("--corpus", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Chat JSONL, one {\"messages\": [...]} per line (`nasloop corpus export`).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The new adapter's directory (must not exist).")
@click.option("--parent", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="The previous cycle's adapter: continued from unless the profile says "
                   "finetune.continue_from_previous = false.")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Stop after N optimiser steps.")
@click.option("--measure-loss", is_flag=True, help="Also measure the mean loss before and after.")
@_job_options
def finetune(corpus: Path, out: Path, parent: Path | None, max_steps: int | None, measure_loss: bool,
             local: bool, image: str | None, gpu: bool | None, profile: str, config_file: Path | None,
             workdir: Path) -> None:
    """LoRA fine-tune the profile's model on a chat corpus into a new adapter directory."""
    from orchestrator.generator.jobs import finetune_job

    config = load_profile(profile, config_file)
    try:
        job = finetune_job(config, workdir, corpus, out, previous_adapter=parent, max_steps=max_steps,
                           measure_loss=measure_loss)
    except LLMRunError as exc:
        raise click.ClickException(str(exc)) from None
    _run(job, workdir, local, image, _gpus(config, gpu))
    meta = read_adapter_metadata(out)
    click.echo(f"adapter {out}: {meta.steps} steps, train loss {meta.train_loss}, "
               f"{meta.corpus.trained_examples} examples "
               f"({meta.corpus.skipped_over_length} over length skipped), {meta.train_seconds}s")
