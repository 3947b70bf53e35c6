"""Evaluation benchmark: what a candidate costs in nasloop's containers, started cold or warm,
against a plain in-process PyTorch loop on the same model and data.

Measured in one run, the sides interleaved (their order alternates between repetitions), medians,
each side at `jobs` = 1 and 2 (candidates at once):

- nasloop, cold and warm: `nasloop evaluate` on a stream of candidates (the same small CNN, each
  copy a distinct file; `jobs` x --stream of them), through the library call the command makes
  (`evaluate_files`), with `warm_containers` off (every phase's container started for its candidate)
  and on (a pool per phase started ahead: python, torch and the training split loaded before the
  handover). A candidate's cost is the wall time between consecutive results in the steady state
  (the first result of a stream, which pays the pool's first start, is left out): at jobs = 1 the
  median gap, at jobs = 2 the mean (the steady state's wall time over its candidates: two results
  land close together, then a longer gap, so the median says nothing there).
- fixed overhead: the same on a stream of trivial candidates (`learn()` returns at once): what a
  candidate costs beyond its own training.
- in-process ("plain loop"): the same candidate module, `prm`, seed, batch size and epoch in this
  process, fed by a standard `torch.utils.data.DataLoader` with per-sample crop/flip (torchvision's
  transforms in plain torch ops), then the same test and hold-out predictions; same thread count as a
  container. At jobs = 2, two such loops at once in two processes (started together): the slower
  one's time over 2.
- same accuracy: every copy of the candidate, cold or warm, at either jobs, must score exactly the
  same (same seed).
- CPU per candidate: the whole machine's busy CPU seconds (psutil, every process: the containers,
  dockerd, this one) between the same steady-state results, per candidate; over the machine's
  cores it is the least wall time a candidate can take here when nothing else runs (`cpu_floor_s`).

`bench-results/evaluate.json` holds, for `jobs_1` and `jobs_2` each: `cold_s_per_candidate`,
`warm_s_per_candidate`, `plain_loop_s_per_candidate`, `warm_speedup` (cold/warm), `warm_vs_plain`
(warm/plain), `fixed_overhead_cold_s`, `fixed_overhead_warm_s`, the CPU seconds of each stream per
candidate (`*_cpu_s`) and the floor they set (`*_cpu_floor_s`); and `same_accuracy`, `targets` (the
issue's, at jobs = 1), `throughput_per_min` and every run.

No CUDA here: --device cuda says so and exits 2; on a GPU machine (CUDA torch in the venv, the
sandbox image built on a CUDA base image) both sides run on the profile's GPU.

Usage: .venv/bin/python bench/bench_evaluate.py [--quick] [--dataset synthetic|fashion-mnist|cifar10]
           [--device cpu|cuda] [--profile NAME] [--stream N] [--reps N] [--workdir DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch
import torch._dynamo  # noqa: F401  as sandbox/train.py: the optimizer's first import is not training time

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from orchestrator.config import EvaluationConfig, load_config  # noqa: E402
from orchestrator.containers.client import ImageError, InfraError  # noqa: E402
from orchestrator.data import DataError, PreparedDataset, ensure_prepared  # noqa: E402
from orchestrator.evaluation.result import EvaluationResult  # noqa: E402
from orchestrator.evaluation.run import evaluate_files  # noqa: E402
from sandbox.batches import TrainBatches, normalise  # noqa: E402

CANDIDATE = REPO / "tests" / "candidates" / "small_cnn.py"
JOBS = (1, 2)  # candidates at once, each side measured at both
STREAMS = {"cold": "cold", "warm": "warm", "fixed_overhead_cold": "trivial_cold", "fixed_overhead_warm": "trivial_warm"}
CORES = psutil.cpu_count() or 1
Side = Callable[[], dict[str, Any]]
TRIVIAL = b'''import torch
import torch.nn as nn


def supported_hyperparameters():
    return {'lr', 'momentum'}


class Net(nn.Module):
    """The cheapest valid candidate: one linear layer on channel means; learn() returns at once."""

    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.fc = nn.Linear(in_shape[1], out_shape[0])

    def forward(self, x):
        return self.fc(x.mean(dim=(2, 3)))

    def train_setup(self, prm):
        pass

    def learn(self, train_data):
        return
'''


# --- nasloop: `nasloop evaluate FILE...`, through the library --------------------------------------

def nasloop_stream(source: bytes, count: int, profile: str, overrides: dict[str, Any], workdir: Path,
                   scratch: Path) -> dict[str, Any]:
    """`nasloop evaluate` on `count` copies of `source` (distinct files): seconds per candidate in
    the steady state (between consecutive results, the first left out) and every copy's numbers."""
    files = []
    stream_dir = Path(tempfile.mkdtemp(prefix="stream-", dir=scratch))
    for i in range(count):
        path = stream_dir / f"candidate_{i}.py"
        path.write_bytes(source + f"\n# copy {i}\n".encode())
        files.append(path)
    marks: list[float] = []
    busy: list[float] = []  # the machine's busy CPU seconds at each mark

    def mark(_: object) -> None:
        marks.append(time.perf_counter())
        busy.append(busy_cpu_s())

    config = load_config(profile, None, overrides)
    started = time.perf_counter()
    results: list[EvaluationResult] = evaluate_files(files, config, workdir, on_start=mark, on_result=mark,
                                                     say=lambda _m: None)
    total = time.perf_counter() - started
    for result in results:
        if not result.valid:
            raise SystemExit(f"error: a candidate did not evaluate: {result.failure}: {result.error}")
        shutil.rmtree(result.artefacts or "", ignore_errors=True)
    shutil.rmtree(stream_dir, ignore_errors=True)
    gaps = [b - a for a, b in zip(marks, marks[1:])]
    return {"invocation_s": total, "first_s": gaps[0], "per_candidate_s": statistics.median(gaps[1:]),
            "steady_mean_s": sum(gaps[1:]) / (len(gaps) - 1),
            "candidates_per_min": 60.0 * (len(gaps) - 1) / sum(gaps[1:]),
            "cpu_s": (busy[-1] - busy[1]) / (len(busy) - 2),
            "train_s": statistics.median(r.train_seconds or 0.0 for r in results),
            "learn_s": statistics.median(r.learn_seconds or 0.0 for r in results),
            "predict_s": statistics.median(r.predict_seconds or 0.0 for r in results),
            "accuracies": sorted({(r.accuracy, r.holdout_accuracy) for r in results}),
            "protocol": results[0].protocol, "image": results[0].image}


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent running anything since boot: user (guest time is
    inside it), nice, system and interrupt time; idle, I/O wait and a hypervisor's steal are not."""
    times = psutil.cpu_times()
    return sum(getattr(times, field, 0.0) for field in ("user", "nice", "system", "irq", "softirq"))


