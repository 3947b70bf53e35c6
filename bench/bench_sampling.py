"""Sampling benchmark: static batches against continuous batching, on the same model and prompt.

Both draw `--samples` completions of the loop's fixed prompt with the profile's decoding settings,
`--slots` sequences at a time, through `llm.sampling.TransformersBackend` (what the LLM container
runs): `static` calls `generate` on fixed batches, each running until its longest sample ends;
`continuous` refills a finished sequence's slot with the next sample at once (llm/batching.py).
Measured: useful tokens per second (completion tokens up to and including each sample's end),
decode rows computed against rows of a live sample (the useful share), wall time per mode. The
sides alternate between repetitions; medians.

The model is `--model DIR`, else the workspace's tiny model (`runs/models/tiny`: `nasloop llm
tiny-model`, built by `make cycle`), else, on a fresh clone, the benchmarks' own tiny model built here
on the CPU (bench/tiny_model.py, as bench/gpu_check.py builds it: no shared data, no network) into
`runs/models/bench-tiny` and reused by later runs; `model_source` ("given", "workspace" or "built")
and the build's summary are recorded. Its samples end at varied lengths as real programs do, which is
what static batching pays for. On a GPU machine pass `--device cuda` and `--model` a real checkpoint
directory.

Usage: .venv/bin/python bench/bench_sampling.py [--model DIR] [--samples N] [--slots N]
           [--max-new-tokens N] [--reps N] [--device cpu|cuda] [--json OUT]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.tiny_model import FULL_SPEC, ensure_bench_model  # noqa: E402
from contracts.llm import Decoding  # noqa: E402
from llm.prompt import generation_task, prompt_messages  # noqa: E402
from llm.sampling import SampleRequest, TransformersBackend  # noqa: E402
from orchestrator.config import ExperimentConfig, load_config  # noqa: E402
from orchestrator.generator.jobs import tiny_model_dir  # noqa: E402

# Where a fresh clone's benchmark builds its tiny model (in the workspace, ignored by git).
BENCH_MODEL = REPO / "runs" / "models" / "bench-tiny"


def draw(backend: TransformersBackend, messages: list[dict[str, str]], samples: int, seed: int) -> dict[str, Any]:
    """Every sample of one request; wall time, useful tokens and decode rows."""
    backend.counters.computed = backend.counters.useful = 0
    started = time.perf_counter()
    drawn = [s for batch in backend.generate([SampleRequest(messages, samples, seed)]) for s in batch]
    seconds = time.perf_counter() - started
    tokens = sum(s.completion_tokens for s in drawn)
    lengths = sorted(s.completion_tokens for s in drawn)
    return {"seconds": seconds, "useful_tokens": tokens, "tokens_per_second": tokens / seconds,
            "decode_rows": backend.counters.computed, "useful_decode_rows": backend.counters.useful,
            "useful_token_share": backend.counters.useful / max(1, backend.counters.computed),
            "stopped": sum(s.finish_reason == "stop" for s in drawn), "samples": len(drawn),
            "length_min": lengths[0], "length_median": statistics.median(lengths), "length_max": lengths[-1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None,
                        help="model directory [runs/models/tiny, else a tiny model built here]")
    parser.add_argument("--profile", default="smoke", help="profile for decoding settings and budget [smoke]")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--slots", type=int, default=8, help="sequences decoded at once (the batch size) [8]")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="[the profile's]")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads [all CPUs]")
    parser.add_argument("--json", type=Path, default=None, help="results file [bench-results/sampling.json]")
    args = parser.parse_args()

    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: CUDA is not available to this Python's torch; nothing was measured.")
        return 2
    config = load_config(args.profile)
    if args.threads:
        torch.set_num_threads(args.threads)
    build = None
    if args.model is not None:
        model, source = args.model.resolve(), "given"
        if not (model / "config.json").is_file():
            print(f"error: no model at {model} (--model)", file=sys.stderr)
            return 1
    else:
        model, source = tiny_model_dir(REPO / "runs").resolve(), "workspace"
        if not (model / "config.json").is_file():
            print(f"no tiny model in the workspace ({model.relative_to(REPO)}): using the benchmarks' own "
                  f"(bench/tiny_model.py) in {BENCH_MODEL.relative_to(REPO)}", flush=True)
            model, source = BENCH_MODEL, "built"
            build = ensure_bench_model(model, FULL_SPEC, config.evaluation.param_budget)
    return measure(args, config, model, source, build)


def measure(args: argparse.Namespace, config: ExperimentConfig, model: Path, source: str,
            build: dict[str, Any] | None) -> int:
    """Both modes on `model`, repetitions alternating; prints the medians and writes the JSON file."""
    generation = config.generation
    decoding = Decoding(temperature=generation.temperature, top_k=generation.top_k, top_p=generation.top_p,
                        do_sample=generation.do_sample, max_new_tokens=generation.max_new_tokens, seed=0)
    if args.max_new_tokens:
        decoding = dataclasses.replace(decoding, max_new_tokens=args.max_new_tokens)
    messages = prompt_messages(generation_task(config.evaluation.param_budget))
    backends = {mode: TransformersBackend(str(model), decoding, batch_size=args.slots, device=args.device,
                                          batching=mode) for mode in ("static", "continuous")}
    print(f"sampling benchmark: {args.samples} samples of the fixed prompt, {args.slots} at a time, "
          f"max_new_tokens {decoding.max_new_tokens}, T={decoding.temperature:g} top_k={decoding.top_k} "
          f"top_p={decoding.top_p:g}; model {model.name} on {args.device}, {torch.get_num_threads()} thread(s); "
          f"{args.reps} repetition(s), modes alternating; load average {os.getloadavg()[0]:.1f}", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in backends}
    started = time.perf_counter()
    for rep in range(args.reps):
        order = list(backends) if rep % 2 == 0 else list(backends)[::-1]
        for mode in order:
            runs[mode].append(draw(backends[mode], messages, args.samples, seed=rep))
            r = runs[mode][-1]
            print(f"  {mode:<10} rep {rep + 1}: {r['seconds']:7.1f} s, {r['tokens_per_second']:7.1f} useful tokens/s, "
                  f"useful share {r['useful_token_share']:.2f}, lengths {r['length_min']}-{r['length_max']} "
                  f"(median {r['length_median']:g}), {r['stopped']}/{r['samples']} stopped", flush=True)

    def med(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[mode])

    medians = {f"{mode}_{key}": med(mode, key) for mode in runs
               for key in ("seconds", "tokens_per_second", "useful_token_share")}
    speedup = statistics.median(c["tokens_per_second"] / s["tokens_per_second"]
                                for s, c in zip(runs["static"], runs["continuous"]))
    print(f"\nuseful tokens/s: static {medians['static_tokens_per_second']:.1f}, continuous "
          f"{medians['continuous_tokens_per_second']:.1f}; continuous_speedup {speedup:.2f} "
          f"(target >= 1.5: {'met' if speedup >= 1.5 else 'NOT met'})")
    print(f"useful decode share: static {medians['static_useful_token_share']:.2f}, continuous "
          f"{medians['continuous_useful_token_share']:.2f}; wall {time.perf_counter() - started:.0f} s")
    results = {"benchmark": "sampling", "model": model.name, "model_source": source, "model_build": build,
               "device": args.device, "samples": args.samples,
               "slots": args.slots, "max_new_tokens": decoding.max_new_tokens, "reps": args.reps,
               "threads": torch.get_num_threads(), "host": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                                           "torch": torch.__version__},
               "medians": medians, "continuous_speedup": speedup, "target_met": speedup >= 1.5, "runs": runs}
    out = args.json or REPO / "bench-results" / f"sampling{'' if args.device == 'cpu' else '-' + args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"results written to {out.relative_to(REPO) if out.resolve().is_relative_to(REPO) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
