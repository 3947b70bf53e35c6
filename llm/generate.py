"""`python -m llm.generate JOB.json`: sample a generation job's programs into its output directory.

Writes `samples.jsonl` (one sample a line, appended batch by batch and flushed, so a killed job keeps
what it finished) and, at the end, `generation.json` (totals, timing, model revision, library versions).
Run again on the same job it resumes: finished batches are kept, a half-written one is drawn again, and
because each batch is seeded from its first index the result is the same as an uninterrupted run.
Exit status: 0 done, 2 bad job or missing model, 1 anything else.
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


def run(job: GenerateJob) -> dict[str, Any]:
    from llm.sampling import SampleRequest, make_backend

    out = Path(job.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    samples_path = out / SAMPLES_FILE
    kept = _finished_batches(out, job.batch_size)
    atomic_write_text(samples_path, "".join(jsonl_line(s.as_dict()) for s in kept))
    (out / GENERATION_SUMMARY_FILE).unlink(missing_ok=True)

    start = time.perf_counter()
    backend = make_backend(job.backend, job.model, job.decoding, job.batch_size, adapter=job.adapter,
                           device=job.device, max_lora_rank=job.max_lora_rank)
    load_seconds = time.perf_counter() - start
    remaining = job.num_samples - len(kept)
    drawn = 0
    sample_seconds = 0.0
    tokens = 0
    if remaining > 0:
        request = SampleRequest(job.messages, remaining, job.decoding.seed, first_index=len(kept))
        with samples_path.open("a") as fh:
            for batch in backend.generate([request]):
                for sample in batch:
                    fh.write(jsonl_line(sample.as_dict()))
                fh.flush()
                drawn += len(batch)
                sample_seconds += batch[0].seconds
                tokens += sum(s.completion_tokens for s in batch)
                print(f"generate: {len(kept) + drawn}/{job.num_samples} samples", file=sys.stderr, flush=True)
    from llm.models import library_versions

    summary = {
        **backend.describe(),
        "prompt_version": job.prompt_version,
        "prompt_sha256": job.prompt_sha256,
        "decoding": asdict(job.decoding),
        "num_samples": job.num_samples,
        "batch_size": job.batch_size,
        "resumed_from": len(kept),
        "drawn": drawn,
        "load_seconds": round(load_seconds, 3),
        "sample_seconds": round(sample_seconds, 3),
        "completion_tokens": tokens,
        "tokens_per_second": round(tokens / sample_seconds, 1) if sample_seconds else None,
        "libraries": library_versions(),
    }
    backend.close()
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
