"""`python -m llm.generate JOB.json`: sample a generation job's programs into its output directory.

Writes `samples.jsonl` (one sample a line, appended as each finishes and flushed, so a killed job
keeps what it finished) and, at the end, `generation.json` (totals, timing, decode work, model
revision, library versions). Run again on the same job it resumes: finished samples are kept and the
others drawn with their own seeds (continuous batching: each sample is seeded from its index; static
batching: finished batches are kept, each seeded from its first index). The LLM service
(`llm.serve`) runs the same `draw` on a model it keeps loaded. Exit status: 0 done, 2 bad job or
missing model, 1 anything else.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from contracts.files import atomic_write_text, jsonl_line
from contracts.jobfile import read_job
from contracts.llm import GENERATION_SUMMARY_FILE, SAMPLES_FILE, GenerateJob, Sample, read_samples
from llm.sampling import SampleRequest, SamplingBackend


def _finished_samples(output_dir: Path, num_samples: int) -> list[Sample]:
    """Every sample already written (the job's own earlier, interrupted run), once each."""
    by_index = {s.index: s for s in read_samples(output_dir) if s.index < num_samples}
    return [by_index[i] for i in sorted(by_index)]


def _finished_batches(output_dir: Path, batch_size: int) -> list[Sample]:
    """Samples of the complete batches already written (the job's own earlier, interrupted run)."""
    by_batch: dict[int, list[Sample]] = {}
    for sample in read_samples(output_dir):
        by_batch.setdefault(sample.index // batch_size, []).append(sample)
    kept: list[Sample] = []
    for batch in sorted(by_batch):
        group = by_batch[batch]
        if batch != len(kept) // batch_size or len(group) != group[0].batch_size:
            break  # a gap or a partial batch: draw from here again
        kept.extend(group)
    return kept


def load_backend(job: GenerateJob, keep_base: bool = False) -> SamplingBackend:
    """The job's backend with its model loaded and its adapter applied."""
    from llm.sampling import make_backend

    print(f"model: loading {job.model}" + (f" with adapter {job.adapter}" if job.adapter else "")
          + " (downloading it first if it is not cached)", file=sys.stderr, flush=True)
    return make_backend(job.backend, job.model, job.decoding, job.batch_size, adapter=job.adapter,
                        device=job.device, max_lora_rank=job.max_lora_rank, batching=job.batching,
                        keep_base=keep_base)


def run(job: GenerateJob) -> dict[str, Any]:
    """The one-shot entry point: load the model, draw the job's samples, release the model."""
    start = time.perf_counter()
    backend = load_backend(job)
    try:
        return draw(backend, job, load_seconds=time.perf_counter() - start)
    finally:
        backend.close()


def draw(backend: SamplingBackend, job: GenerateJob, load_seconds: float,
         extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Draw the job's samples with a loaded backend (its adapter already the job's) into the job's
    output directory, keeping what an earlier, interrupted run finished; write and return the summary
    (with `extra` added)."""
    out = Path(job.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    samples_path = out / SAMPLES_FILE
    static = job.batching == "static" and job.backend == "transformers"
    kept = (_finished_batches(out, getattr(backend, "batch_size", job.batch_size)) if static
            else _finished_samples(out, job.num_samples))
    atomic_write_text(samples_path, "".join(jsonl_line(s.as_dict()) for s in kept))
    (out / GENERATION_SUMMARY_FILE).unlink(missing_ok=True)
    drawn = 0
    tokens = 0
    counters = getattr(backend, "counters", None)
    rows_before = (counters.computed, counters.useful) if counters is not None else (0, 0)
    sampling_started = time.perf_counter()
    if len(kept) < job.num_samples:
        done = frozenset(s.index for s in kept)
        request = (SampleRequest(job.messages, job.num_samples - len(kept), job.decoding.seed, first_index=len(kept))
                   if static else SampleRequest(job.messages, job.num_samples, job.decoding.seed, done=done))
        with samples_path.open("a") as fh:
            for batch in backend.generate([request]):
                for sample in batch:
                    fh.write(jsonl_line(sample.as_dict()))
                fh.flush()
                drawn += len(batch)
                tokens += sum(s.completion_tokens for s in batch)
                sample_seconds = time.perf_counter() - sampling_started
                rate = tokens / sample_seconds if sample_seconds else 0.0
                print(f"generate: {len(kept) + drawn}/{job.num_samples} samples, {rate:,.0f} tokens/s",
                      file=sys.stderr, flush=True)
    from llm.models import library_versions

    summary = {
        **backend.describe(),
        "prompt_version": job.prompt_version,
        "prompt_sha256": job.prompt_sha256,
        "decoding": asdict(job.decoding),
        "num_samples": job.num_samples,
        "requested_batch_size": job.batch_size,
        "resumed_from": len(kept),
        "drawn": drawn,
        "load_seconds": round(load_seconds, 3),
        "sample_seconds": round(time.perf_counter() - sampling_started, 3),
        "completion_tokens": tokens,
        "tokens_per_second": round(tokens / (time.perf_counter() - sampling_started), 1) if drawn else None,
        "decode_rows": counters.computed - rows_before[0] if counters is not None else None,
        "useful_decode_rows": counters.useful - rows_before[1] if counters is not None else None,
        "libraries": library_versions(),
        **(extra or {}),
    }
    atomic_write_text(out / GENERATION_SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m llm.generate JOB.json", file=sys.stderr)
        return 2
    from llm.models import ModelNotFound

    try:
        job = read_job(Path(args[0]), [GenerateJob])
        summary = run(job)
    except (ValueError, FileNotFoundError, ModelNotFound) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: summary[k] for k in ("drawn", "sample_seconds", "tokens_per_second")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
