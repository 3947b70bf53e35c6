"""Check phase: `python -m sandbox.check /job/job.json`.

Runs the validity checks of the training phase and nothing else (no data is mounted, nothing is
trained): import and contract, instantiation, parameter budget, dummy forward. Writes the fresh
network's state to `weights.safetensors` (the host counts it against the budget, as after training)
and `check.json` with the runner's count (candidate-side data).
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save_file

from contracts.sandbox import CANDIDATE_FILE, CHECK_REPORT_FILE, JOB_DIR, OUT_DIR, WEIGHTS_FILE, CheckJob, CheckReport
from sandbox.candidate import checked_net, state_tensors
from sandbox.runner import main, seed_everything, select_device, write_output


def check(job: CheckJob) -> None:
    device = select_device(job.device, job.threads)
    seed_everything(job.seed)
    net, params, keys = checked_net(Path(JOB_DIR, CANDIDATE_FILE), job.in_shape, job.num_classes, job.prm,
                                    job.param_budget, device)
    save_file(state_tensors(net, keys), str(Path(OUT_DIR, WEIGHTS_FILE)))
    write_output(CHECK_REPORT_FILE, CheckReport(params=params))


if __name__ == "__main__":
    main(CheckJob, check)