# --- in-process: the same model and data, a standard DataLoader -----------------------------------

class AugmentedImages(torch.utils.data.Dataset):
    """Per-sample augmentation as torchvision's RandomCrop(padding) + RandomHorizontalFlip +
    ToTensor + Normalize would do it, in plain torch ops."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean: list[float], std: list[float],
                 padding: int, flip: bool) -> None:
        self.images = torch.from_numpy(np.array(images))  # uint8 (N, C, H, W)
        self.labels = torch.from_numpy(np.array(labels))
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)
        self.padding, self.flip = padding, flip

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[i]
        _, h, w = x.shape
        if self.padding:
            p = self.padding
            x = torch.nn.functional.pad(x, (p, p, p, p))
            dy, dx = torch.randint(0, 2 * p + 1, (2,)).tolist()
            x = x[:, dy:dy + h, dx:dx + w]
        if self.flip and torch.rand(()).item() < 0.5:
            x = x.flip(-1)
        x = (x.float().div(255.0) - self.mean) / self.std
        return x, self.labels[i]


def make_loader(prepared: PreparedDataset, config: EvaluationConfig, workers: int,
                seed: int) -> torch.utils.data.DataLoader:
    meta = prepared.meta
    dataset = AugmentedImages(np.asarray(prepared.array("train_images")), np.asarray(prepared.array("train_labels")),
                              meta.mean, meta.std, config.crop_padding, config.horizontal_flip)
    return torch.utils.data.DataLoader(dataset, batch_size=config.batch_size, shuffle=True, num_workers=workers,
                                       generator=torch.Generator().manual_seed(seed))


def load_candidate(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"bench_candidate_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_batches(prepared: PreparedDataset, config: EvaluationConfig, device: torch.device) -> TrainBatches:
    """nasloop's data path, as sandbox/train.py builds it."""
    meta = prepared.meta
    images = torch.from_numpy(np.array(prepared.array("train_images"))).to(device)
    labels = torch.from_numpy(np.array(prepared.array("train_labels"))).to(device)
    return TrainBatches(images, labels, config.batch_size, config.seed, meta.mean, meta.std, config.crop_padding,
                        config.horizontal_flip)


