"""`nasloop llm ...`: the tiny local model, and manual generation / fine-tuning runs.

`tiny-model` runs in this process (it needs the `llm` extra: torch, transformers, tokenizers);
`generate` and `finetune` run the LLM container's entry points, in the LLM image (default) or, with
`--local`, as a subprocess of this Python.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from orchestrator.commands.common import config_option, profile_option, workdir_option
from orchestrator.config import ConfigError, as_dict, load_config
from orchestrator.containers import InfraError


def _config(profile: str, config_file: Path | None):
    try:
        return load_config(profile, config_file)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


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
    from llm.tiny import REPORT_FILE, TinyModelSpec, build_tiny_model, read_corpus

    config = _config(profile, config_file)
    if config.tiny_model is None:
        raise click.UsageError(f"profile {profile!r} has no [tiny_model] section (use --profile smoke)")
    spec = TinyModelSpec(**as_dict(config.tiny_model))
    if steps is not None:
        spec = TinyModelSpec(**{**asdict(spec), "steps": steps})
    checker = _sample_checker(config, workdir, use_sandbox) if samples else None
    report = build_tiny_model(out, corpus, spec, config.evaluation.param_budget,
                              progress=lambda message: click.echo(message, err=True))
    click.echo(f"tiny model: {report['parameters']:,} parameters, {report['trained_tokens']:,} tokens "
               f"({report['epochs']} epochs) in {report['train_seconds']}s "
               f"({report['tokens_per_second']:,.0f} tokens/s); saved to {out}")
    if not samples:
        return
    from llm import extract_code
    from orchestrator.sample_check import assess_samples

    training = [code for example in read_corpus(corpus, config.evaluation.param_budget)
                for m in example if m["role"] == "assistant" and (code := extract_code(m["content"]))]
    drawn, seconds, decoding = _draw_samples(out, config, samples)
    try:
        check = assess_samples(drawn, sorted(set(training)), config.novelty, checker, config.evaluation.jobs)
    except InfraError as exc:
        raise click.ClickException(f"infrastructure failure while checking the samples: {exc}") from None
    check["sampling_seconds"], check["decoding"] = seconds, decoding
    report["check"] = check
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    click.echo(_check_line(check))


def _sample_checker(config, workdir: Path, use_sandbox: bool | None):
    """A Checker at the prompt's shape, or None (with a message) when the samples are not checked."""
    from orchestrator.corpus_check import prompt_check_protocol
    from orchestrator.evaluate import Checker
    from orchestrator.images import ImageError, docker_client, resolve

    if use_sandbox is False:
        return None
    try:
        client = docker_client()
        image = resolve(client, "sandbox")
    except ImageError as exc:
        if use_sandbox:
            raise click.ClickException(f"cannot check samples in the sandbox: {exc}") from None
        click.echo(f"samples will not be checked in the sandbox (only parsed): {exc}", err=True)
        return None
    return Checker(client, image, config.evaluation, prompt_check_protocol(config.evaluation),
                   workdir / "scratch" / "checks")


def _draw_samples(model_dir: Path, config, n: int):
    from llm.jobs import Decoding
    from llm.prompt import generation_task, prompt_messages
    from llm.sampling import SampleRequest, TransformersBackend

    gen = config.generation
    decoding = Decoding(gen.temperature, gen.top_k, gen.top_p, gen.do_sample, gen.max_new_tokens, gen.seed)
    backend = TransformersBackend(str(model_dir), decoding, batch_size=gen.batch_size, device="cpu")
    request = SampleRequest(prompt_messages(generation_task(config.evaluation.param_budget)), n, gen.seed)
    drawn = [s for batch in backend.generate([request]) for s in batch]
    return drawn, round(sum(b.seconds for b in {s.seed: s for s in drawn}.values()), 1), asdict(decoding)


