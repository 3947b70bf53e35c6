"""Training phase: `python -m sandbox.train /job/job.json`.

Imports the candidate, checks it (instantiation, dummy forward, parameter budget), calls
`train_setup(prm)` and `learn()` over exactly one augmented pass of the training split, and writes
`weights.safetensors` plus `train.json` (parameter count; both are candidate-side data the host
checks, never scores).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch._dynamo  # noqa: F401  every optimizer's constructor imports it: pay that before timing learn()
from safetensors.torch import save_model

from sandbox.batches import TrainBatches
from sandbox.candidate import checked_net
from sandbox.job import CANDIDATE_FILE, DATA_DIR, JOB_DIR, OUT_DIR, TRAIN_IMAGES, TRAIN_LABELS, WEIGHTS_FILE, TrainJob, read_job
from sandbox.runner import run_phase, seed_everything, select_device


def train(job: TrainJob) -> None:
    device = select_device(job.device, job.threads)
    seed_everything(job.seed)
    images = torch.from_numpy(np.load(Path(DATA_DIR, TRAIN_IMAGES))).to(device)
    labels = torch.from_numpy(np.load(Path(DATA_DIR, TRAIN_LABELS))).to(device)
    batches = TrainBatches(images, labels, job.batch_size, job.seed, job.mean, job.std,
                           job.crop_padding, job.horizontal_flip)

    net, params = checked_net(Path(JOB_DIR, CANDIDATE_FILE), job.in_shape, job.num_classes, job.prm,
                              job.param_budget, device)

    net.train()
    started = time.perf_counter()
    net.train_setup(dict(job.prm))
    net.learn(batches)
    if device.type == "cuda":
        torch.cuda.synchronize()
    learn_seconds = time.perf_counter() - started

    save_model(net, str(Path(OUT_DIR, WEIGHTS_FILE)))
    Path(OUT_DIR, "train.json").write_text(json.dumps({"params": params, "learn_seconds": learn_seconds}))


if __name__ == "__main__":
    job = read_job(Path(sys.argv[1] if len(sys.argv) > 1 else f"{JOB_DIR}/job.json"))
    assert isinstance(job, TrainJob)
    run_phase(lambda: train(job))
