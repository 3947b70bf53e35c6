"""Evaluation benchmark: `nasloop evaluate` against a plain in-process PyTorch loop, on the same
model and data, and where a candidate's time goes.

Measured in one run, the sides interleaved (their order alternates between repetitions), medians
over the repetitions:

- nasloop: what `nasloop evaluate FILE` does, through the library (docker client, image, prepared
  data, scoring set, `evaluate_many`): contract check, the training container (one epoch through
  `sandbox.batches.TrainBatches`), the prediction container, host validation and scoring. The
  phases are timed by wrapping `run_phase`, `read_logits` and `accuracies` in this process only.
- in-process: the same candidate module, `prm`, seed, batch size and epoch in this process, its own
  `train_setup()` and `learn()` fed by a standard `torch.utils.data.DataLoader` over a `Dataset`
  that crops and flips one sample at a time in `__getitem__` (what torchvision's RandomCrop +
  RandomHorizontalFlip + ToTensor + Normalize do, in plain torch ops: torchvision is not needed),
  then the same test and hold-out predictions. Same thread count as the sandbox's. A third side
  feeds the same loop with TrainBatches, seeded as the sandbox seeds it (on CPU it reproduces the
  sandbox's accuracy exactly), which separates the container's cost from the data path's.
- fixed per-candidate overhead: a trivial candidate (`learn()` returns at once) evaluated end to
  end, and bare hardened containers (same limits, same `run_phase`) that run `python -c pass`,
  `import torch` (and create the CUDA context with --device cuda) and also `import torch._dynamo`
  (which the training runner imports up front, as every optimizer's constructor does).
- data path alone (no model): one epoch of TrainBatches (uint8 tensors on the device, batched
  crop/flip) against one epoch of the DataLoader above, batches delivered on the device.
- CPU share: the same fixed convolution loop in this process and in a hardened container, CPU
  seconds per wall second (on a shared machine the containers' cgroup may get less CPU than a host
  process; that part of a slowdown is the machine's, not the sandbox's).

The in-process sides run in this interpreter with torch (and torch._dynamo, which every optimizer
imports) already loaded; each container pays python start and those imports itself. No CUDA here:
--device cuda says so and exits 2; on a GPU machine (CUDA torch in the venv, the sandbox image built
on a CUDA base image) both sides and the data path run on the profile's GPU.

Usage: .venv/bin/python bench/bench_evaluate.py [--quick] [--dataset synthetic|fashion-mnist|cifar10]
           [--device cpu|cuda] [--profile NAME] [--timeout S] [--reps N] [--loader-workers N]
           [--workdir DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch._dynamo  # noqa: F401  as sandbox/train.py: the optimizer's first import is not training time

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import orchestrator.evaluation.evaluator as ev  # noqa: E402
from orchestrator.config import EvaluationConfig, load_config  # noqa: E402
from orchestrator.containers import images as img  # noqa: E402
from orchestrator.containers.client import ImageError, InfraError  # noqa: E402
from orchestrator.containers.hardened import Phase, run_phase  # noqa: E402
from orchestrator.data import DataError, PreparedDataset, ensure_prepared  # noqa: E402
from orchestrator.evaluation.protocol import make_protocol  # noqa: E402
from orchestrator.evaluation.run import evaluate_files  # noqa: E402
from sandbox.batches import TrainBatches, normalise  # noqa: E402

CANDIDATE = REPO / "tests" / "candidates" / "small_cnn.py"
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


# --- timing of the library's phases (this process only) ------------------------------------------

class Probe:
    """Wall clock of every container phase (whole `run_phase` call and the part the container ran)
    and of the host's scoring, recorded while the library evaluates."""

    def __init__(self) -> None:
        self.phases: list[tuple[str, float, float]] = []  # name, run_phase wall, container running
        self.scoring = 0.0

    def reset(self) -> None:
        self.phases, self.scoring = [], 0.0

    def install(self) -> None:
        def timed_phase(client, phase, limits):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            outcome = run_phase(client, phase, limits)
            self.phases.append((phase.name, time.perf_counter() - started, outcome.seconds))
            return outcome

        def timed(fn: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    self.scoring += time.perf_counter() - started
            return wrapper

        ev.run_phase = timed_phase
        ev.read_logits = timed(ev.read_logits)
        ev.accuracies = timed(ev.accuracies)

    def phase(self, name: str) -> tuple[float, float]:
        matches = [(wall, inside) for n, wall, inside in self.phases if n == name]
        assert len(matches) == 1, (name, self.phases)
        return matches[0]


PROBE = Probe()


# --- nasloop: `nasloop evaluate FILE`, through the library ----------------------------------------

def nasloop_evaluate(name: str, source: bytes, profile: str, overrides: dict[str, Any], workdir: Path,
                     artefacts: Path) -> dict[str, Any]:
    """One `nasloop evaluate` invocation on one file, through the same library call the command makes."""
    PROBE.reset()
    candidate_file = artefacts / f"{name}.py"
    candidate_file.parent.mkdir(parents=True, exist_ok=True)
    candidate_file.write_bytes(source)
    started = time.perf_counter()
    marks: dict[str, float] = {}
    config = load_config(profile, None, overrides)
    (result,) = evaluate_files([candidate_file], config, workdir,
                               on_start=lambda _evaluator: marks.setdefault("setup", time.perf_counter()))
    setup = marks["setup"] - started
    candidate = time.perf_counter() - marks["setup"]
    total = time.perf_counter() - started
    if not result.valid:
        raise SystemExit(f"error: {name} did not evaluate: {result.failure}: {result.error}")
    shutil.rmtree(result.artefacts or "", ignore_errors=True)
    train_wall, train_inside = PROBE.phase("train")
    predict_wall, predict_inside = PROBE.phase("predict")
    learn = result.learn_seconds or 0.0
    return {
        "invocation_s": total, "invocation_setup_s": setup, "candidate_s": candidate,
        "train_phase_s": train_wall, "train_docker_s": train_wall - train_inside,
        "train_container_s": train_inside, "learn_s": learn, "train_container_other_s": train_inside - learn,
        "predict_phase_s": predict_wall, "predict_docker_s": predict_wall - predict_inside,
        "predict_container_s": predict_inside,
        "host_s": candidate - train_wall - predict_wall, "host_scoring_s": PROBE.scoring,
        "accuracy": result.accuracy, "holdout_accuracy": result.holdout_accuracy, "params": result.params,
        "protocol": result.protocol, "image": result.image,
    }


def bare_container(client, image: img.ResolvedImage, prepared: PreparedDataset, config: EvaluationConfig,  # type: ignore[no-untyped-def]
                   command: str, scratch: Path) -> dict[str, float]:
    """A hardened container (the training phase's limits, GPU included, and `run_phase`) that runs
    only `command`."""
    limits = replace(make_protocol(config, prepared).train_limits, timeout_s=120.0)
    out_dir = Path(tempfile.mkdtemp(prefix="bare-", dir=scratch)) / "out"
    started = time.perf_counter()
    outcome = run_phase(client, Phase("bench-bare", image.id, ["python3", "-c", command], {}, out_dir,
                                      gpu=config.gpu if config.device == "cuda" else None), limits)
    wall = time.perf_counter() - started
    shutil.rmtree(out_dir.parent, ignore_errors=True)
    if outcome.exit_code != 0:
        raise SystemExit(f"error: bare container `python3 -c {command!r}` failed: {outcome.log_tail}")
    return {"wall_s": wall, "container_s": outcome.seconds, "docker_s": wall - outcome.seconds}


def cpu_share_snippet(threads: int, iterations: int) -> str:
    """A fixed CPU-bound loop (convolutions) that prints its wall and CPU seconds."""
    return ("import time, torch\n"
            f"torch.set_num_threads({threads})\n"
            "x, w = torch.randn(64, 32, 32, 32), torch.randn(64, 32, 3, 3)\n"
            "torch.nn.functional.conv2d(x, w, padding=1)\n"
            "wall, cpu = time.perf_counter(), time.process_time()\n"
            f"for _ in range({iterations}):\n"
            "    torch.nn.functional.conv2d(x, w, padding=1)\n"
            "print('CPUSHARE', time.perf_counter() - wall, time.process_time() - cpu)\n")


def cpu_share(client, image: img.ResolvedImage, prepared: PreparedDataset, config: EvaluationConfig,  # type: ignore[no-untyped-def]
              scratch: Path, iterations: int) -> dict[str, float]:
    """CPU seconds per wall second of the same loop in this process and in a hardened container:
    on a shared machine the containers (one cgroup among others) may get less CPU than a host
    process, which slows the sandbox for reasons that are not the sandbox's."""
    threads = max(1, int(config.cpus))
    snippet = cpu_share_snippet(threads, iterations)
    output = io.StringIO()
    previous = torch.get_num_threads()
    with contextlib.redirect_stdout(output):
        exec(snippet, {})  # noqa: S102  our own constant code
    torch.set_num_threads(previous)
    host_wall, host_cpu = (float(v) for v in output.getvalue().split()[1:3])
    train_limits = make_protocol(config, prepared).train_limits
    out_dir = Path(tempfile.mkdtemp(prefix="cpu-", dir=scratch)) / "out"
    outcome = run_phase(client, Phase("bench-cpu", image.id, ["python3", "-c", snippet], {}, out_dir),
                        replace(train_limits, timeout_s=300.0))
    shutil.rmtree(out_dir.parent, ignore_errors=True)
    lines = [line for line in outcome.log_tail.splitlines() if line.startswith("CPUSHARE ")]
    if outcome.exit_code != 0 or not lines:
        raise SystemExit(f"error: the CPU-share container failed: {outcome.log_tail}")
    wall, cpu = (float(v) for v in lines[-1].split()[1:3])
    return {"host_wall_s": host_wall, "host_cpu_s": host_cpu, "host_share": host_cpu / host_wall,
            "container_wall_s": wall, "container_cpu_s": cpu, "container_share": cpu / wall}


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


# --- the data path alone ------------------------------------------------------------------------

def data_path(prepared: PreparedDataset, config: EvaluationConfig, device: torch.device, workers: int,
              epochs: int) -> dict[str, float]:
    """Seconds per epoch of batches delivered on `device`: TrainBatches against the DataLoader."""
    batches = train_batches(prepared, config, device)
    sync(device)
    started = time.perf_counter()
    for _ in range(epochs):
        for x, y in batches:
            pass
    sync(device)
    ours = (time.perf_counter() - started) / epochs

    loader = make_loader(prepared, config, workers, config.seed)
    started = time.perf_counter()
    for _ in range(epochs):
        for x, y in loader:
            x, y = x.to(device), y.to(device)
    sync(device)
    theirs = (time.perf_counter() - started) / epochs
    return {"trainbatches_epoch_s": ours, "dataloader_epoch_s": theirs}


# --- report -------------------------------------------------------------------------------------

def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def fmt(stats: dict[str, float], reps: int) -> str:
    text = f"{stats['median']:8.2f}"
    return text + (f"   [{stats['min']:.2f} - {stats['max']:.2f}]" if reps > 1 else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repetition, fewer data-path epochs")
    parser.add_argument("--dataset", choices=("synthetic", "fashion-mnist", "cifar10"), default="synthetic")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--profile", default="smoke", help="configuration profile [smoke]")
    parser.add_argument("--timeout", type=float, default=None,
                        help="wall-clock limit per container phase in seconds [the profile's]")
    parser.add_argument("--reps", type=int, default=None, help="repetitions [3; quick: 1]")
    parser.add_argument("--loader-workers", type=int, default=0,
                        help="DataLoader num_workers of the in-process baseline [0, its default]")
    parser.add_argument("--workdir", type=Path, default=REPO / "runs",
                        help="workspace (prepared data, scratch) [runs/, as nasloop's]")
    parser.add_argument("--json", type=Path, default=None,
                        help="results file [bench-results/evaluate.json; other settings get a suffix]")
    args = parser.parse_args()
    reps = args.reps or (1 if args.quick else 3)

    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"--device cuda: CUDA is not available to this Python's torch ({torch.__version__}, "
              f"built for CUDA {torch.version.cuda}). The CUDA benchmark needs a GPU machine, a CUDA torch in "
              "the venv and a sandbox image built on a CUDA base image. Nothing was measured.")
        return 2

    overrides: dict[str, Any] = {"data": {"dataset": args.dataset}, "evaluation": {"device": args.device}}
    if args.timeout is not None:
        overrides["evaluation"].update(train_timeout_s=args.timeout, predict_timeout_s=args.timeout)
    config = load_config(args.profile, None, overrides)
    evaluation = config.evaluation
    threads = max(1, int(evaluation.cpus))  # what the Evaluator gives a container
    torch.set_num_threads(threads)
    device = torch.device("cuda", 0) if args.device == "cuda" else torch.device("cpu")
    workdir = args.workdir.resolve()
    try:
        docker = img.connect("sandbox")
        client, image = docker.client, docker.images["sandbox"]
    except ImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        prepared = ensure_prepared(args.dataset, workdir, workdir / "data", config.data.holdout_fraction,
                                   config.data.seed)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    meta = prepared.meta
    module = load_candidate(CANDIDATE)
    source = CANDIDATE.read_bytes()
    data_epochs = max(1, round((5000 if args.quick else 20000) / meta.n_train))
    scratch_root = workdir / "scratch"
    scratch_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="bench-evaluate-", dir=scratch_root))
    PROBE.install()

    print(f"evaluation benchmark: {CANDIDATE.relative_to(REPO)} on {args.dataset} ({meta.n_train:,} train, "
          f"{meta.n_test:,} test, {meta.n_holdout:,} hold-out), device {args.device}, profile {args.profile}")
    prm = ", ".join(f"{k}={v:g}" for k, v in config.evaluation.hyperparameters.items())
    print(f"  prm {prm}; batch {evaluation.batch_size}; 1 epoch; seed {evaluation.seed}; {threads} torch thread(s) "
          f"on both sides; containers: cpus={evaluation.cpus:g}, memory={evaluation.memory}; "
          f"DataLoader num_workers={args.loader_workers}")
    print(f"  image {image.tag}; torch {torch.__version__} on the host; {os.cpu_count()} CPU(s); "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"  {reps} repetition(s), sides interleaved (order alternating); medians"
          + (" [min - max]" if reps > 1 else ""), flush=True)

    bare_pass = "pass"
    # Ends as nasloop's runner ends (os._exit: no interpreter teardown, which costs torch ~0.3 s).
    bare_torch = ("import os, torch; torch.zeros(1, device='cuda'); torch.cuda.synchronize(); os._exit(0)"
                  if args.device == "cuda" else "import os, torch; os._exit(0)")
    bare_dynamo = bare_torch.replace("import os, torch;", "import os, torch, torch._dynamo;")
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in (
        "nasloop", "in_process", "in_process_trainbatches", "trivial", "bare_pass", "bare_torch", "bare_dynamo",
        "data_path", "cpu_share")}
    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("nasloop", lambda: nasloop_evaluate(CANDIDATE.name, source, args.profile, overrides, workdir,
                                             scratch / "artefacts")),
        ("bare_pass", lambda: bare_container(client, image, prepared, evaluation, bare_pass, scratch)),
        ("bare_torch", lambda: bare_container(client, image, prepared, evaluation, bare_torch, scratch)),
        ("bare_dynamo", lambda: bare_container(client, image, prepared, evaluation, bare_dynamo, scratch)),
        ("trivial", lambda: nasloop_evaluate("trivial.py", TRIVIAL, args.profile, overrides, workdir,
                                             scratch / "artefacts")),
        ("data_path", lambda: data_path(prepared, evaluation, device, args.loader_workers, data_epochs)),
        ("cpu_share", lambda: cpu_share(client, image, prepared, evaluation, scratch, 10 if args.quick else 20)),
        ("in_process", lambda: in_process(module, prepared, evaluation, device, args.loader_workers)),
        ("in_process_trainbatches", lambda: in_process(module, prepared, evaluation, device, 0, "trainbatches")),
    ]
    started = time.perf_counter()
    try:
        bare_container(client, image, prepared, evaluation, bare_torch, scratch)  # warm-up: image files in the page cache
        for rep in range(reps):
            for name, step in (steps if rep % 2 == 0 else steps[::-1]):
                runs[name].append(step())
            print(f"  repetition {rep + 1}/{reps} done ({time.perf_counter() - started:.0f} s)", flush=True)
    except InfraError as exc:
        print(f"error: infrastructure failure: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    elapsed = time.perf_counter() - started

    def med(side: str, key: str) -> dict[str, float]:
        return summary([r[key] for r in runs[side]])

    def paired(a: str, ka: str, b: str, kb: str) -> dict[str, float]:
        return summary([x[ka] / y[kb] for x, y in zip(runs[a], runs[b])])

    N, T, P, Q = "nasloop", "trivial", "in_process", "in_process_trainbatches"
    rows = [  # label, side, field
        ("nasloop evaluate, 1 file (whole invocation)", N, "invocation_s"),
        ("  invocation setup: client, image, data, scoring set", N, "invocation_setup_s"),
        ("  per candidate", N, "candidate_s"),
        ("    training phase: docker create/start/remove", N, "train_docker_s"),
        ("      in container: python, imports, data, checks, save", N, "train_container_other_s"),
        ("      in container: learn() on TrainBatches (sandbox-reported)", N, "learn_s"),
        ("    prediction phase: docker create/start/remove", N, "predict_docker_s"),
        ("      in container: python, imports, load weights, predict", N, "predict_container_s"),
        ("    host: contract check, job files, validation, scoring", N, "host_s"),
        ("      of which reading logits + accuracy", N, "host_scoring_s"),
        ("in-process PyTorch + DataLoader (interpreter, torch loaded)", P, "total_s"),
        ("  setup: Dataset, DataLoader, Net, train_setup", P, "setup_s"),
        ("  learn() on the DataLoader", P, "learn_s"),
        ("  predict test + hold-out", P, "predict_s"),
        ("in-process learn() on TrainBatches (same numbers as sandbox)", Q, "learn_s"),
        ("fixed overhead: trivial candidate, per candidate", T, "candidate_s"),
        ("  training phase (docker + container)", T, "train_phase_s"),
        ("  prediction phase (docker + container)", T, "predict_phase_s"),
        ("  host", T, "host_s"),
        ("bare hardened container: python3 -c pass", "bare_pass", "wall_s"),
        ("  of which docker create/start/remove", "bare_pass", "docker_s"),
        ("bare hardened container: import torch" + (" + CUDA context" if args.device == "cuda" else ""),
         "bare_torch", "wall_s"),
        ("  of which docker create/start/remove", "bare_torch", "docker_s"),
        ("bare hardened container: import torch, torch._dynamo (as train)", "bare_dynamo", "wall_s"),
        ("data path alone, 1 epoch: TrainBatches", "data_path", "trainbatches_epoch_s"),
        ("data path alone, 1 epoch: DataLoader, per-sample crop/flip", "data_path", "dataloader_epoch_s"),
    ]
    ratio_rows = [  # key, label, numerator, denominator
        ("nasloop_candidate_over_in_process", "nasloop per candidate / in-process (DataLoader)",
         (N, "candidate_s"), (P, "total_s")),
        ("nasloop_invocation_over_in_process", "nasloop whole invocation / in-process (DataLoader)",
         (N, "invocation_s"), (P, "total_s")),
        ("fixed_overhead_share", "fixed overhead (trivial candidate) / nasloop per candidate",
         (T, "candidate_s"), (N, "candidate_s")),
        ("learn_sandbox_over_in_process_dataloader", "learn(): sandbox / in-process DataLoader",
         (N, "learn_s"), (P, "learn_s")),
        ("learn_sandbox_over_in_process_trainbatches", "learn(): sandbox / in-process TrainBatches (container cost)",
         (N, "learn_s"), (Q, "learn_s")),
        ("learn_dataloader_over_trainbatches", "learn(): in-process DataLoader / TrainBatches (data path)",
         (P, "learn_s"), (Q, "learn_s")),
        ("epoch_dataloader_over_trainbatches", "data path alone: DataLoader / TrainBatches epoch",
         ("data_path", "dataloader_epoch_s"), ("data_path", "trainbatches_epoch_s")),
        ("cpu_share_container_over_host", "CPU share, same conv loop: container / this process",
         ("cpu_share", "container_share"), ("cpu_share", "host_share")),
    ]
    medians = {f"{side}.{key}": med(side, key) for _, side, key in rows}
    ratios = {key: paired(*num, *den) for key, _, num, den in ratio_rows}
    width = 66
    spread = "   [min - max]" if reps > 1 else ""
    print(f"\n{'seconds':<{width}}{'median':>8}{spread}")
    for label, side, key in rows:
        print(f"{label:<{width}}{fmt(medians[f'{side}.{key}'], reps)}")
    print(f"\n{'ratios (paired per repetition, then median)':<{width}}{'median':>8}{spread}")
    for key, label, _, _ in ratio_rows:
        print(f"{label:<{width}}{fmt(ratios[key], reps)}")
    dp_ours, dp_theirs = medians["data_path.trainbatches_epoch_s"], medians["data_path.dataloader_epoch_s"]
    print(f"\ndata path on {args.device}: TrainBatches {meta.n_train / dp_ours['median']:,.0f} images/s, DataLoader "
          f"{meta.n_train / dp_theirs['median']:,.0f} images/s (mean of {data_epochs} epoch(s) per repetition)")
    share = {k: med("cpu_share", k)["median"] for k in ("host_share", "container_share")}
    print(f"CPU seconds per wall second in the same conv loop ({threads} thread(s)): this process "
          f"{share['host_share']:.2f}, hardened container {share['container_share']:.2f}"
          + ("\n  (containers get less CPU than a host process on this busy machine: that part of the sandbox's "
             "slowdown is scheduling, not the sandbox)" if share["container_share"] < 0.85 * share["host_share"]
             else ""))
    acc = {side: (statistics.median(r["accuracy"] for r in runs[side]),
                  statistics.median(r["holdout_accuracy"] or 0.0 for r in runs[side])) for side in (N, P, Q)}
    print(f"accuracy (median), test / hold-out: nasloop {acc[N][0]:.3f} / {acc[N][1]:.3f}; in-process DataLoader "
          f"{acc[P][0]:.3f} / {acc[P][1]:.3f}; in-process TrainBatches {acc[Q][0]:.3f} / {acc[Q][1]:.3f}")
    print("  (same model, seed and prm; the DataLoader draws other shuffles and crops, and on synthetic data one "
          "epoch varies by several points from seed to seed)")
    print(f"\nbenchmark wall time {elapsed:.0f} s; load average at the end {os.getloadavg()[0]:.1f} "
          "(other work on the machine slows wall times)")

    results = {
        "benchmark": "evaluate", "candidate": str(CANDIDATE.relative_to(REPO)), "dataset": args.dataset,
        "device": args.device, "profile": args.profile, "reps": reps, "quick": args.quick,
        "n_train": meta.n_train, "n_test": meta.n_test, "n_holdout": meta.n_holdout,
        "prm": config.evaluation.hyperparameters, "batch_size": evaluation.batch_size, "threads": threads,
        "container_cpus": evaluation.cpus, "loader_workers": args.loader_workers, "data_path_epochs": data_epochs,
        "image": image.tag, "protocol": runs[N][0]["protocol"], "host_torch": torch.__version__,
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(),
                 "cuda_device": torch.cuda.get_device_name(0) if args.device == "cuda" else None},
        "wall_s": elapsed,
        "medians": medians,
        "ratios": ratios,
        "accuracy": {side: {"test": acc[side][0], "holdout": acc[side][1]} for side in (N, P, Q)},
        "runs": runs,
    }
    suffix = "" if (args.dataset, args.device, args.profile) == ("synthetic", "cpu", "smoke") else \
        f"-{args.dataset}-{args.device}" + ("" if args.profile == "smoke" else f"-{args.profile}")
    out = args.json or REPO / "bench-results" / f"evaluate{suffix}{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"results written to {out.relative_to(REPO) if out.resolve().is_relative_to(REPO) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