def _check_line(check: dict) -> str:
    n = check["samples"]
    line = f"samples: {check['parsed']}/{n} parse, {check['stopped']} ended their turn"
    if check["valid"] is None:
        return line + f"; validity not checked; {check['near_copies']} of the parsed are near-copies of a " \
                      f"training program (J > {check['tau']})"
    failures = ", ".join(f"{k} {v}" for k, v in check["failures"].items()) or "none"
    shape = "x".join(map(str, check["in_shape"][1:]))
    return (line + f"; {check['valid']}/{n} valid (every check at {shape}, <= {check['param_budget']:,} parameters), "
            f"{check['valid'] - check['near_copies']} of them not near-copies of a training program "
            f"(J <= {check['tau']}); failures: {failures}")


def _run(job, workdir: Path, local: bool, image: str | None, gpu: bool) -> str:
    from orchestrator import llm_runner

    try:
        if local:
            _need_llm_extra()
            kind = "generate" if job.__class__.__name__ == "GenerateJob" else "finetune"
            return llm_runner.run_local(job, workdir / "llm-jobs" / f"{kind}-manual.json").stdout
        from orchestrator.images import ImageError, docker_client, resolve

        try:
            client = docker_client()
            tag = image or resolve(client, "llm").tag
        except ImageError as exc:
            raise click.ClickException(str(exc)) from None
        return llm_runner.run_in_container(job, workdir, tag, gpu=gpu, client=client)
    except llm_runner.LLMRunError as exc:
        raise click.ClickException(str(exc)) from None


_local_option = click.option(
    "--local", is_flag=True, help="Run as a subprocess of this Python (llm extra) instead of the LLM image.")
_image_option = click.option(
    "--image", default=None, help="LLM image tag (default: the one built for these sources).")
_gpu_option = click.option(
    "--gpu/--no-gpu", default=None,
    help="Reserve the GPUs for the container (default: when the profile's device is cuda).")


@llm.command("generate")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output directory (samples.jsonl, generation.json); an interrupted run resumes.")
@click.option("--adapter", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None)
@click.option("-n", "num_samples", type=click.IntRange(min=1), default=None,
              help="Samples (default: the profile's candidates_per_cycle).")
@_local_option
@_image_option
@_gpu_option
@profile_option
@config_option
@workdir_option
def generate(out: Path, adapter: Path | None, num_samples: int | None, local: bool, image: str | None,
             gpu: bool | None, profile: str, config_file: Path | None, workdir: Path) -> None:
    """Sample programs from the profile's model (+ adapter) with the fixed prompt and decoding."""
    from llm import extract_code
    from llm.jobs import read_samples
    from orchestrator import llm_runner

    config = _config(profile, config_file)
    try:
        job = llm_runner.generate_job(config, workdir, out, adapter=adapter, num_samples=num_samples)
    except llm_runner.LLMRunError as exc:
        raise click.ClickException(str(exc)) from None
    _run(job, workdir, local, image, config.evaluation.device == "cuda" if gpu is None else gpu)
    samples = read_samples(out)
    extracted = sum(extract_code(s["text"]) is not None for s in samples)
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
@_local_option
@_image_option
@_gpu_option
@profile_option
@config_option
@workdir_option
def finetune(corpus: Path, out: Path, parent: Path | None, max_steps: int | None, measure_loss: bool,
             local: bool, image: str | None, gpu: bool | None, profile: str, config_file: Path | None,
             workdir: Path) -> None:
    """LoRA fine-tune the profile's model on a chat corpus into a new adapter directory."""
    from llm.jobs import ADAPTER_METADATA_FILE
    from orchestrator import llm_runner

    config = _config(profile, config_file)
    try:
        job = llm_runner.finetune_job(config, workdir, corpus, out, previous_adapter=parent,
                                      max_steps=max_steps, measure_loss=measure_loss)
    except llm_runner.LLMRunError as exc:
        raise click.ClickException(str(exc)) from None
    _run(job, workdir, local, image, config.evaluation.device == "cuda" if gpu is None else gpu)
    meta = json.loads((out / ADAPTER_METADATA_FILE).read_text())
    click.echo(f"adapter {out}: {meta['steps']} steps, train loss {meta['train_loss']}, "
               f"{meta['corpus']['trained_examples']} examples "
               f"({meta['corpus']['skipped_over_length']} over length skipped), {meta['train_seconds']}s")