def in_process(module: Any, prepared: PreparedDataset, config: EvaluationConfig, device: torch.device,
               workers: int, data: str = "dataloader") -> dict[str, Any]:
    """Train one epoch and predict the test split and hold-out in this process, fed by the
    DataLoader (the baseline) or by TrainBatches (seeded as in the sandbox: same numbers on CPU)."""
    meta = prepared.meta
    started = time.perf_counter()
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    if data == "dataloader":
        loader: Any = make_loader(prepared, config, workers, config.seed)
    else:
        loader = train_batches(prepared, config, device)
    net = module.Net(tuple(meta.in_shape), (meta.num_classes,), dict(config.hyperparameters), device).to(device)
    net.train()
    net.train_setup(dict(config.hyperparameters))
    sync(device)
    setup = time.perf_counter() - started

    learn_started, learn_cpu_started = time.perf_counter(), time.process_time()
    net.learn(loader)
    sync(device)
    learn = time.perf_counter() - learn_started
    learn_cpu = time.process_time() - learn_cpu_started

    predict_started = time.perf_counter()
    mean = torch.tensor(meta.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(meta.std, device=device).view(1, -1, 1, 1)
    net.eval()
    accuracy = {}
    with torch.no_grad():
        for split in ("test", "holdout"):
            images, labels = prepared.array(f"{split}_images"), np.asarray(prepared.array(f"{split}_labels"))
            predicted = []
            for start in range(0, len(images), config.predict_batch_size):
                batch = torch.from_numpy(np.array(images[start:start + config.predict_batch_size]))
                predicted.append(net(normalise(batch.to(device), mean, std)).argmax(1).cpu().numpy())
            accuracy[split] = float((np.concatenate(predicted) == labels).mean()) if len(labels) else None
    sync(device)
    predict = time.perf_counter() - predict_started
    return {"total_s": time.perf_counter() - started, "setup_s": setup, "learn_s": learn, "learn_cpu_s": learn_cpu,
            "predict_s": predict,
            "accuracy": accuracy["test"], "holdout_accuracy": accuracy["holdout"]}


def _plain_in_child(profile: str, overrides: dict[str, Any], workdir: str, threads: int, barrier: Any,
                    results: Any) -> None:
    """One in-process loop in a child process, started when its siblings are ready (the barrier)."""
    torch.set_num_threads(threads)
    config = load_config(profile, None, overrides)
    data = config.data
    prepared = ensure_prepared(data.dataset, Path(workdir), Path(workdir) / "data", data.holdout_fraction)
    device = torch.device("cuda", 0) if config.evaluation.device == "cuda" else torch.device("cpu")
    module = load_candidate(CANDIDATE)
    barrier.wait()
    results.put(in_process(module, prepared, config.evaluation, device, 0))


def plain_together(jobs: int, profile: str, overrides: dict[str, Any], workdir: Path, threads: int) -> dict[str, Any]:
    """`jobs` in-process loops at once, each in its own process: per candidate, the slowest one's
    seconds over `jobs` (what `jobs` slots give without nasloop's containers)."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(jobs), context.Queue()
    children = [context.Process(target=_plain_in_child, args=(profile, overrides, str(workdir), threads, barrier,
                                                                results)) for _ in range(jobs)]
    for child in children:
        child.start()
    try:
        runs = [results.get(timeout=1800) for _ in children]
    finally:
        for child in children:
            child.join(timeout=60)
    slowest = max(run["total_s"] for run in runs)
    return {"per_candidate_s": slowest / jobs, "slowest_s": slowest, "learn_s": max(run["learn_s"] for run in runs),
            "runs": runs}


# --- report -------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repetition, shorter streams")
    parser.add_argument("--dataset", choices=("synthetic", "fashion-mnist", "cifar10"), default="synthetic")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--profile", default="smoke", help="configuration profile [smoke]")
    parser.add_argument("--stream", type=int, default=None, help="candidates per stream and job slot [4; quick: 3]")
    parser.add_argument("--reps", type=int, default=None, help="repetitions [2; quick: 1]")
    parser.add_argument("--workdir", type=Path, default=REPO / "runs",
                        help="workspace (prepared data, scratch) [runs/, as nasloop's]")
    parser.add_argument("--json", type=Path, default=None,
                        help="results file [bench-results/evaluate.json; other settings get a suffix]")
    args = parser.parse_args()
    reps = args.reps or (1 if args.quick else 2)
    stream = args.stream or (3 if args.quick else 4)

    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"--device cuda: CUDA is not available to this Python's torch ({torch.__version__}, "
              f"built for CUDA {torch.version.cuda}). The CUDA benchmark needs a GPU machine, a CUDA torch in "
              "the venv and a sandbox image built on a CUDA base image. Nothing was measured.")
        return 2
    base = {"data": {"dataset": args.dataset}, "evaluation": {"device": args.device}}
    config = load_config(args.profile, None, base)
    evaluation = config.evaluation
    profile_jobs = evaluation.jobs

    def overrides(warm: bool, jobs: int) -> dict[str, Any]:
        return {"data": dict(base["data"]), "evaluation": {**base["evaluation"], "warm_containers": warm, "jobs": jobs}}

    threads = max(1, int(evaluation.cpus))
    torch.set_num_threads(threads)
    device = torch.device("cuda", 0) if args.device == "cuda" else torch.device("cpu")
    workdir = args.workdir.resolve()
    try:
        prepared = ensure_prepared(args.dataset, workdir, workdir / "data", config.data.holdout_fraction)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    meta = prepared.meta
    module = load_candidate(CANDIDATE)
    source = CANDIDATE.read_bytes()
    scratch_root = workdir / "scratch"
    scratch_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="bench-evaluate-", dir=scratch_root))
    print(f"evaluation benchmark: {CANDIDATE.relative_to(REPO)} on {args.dataset} ({meta.n_train:,} train, "
          f"{meta.n_test:,} test, {meta.n_holdout:,} hold-out), device {args.device}, profile {args.profile}")
    print(f"  batch {evaluation.batch_size}; 1 epoch; seed {evaluation.seed}; {threads} torch thread(s) on both "
          f"sides; containers: cpus={evaluation.cpus:g}, memory={evaluation.memory}; streams of {stream} "
          f"candidates per job slot, at jobs {' and '.join(map(str, JOBS))}; {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}")
    print(f"  {reps} repetition(s), sides interleaved (order alternating); medians", flush=True)

    def stream_side(candidate: bytes, warm: bool, jobs: int) -> Side:
        return lambda: nasloop_stream(candidate, jobs * stream, args.profile, overrides(warm, jobs), workdir, scratch)

    def plain_alone() -> dict[str, Any]:
        run = in_process(module, prepared, evaluation, device, 0)
        return {**run, "per_candidate_s": run["total_s"]}

    def plain_side(jobs: int) -> Side:
        if jobs == 1:
            return plain_alone
        return lambda: plain_together(jobs, args.profile, overrides(False, jobs), workdir, threads)

    sides: list[tuple[str, Side]] = []
    for jobs in JOBS:
        sides += [(f"cold_jobs{jobs}", stream_side(source, False, jobs)),
                  (f"warm_jobs{jobs}", stream_side(source, True, jobs)),
                  (f"trivial_cold_jobs{jobs}", stream_side(TRIVIAL, False, jobs)),
                  (f"trivial_warm_jobs{jobs}", stream_side(TRIVIAL, True, jobs)),
                  (f"plain_jobs{jobs}", plain_side(jobs))]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in sides}
    started = time.perf_counter()
    try:
        for rep in range(reps):
            for name, side in (sides if rep % 2 == 0 else sides[::-1]):
                runs[name].append(side())
                print(f"    {name}: done ({time.perf_counter() - started:.0f} s)", flush=True)
            print(f"  repetition {rep + 1}/{reps} done ({time.perf_counter() - started:.0f} s)", flush=True)
    except (ImageError, InfraError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    elapsed = time.perf_counter() - started

    def med(side: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[side])

    def level(jobs: int) -> dict[str, float]:
        """The issue's numbers at `jobs` candidates at once (seconds per candidate in the steady state)."""
        key = "per_candidate_s" if jobs == 1 else "steady_mean_s"
        cold, warm = med(f"cold_jobs{jobs}", key), med(f"warm_jobs{jobs}", key)
        plain = med(f"plain_jobs{jobs}", "per_candidate_s")
        return {"cold_s_per_candidate": cold, "warm_s_per_candidate": warm, "plain_loop_s_per_candidate": plain,
                "warm_speedup": cold / warm, "warm_vs_plain": warm / plain,
                "fixed_overhead_cold_s": med(f"trivial_cold_jobs{jobs}", key),
                "fixed_overhead_warm_s": med(f"trivial_warm_jobs{jobs}", key),
                **{f"{side}_cpu_s": med(f"{name}_jobs{jobs}", "cpu_s") for side, name in STREAMS.items()},
                **{f"{side}_cpu_floor_s": med(f"{name}_jobs{jobs}", "cpu_s") / CORES for side, name in STREAMS.items()}}

    levels = {jobs: level(jobs) for jobs in JOBS}
    details = {jobs: {"cold_learn_s": med(f"cold_jobs{jobs}", "learn_s"), "warm_learn_s": med(f"warm_jobs{jobs}", "learn_s"),
                      "plain_learn_s": med(f"plain_jobs{jobs}", "learn_s"),
                      "cold_first_s": med(f"cold_jobs{jobs}", "first_s"), "warm_first_s": med(f"warm_jobs{jobs}", "first_s")}
               for jobs in JOBS}
    throughput = {f"{side}_jobs{jobs}_per_min": med(f"{side}_jobs{jobs}", "candidates_per_min")
                  for jobs in JOBS for side in ("cold", "warm")}
    scored = {tuple(a) for side in runs if side.startswith(("cold", "warm"))
              for r in runs[side] for a in r["accuracies"]}
    same_accuracy = len(scored) == 1
    one = levels[1]
    targets = {"fixed_overhead_warm_s <= 1.5": one["fixed_overhead_warm_s"] <= 1.5,
               "warm_vs_plain <= 1.3": one["warm_vs_plain"] <= 1.3, "same_accuracy": same_accuracy}

    width = 58
    for jobs in JOBS:
        numbers, more = levels[jobs], details[jobs]
        gap = "median" if jobs == 1 else "mean"
        print(f"\n{f'seconds per candidate, jobs = {jobs} ({gap} gap in the steady state)':<{width}}{'median':>8}")
        for label, value in [("nasloop, cold containers", numbers["cold_s_per_candidate"]),
                             ("nasloop, warm containers", numbers["warm_s_per_candidate"]),
                             ("in-process PyTorch + DataLoader (plain loop)", numbers["plain_loop_s_per_candidate"]),
                             ("fixed overhead, trivial candidate, cold", numbers["fixed_overhead_cold_s"]),
                             ("fixed overhead, trivial candidate, warm", numbers["fixed_overhead_warm_s"]),
                             ("first candidate of a stream, cold", more["cold_first_s"]),
                             ("first candidate of a stream, warm (pool's first start)", more["warm_first_s"])]:
            print(f"{label:<{width}}{value:8.2f}")
        print(f"{'  learn() cold / warm / plain':<{width}}{more['cold_learn_s']:.2f} / {more['warm_learn_s']:.2f} / "
              f"{more['plain_learn_s']:.2f}")
        print(f"{'warm_speedup (cold/warm)':<{width}}{numbers['warm_speedup']:8.2f}")
        print(f"{'warm_vs_plain (warm/plain)':<{width}}{numbers['warm_vs_plain']:8.2f}")
        print(f"{f'  CPU s per candidate (all processes; / {CORES} cores = floor)':<{width}}")
        for side in STREAMS:
            print(f"{'    ' + side:<{width}}{numbers[side + '_cpu_s']:8.2f}  floor {numbers[side + '_cpu_floor_s']:.2f} s")
    print(f"\n{'throughput, candidates per minute':<{width}}")
    for key, value in throughput.items():
        print(f"{key:<{width}}{value:8.2f}")
    print(f"\nsame accuracy for every copy, cold and warm, jobs 1 and 2: {same_accuracy} {sorted(scored)}")
    for target, met in targets.items():
        print(f"target {target} (jobs = 1): {'met' if met else 'NOT met'}")
    print(f"benchmark wall time {elapsed:.0f} s; load average at the end {os.getloadavg()[0]:.1f} "
          "(other work on the machine slows wall times)")

    results = {
        "benchmark": "evaluate", "candidate": str(CANDIDATE.relative_to(REPO)), "dataset": args.dataset,
        "device": args.device, "profile": args.profile, "reps": reps, "stream": stream, "quick": args.quick,
        "n_train": meta.n_train, "batch_size": evaluation.batch_size, "threads": threads,
        "container_cpus": evaluation.cpus, "profile_jobs": profile_jobs,
        "protocol": runs["cold_jobs1"][0]["protocol"], "image": runs["cold_jobs1"][0]["image"],
        "host_torch": torch.__version__,
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_average": os.getloadavg()[0],
                 "cuda_device": torch.cuda.get_device_name(0) if args.device == "cuda" else None},
        "wall_s": elapsed, **{f"jobs_{jobs}": levels[jobs] for jobs in JOBS}, "same_accuracy": same_accuracy,
        "targets": targets, "details": {f"jobs_{jobs}": details[jobs] for jobs in JOBS},
        "throughput_per_min": throughput, "accuracies": sorted(scored), "runs": runs,
    }
    suffix = "" if (args.dataset, args.device, args.profile) == ("synthetic", "cpu", "smoke") else \
        f"-{args.dataset}-{args.device}" + ("" if args.profile == "smoke" else f"-{args.profile}")
    out = args.json or REPO / "bench-results" / f"evaluate{suffix}{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=list))
    print(f"results written to {out.relative_to(REPO) if out.resolve().is_relative_to(REPO) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
