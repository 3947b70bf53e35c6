"""Check phase: `python -m sandbox.check /job/job.json`.

Runs the validity checks of the training phase and nothing else (no data is mounted, nothing is
trained): import and contract, instantiation, parameter budget, dummy forward. Writes `check.json`
with the parameter count (candidate-side data; the host decides the outcome from the exit status).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sandbox.candidate import checked_net
from sandbox.job import CANDIDATE_FILE, CHECK_FILE, JOB_DIR, OUT_DIR, CheckJob, read_job
from sandbox.runner import run_phase, seed_everything, select_device


def check(job: CheckJob) -> None:
    device = select_device(job.device, job.threads)
    seed_everything(job.seed)
    _, params = checked_net(Path(JOB_DIR, CANDIDATE_FILE), job.in_shape, job.num_classes, job.prm,
                            job.param_budget, device)
    Path(OUT_DIR, CHECK_FILE).write_text(json.dumps({"params": params}))


if __name__ == "__main__":
    job = read_job(Path(sys.argv[1] if len(sys.argv) > 1 else f"{JOB_DIR}/job.json"))
    assert isinstance(job, CheckJob)
    run_phase(lambda: check(job))
