"""Check phase: `python -m sandbox.check /job/job.json`.

Runs the validity checks of the training phase and nothing else (no data is mounted, nothing is
trained): import and contract, instantiation, parameter budget, dummy forward. Writes `check.json`
with the parameter count (candidate-side data; the host decides the outcome from the exit status).
"""

from __future__ import annotations

from pathlib import Path

from contracts.sandbox import CANDIDATE_FILE, CHECK_REPORT_FILE, JOB_DIR, CheckJob, CheckReport
from sandbox.candidate import checked_net
from sandbox.runner import main, seed_everything, select_device, write_output


def check(job: CheckJob) -> None:
    device = select_device(job.device, job.threads)
    seed_everything(job.seed)
    _, params = checked_net(Path(JOB_DIR, CANDIDATE_FILE), job.in_shape, job.num_classes, job.prm,
                            job.param_budget, device)
    write_output(CHECK_REPORT_FILE, CheckReport(params=params))


if __name__ == "__main__":
    main(CheckJob, check)
