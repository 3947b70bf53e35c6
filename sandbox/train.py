"""Training phase: `python -m sandbox.train /job/job.json`.

Imports the candidate, checks it (instantiation, parameter budget, dummy forward), calls
`train_setup(prm)` and `learn()` over exactly one augmented pass of the training split (a second
pass is a `protocol` failure), and writes the network's whole state (torch's own `state_dict`, called
unbound, keys as before training) to `weights.safetensors`, plus `train.json` (the runner's element
count and learn time: candidate-side data the host records, never trusts).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch._dynamo  # noqa: F401  every optimizer's constructor imports it: pay that before timing learn()
from safetensors.torch import save_file

from contracts.sandbox import (CANDIDATE_FILE, DATA_DIR, JOB_DIR, OUT_DIR, TRAIN_IMAGES, TRAIN_LABELS,
                               TRAIN_REPORT_FILE, WEIGHTS_FILE, TrainJob, TrainReport)
from sandbox.batches import TrainBatches
from sandbox.candidate import CandidateFailure, checked_net, state_tensors
from sandbox.runner import main, seed_everything, select_device, write_output


def train(job: TrainJob, data: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
    """One phase; `data`: the training split already on the device (a container started ahead)."""
    device = select_device(job.device, job.threads)
    seed_everything(job.seed)
    if data is not None and data[0].device == device:
        images, labels = data
    else:
        images = torch.from_numpy(np.load(Path(DATA_DIR, TRAIN_IMAGES))).to(device)
        labels = torch.from_numpy(np.load(Path(DATA_DIR, TRAIN_LABELS))).to(device)
    batches = TrainBatches(images, labels, job.batch_size, job.seed, job.mean, job.std,
                           job.crop_padding, job.horizontal_flip)

    net, params, keys = checked_net(Path(JOB_DIR, CANDIDATE_FILE), job.in_shape, job.num_classes, job.prm,
                                    job.param_budget, device)

    net.train()
    started = time.perf_counter()
    net.train_setup(dict(job.prm))
    net.learn(batches)
    if device.type == "cuda":
        torch.cuda.synchronize()
    learn_seconds = time.perf_counter() - started
    if batches.passes > 1:
        raise CandidateFailure("protocol", f"learn() iterated the training stream {batches.passes} times "
                                           "(one epoch is the protocol)")

    save_file(state_tensors(net, keys), str(Path(OUT_DIR, WEIGHTS_FILE)))
    write_output(TRAIN_REPORT_FILE, TrainReport(params=params, learn_seconds=learn_seconds))


if __name__ == "__main__":
    main(TrainJob, train)
