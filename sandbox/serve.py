"""A phase's runner, started before its candidate: `python -m sandbox.serve PHASE DEVICE`.

It does what every candidate of the phase needs first (import torch and what the phase uses; for
training also `torch._dynamo`, which every optimizer imports, and the training split on the device,
the CUDA context with it), prints `NASLOOP-READY`, and waits for the host to hand over exactly one
candidate: the job file appearing in `/job` (the host writes it last). Then it runs the phase as
`python -m sandbox.<phase>` would and exits. A container started cold runs the same code with the
job already there, so a candidate's result cannot depend on which way its container was started.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from contracts.jobfile import read_job
from contracts.sandbox import DATA_DIR, JOB_DIR, JOB_FILE, TRAIN_IMAGES, TRAIN_LABELS, CheckJob, PredictJob, TrainJob

READY = "NASLOOP-READY"
_POLL_SECONDS = 0.01


def _wait_for_job(path: Path) -> None:
    while not path.is_file():
        time.sleep(_POLL_SECONDS)


def main(argv: list[str]) -> None:
    phase, device_name = argv[0], argv[1] if len(argv) > 1 else "cpu"
    import numpy as np
    import torch

    from sandbox import runner

    runner.no_core_dumps()
    device = torch.device("cuda", 0) if device_name == "cuda" and torch.cuda.is_available() else torch.device("cpu")
    if phase == "train":
        import sandbox.train as module

        data = (torch.from_numpy(np.load(Path(DATA_DIR, TRAIN_IMAGES))).to(device),
                torch.from_numpy(np.load(Path(DATA_DIR, TRAIN_LABELS))).to(device))
        run = lambda job: module.train(job, data)  # noqa: E731
        kind: type = TrainJob
    elif phase == "predict":
        import sandbox.predict as module

        run, kind = module.predict, PredictJob
        if device.type == "cuda":
            torch.zeros(1, device=device)  # the CUDA context, before the candidate's time starts
    elif phase == "check":
        import sandbox.check as module

        run, kind = module.check, CheckJob
    else:
        raise SystemExit(f"unknown phase {phase!r}")
    print(READY, flush=True)
    job_path = Path(JOB_DIR, JOB_FILE)
    _wait_for_job(job_path)
    job = read_job(job_path, [kind])
    runner.run_phase(lambda: run(job))


if __name__ == "__main__":
    main(sys.argv[1:])
