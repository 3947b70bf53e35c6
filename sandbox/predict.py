"""Prediction phase: `python -m sandbox.predict /job/job.json`.

Re-instantiates the candidate, loads its trained weights strictly through torch's own
`load_state_dict` (called unbound, on the fresh Net), switches to `eval()` and writes `logits.npy`
(float32, [N, num_classes]) for unlabeled images in an order chosen by the host.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from contracts.sandbox import CANDIDATE_FILE, DATA_DIR, JOB_DIR, LOGITS_FILE, OUT_DIR, PREDICT_IMAGES, WEIGHTS_FILE, PredictJob
from sandbox.batches import normalise
from sandbox.candidate import CandidateFailure, instantiate, load_module, load_state
from sandbox.runner import main, seed_everything, select_device


def predict(job: PredictJob) -> None:
    device = select_device(job.device, job.threads)
    seed_everything(job.seed)
    images = np.load(Path(DATA_DIR, PREDICT_IMAGES), mmap_mode="r")
    mean = torch.tensor(job.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(job.std, device=device).view(1, -1, 1, 1)

    module = load_module(Path(JOB_DIR, CANDIDATE_FILE))
    net = instantiate(module, job.in_shape, job.num_classes, job.prm, device)
    try:
        load_state(net, load_file(str(Path(JOB_DIR, WEIGHTS_FILE)), device=str(device)))
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CandidateFailure("instantiate", f"trained weights do not load into a fresh Net: {exc}") from exc
    net.eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, len(images), job.batch_size):
            # A writable copy of the read-only mapping: no PyTorch warning in the candidate's log tail.
            batch = torch.from_numpy(np.array(images[start:start + job.batch_size])).to(device)
            logits = net(normalise(batch, mean, std))
            outputs.append(logits.float().reshape(len(batch), -1).cpu().numpy())
    np.save(Path(OUT_DIR, LOGITS_FILE), np.concatenate(outputs).astype(np.float32, copy=False), allow_pickle=False)


if __name__ == "__main__":
    main(PredictJob, predict)
