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
from pathlib import Path
from typing import Any

from llm.jobs import GENERATION_SUMMARY_FILE, SAMPLES_FILE, GenerateJob, read_job


def _finished_batches(path: Path, batch_size: int) -> list[dict[str, Any]]:
    """Samples of the complete batches already in `path` (the job's own earlier, interrupted run)."""
    if not path.is_file():
        return []
    samples = []
    for line in path.read_text().splitlines():
        try:
            samples.append(json.loads(line))
        except json.JSONDecodeError:
            break
    by_batch: dict[int, list[dict[str, Any]]] = {}
    for sample in samples:
        by_batch.setdefault(sample["index"] // batch_size, []).append(sample)
    kept: list[dict[str, Any]] = []
    for batch in sorted(by_batch):
        group = by_batch[batch]
        if batch != len(kept) // batch_size or len(group) != group[0]["batch_size"]:
            break  # a gap or a partial batch: draw from here again
        kept.extend(sorted(group, key=lambda s: s["index"]))
    return kept


def run(job: GenerateJob) -> dict[str, Any]:
    from llm.sampling import SampleRequest, make_backend

    out = Path(job.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    samples_path = out / SAMPLES_FILE
    kept = _finished_batches(samples_path, job.batch_size)
    samples_path.write_text("".join(json.dumps(s) + "\n" for s in kept))
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
                    fh.write(json.dumps(sample.as_dict()) + "\n")
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
        "decoding": job.decoding.__dict__,
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
    (out / GENERATION_SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m llm.generate JOB.json", file=sys.stderr)
        return 2
    from llm.models import ModelNotFound

    try:
        job = read_job(Path(args[0]))
        if not isinstance(job, GenerateJob):
            raise ValueError(f"{args[0]}: not a generation job")
        summary = run(job)
    except (ValueError, FileNotFoundError, ModelNotFound) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: summary[k] for k in ("drawn", "sample_seconds", "tokens_per_second")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
