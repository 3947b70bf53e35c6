"""The tiny local model flow (`nasloop llm tiny-model`): build it in this process, draw samples with
the profile's prompt and decoding, and report how many parse, are valid and are not near-copies.

Needs the `llm` extra (torch, transformers, tokenizers) in this Python; the samples' validity is
checked in the sandbox, never here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from contracts.files import atomic_write_text
from contracts.llm import Decoding, Sample
from llm import extract_code
from llm.prompt import prompt_messages
from orchestrator.config import ExperimentConfig, as_dict
from orchestrator.containers.client import ImageError
from orchestrator.containers.images import connect
from orchestrator.corpus.checks import prompt_check_protocol
from orchestrator.corpus.tasks import generation_task
from orchestrator.evaluation.evaluator import Checker
from orchestrator.evaluation.run import make_checker
from orchestrator.generator.samples import assess_samples


def sample_checker(config: ExperimentConfig, workdir: Path, use_sandbox: bool | None,
                   say: Callable[[str], None]) -> Checker | None:
    """A Checker at the prompt's shape; None when the samples are not to be checked (`use_sandbox`
    False, or None and Docker or the image is missing, which `say` reports). ImageError when
    `use_sandbox` is True and the sandbox cannot be had."""
    if use_sandbox is False:
        return None
    try:
        docker = connect("sandbox")
    except ImageError as exc:
        if use_sandbox:
            raise
        say(f"samples will not be checked in the sandbox (only parsed): {exc}")
        return None
    return make_checker(docker, config, prompt_check_protocol(config), workdir)


def draw_samples(model_dir: Path, config: ExperimentConfig, n: int) -> tuple[list[Sample], float, dict[str, Any]]:
    """`n` samples of the model in `model_dir` with the profile's prompt and decoding, on the CPU."""
    from llm.sampling import SampleRequest, TransformersBackend

    gen = config.generation
    decoding = Decoding(gen.temperature, gen.top_k, gen.top_p, gen.do_sample, gen.max_new_tokens, gen.seed)
    backend = TransformersBackend(str(model_dir), decoding, batch_size=gen.batch_size, device="cpu")
    request = SampleRequest(prompt_messages(generation_task(config)), n, gen.seed)
    drawn = [s for batch in backend.generate([request]) for s in batch]
    return drawn, round(sum(b.seconds for b in {s.seed: s for s in drawn}.values()), 1), asdict(decoding)


def build_tiny(out: Path, corpus: Path, config: ExperimentConfig, steps: int | None, samples: int,
               checker: Checker | None, say: Callable[[str], None]) -> dict[str, Any]:
    """Train the tiny model into `out`; with `samples`, draw and assess them. Returns the report
    (also written to `out/tiny-model.json`). InfraError if checking the samples hits Docker trouble."""
    from llm.tiny import REPORT_FILE, TinyModelSpec, build_tiny_model, read_corpus

    if config.tiny_model is None:
        raise ValueError(f"profile {config.name!r} has no [tiny_model] section (use --profile smoke)")
    spec = TinyModelSpec(**as_dict(config.tiny_model))
    if steps is not None:
        spec = replace(spec, steps=steps)
    budget = config.evaluation.param_budget
    report = build_tiny_model(out, corpus, spec, budget, progress=say)
    if not samples:
        return report
    training = [code for example in read_corpus(corpus, budget)
                for m in example if m["role"] == "assistant" and (code := extract_code(m["content"]))]
    drawn, seconds, decoding = draw_samples(out, config, samples)
    try:
        check = assess_samples(drawn, sorted(set(training)), config.novelty, checker, config.evaluation.jobs)
    finally:
        if checker is not None:
            checker.close()
    check["sampling_seconds"], check["decoding"] = seconds, decoding
    report["check"] = check
    atomic_write_text(out / REPORT_FILE, json.dumps(report, indent=2) + "\n")
    return report


def check_line(check: dict[str, Any]) -> str:
    """The report's sample counts on one line."""
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
