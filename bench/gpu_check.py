"""The prepared GPU check: run once on a lent GPU machine (one H100/H200, no Docker, no network).

    PYTHONPATH=. python3 bench/gpu_check.py [--device cuda|cpu] [--size full|small|tiny]
                                             [--sections NAME,...] [--lemur PATH] [--budget SECONDS]
                                             [--out bench-results/gpu-check.json]

It exercises nasloop's own GPU code paths outside any container and writes every number to one JSON
file (rewritten after each section, so a killed run keeps what it measured):

1. environment: library versions, CUDA version, device name, memory, bf16 support.
2. sandbox: the candidate runners (`python -m sandbox.train` / `sandbox.predict`, as subprocesses with
   NASLOOP_SANDBOX_ROOT pointing at a temporary directory: the runners read their paths at import and
   end with `os._exit`, so they cannot run in this process) on tests/candidates/small_cnn.py with
   synthetic CIFAR-shaped data, batch 16: seconds per epoch, images/s, accuracy (scored here from the
   logits), and whether two runs with the same seed agree.
3. cpu_reference: the same candidate, data and seed once more on the CPU: both accuracies, their
   difference against a noise bound (three standard errors), the share of equal predictions.
4. lemur: a LEMUR program in the parameter budget (DPN68, else BayesianNet-3) read from `--lemur`
   (the LEMUR image-classification export; skipped with the reason when it is absent), one epoch
   through the same runners: parameters, seconds per epoch, images/s, accuracy.
5. concurrency: 1, 2, 4 and 8 `sandbox.train` processes at once on the device: seconds per epoch of
   each, total images/s and the speedup against one process.
6. generation: a tiny Llama built here by the repo's builder (`bench.tiny_model` over `llm.tiny`: a
   line-level BPE tokenizer trained on generated programs, a few pre-training steps on the CPU so that
   completions end at an end-of-turn token at varied lengths), sampled in bf16 with static batching
   and with the repo's continuous batching (`llm.batching`): tokens/s, useful share of decode rows,
   the speedup, and whether per-sample seeds give the same samples with 1 and 4 slots.
7. finetune: `llm.finetune.run` (Trainer, i.e. accelerate) on the tiny model with bf16, gradient
   checkpointing and paged AdamW 8-bit when bitsandbytes imports (else AdamW, recorded): loss
   before/after, tokens/s, peak CUDA memory.
8. memory: parameter bytes (bf16) of DeepSeek-Coder-6.7B (and the paper profile's 7B v1.5) built on
   the meta device, and KV-cache bytes per token and at 16 sequences x 2,048 tokens.

Each section is independent: an exception is recorded with its traceback and the others still run.
A section fails on an exception or a failed check (`checks`); `findings` are recorded, never fatal
(e.g. bit-exact determinism, which CUDA kernels need not give). Time guard: the whole check has
`--budget` seconds (480 by default, for "about 8 minutes"); each section has an allowance (ALLOWANCE,
estimates) and is skipped, with the reason recorded, when less than that is left; runner processes
are killed at the end of the budget (at least 30 s each); the concurrency levels stop when the next
one is not expected to fit. Each section's seconds are recorded. A skipped section is not a failure.
Exit status 0 when no section failed, 1 otherwise. Imports only torch, transformers, peft,
accelerate, numpy, safetensors, the standard library and the repo's llm/, sandbox/, contracts/ and
bench/ (no Docker, click, SQLAlchemy, ...). `--device cpu` runs everything on the CPU at smaller
sizes (`--size tiny`: the unit test's).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# Never reach for the network: every model here is built locally.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore", message=".*past_key_values.*deprecated")

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.tiny_model import FINETUNE_PROGRAMS, build_bench_model, tiny_spec  # noqa: E402
from contracts.files import atomic_write_text, read_jsonl  # noqa: E402
from contracts.jobfile import write_job  # noqa: E402

SCHEMA = "nasloop-gpu-check-v2"
SECTIONS = ("environment", "sandbox", "cpu_reference", "lemur", "concurrency", "generation", "finetune", "memory")
# Seconds a section is allowed at --size full (an estimate for one H100, not a measurement): it is
# skipped, with the reason recorded, when less than this is left of --budget. The cheap ones always run.
ALLOWANCE = {"environment": 0, "sandbox": 60, "cpu_reference": 60, "lemur": 60, "concurrency": 120,
             "generation": 120, "finetune": 60, "memory": 0}
BUDGET_SECONDS = 480
CANDIDATE = REPO / "tests" / "candidates" / "small_cnn.py"
LEMUR_EXPORT = REPO.parent / "shared" / "data" / "lemur" / "lemur-img-classification.jsonl.gz"
# In the parameter budget and runnable at 3x32x32 (as tests/test_sandbox.py's LEMUR_OK); the first found is used.
LEMUR_MODELS = ("DPN68", "BayesianNet-3")
# Modules a GPU machine without the host's extras does not have; none may be imported here.
HOST_ONLY_MODULES = ("docker", "click", "sqlalchemy", "alembic", "datasketch", "flask", "rich", "orchestrator")
# The paper profile's evaluation settings (configs/paper.toml), repeated here so that this script
# does not import the orchestrator's configuration loader.
PRM = {"lr": 0.01, "momentum": 0.9, "dropout": 0.2}
PARAM_BUDGET = 500_000
CIFAR_MEAN = [0.4914, 0.4822, 0.4465]
CIFAR_STD = [0.2470, 0.2435, 0.2616]
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj", "gate_proj"]


@dataclass(frozen=True)
class Sizes:
    """How much work each section does."""

    train_images: int
    test_images: int
    # The tiny model (llm.tiny.TinyModelSpec numbers) and its pre-training on the CPU.
    vocab_size: int
    layers: int
    hidden_size: int
    heads: int
    pretrain_steps: int
    # Static vs continuous batching.
    samples: int
    max_new_tokens: int
    slots: int
    # Per-sample seeds, 1 vs 4 slots.
    seed_samples: int
    seed_max_new_tokens: int
    finetune_steps: int
    # Training processes at once on one device.
    concurrency_levels: tuple[int, ...]


SIZES = {
    "full": Sizes(train_images=5000, test_images=1000, vocab_size=1024, layers=3, hidden_size=256, heads=4,
                  pretrain_steps=60, samples=32, max_new_tokens=512, slots=8, seed_samples=8,
                  seed_max_new_tokens=128, finetune_steps=30, concurrency_levels=(1, 2, 4, 8)),
    "small": Sizes(train_images=600, test_images=300, vocab_size=1024, layers=2, hidden_size=64, heads=2,
                   pretrain_steps=40, samples=12, max_new_tokens=160, slots=4, seed_samples=4,
                   seed_max_new_tokens=32, finetune_steps=8, concurrency_levels=(1, 2, 4)),
    "tiny": Sizes(train_images=256, test_images=128, vocab_size=512, layers=1, hidden_size=32, heads=2,
                  pretrain_steps=2, samples=4, max_new_tokens=16, slots=2, seed_samples=3,
                  seed_max_new_tokens=8, finetune_steps=2, concurrency_levels=(1, 2)),
}


class CheckFailed(AssertionError):
    """A section ran but a required check did not hold."""


class SectionSkipped(Exception):
    """A section cannot run here (its input is absent); the reason is recorded, never a failure."""


def say(message: str) -> None:
    print(message, flush=True)


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _bitsandbytes() -> tuple[bool, str | None]:
    """Whether bitsandbytes imports here (it can raise more than ImportError without its libraries)."""
    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return False, f"{type(exc).__name__}: {exc}"
    return True, None


# --- data ------------------------------------------------------------------------------------------

def synthetic_cifar(seed: int, n: int, num_classes: int = 10) -> tuple[Any, Any]:
    """CIFAR-shaped uint8 images (N, 3, 32, 32) and int64 labels: each class a blocky random colour
    pattern, each image that pattern shifted, rescaled and noised (as `nasloop data prepare synthetic`)."""
    import numpy as np

    patterns = np.random.default_rng(12345).normal(size=(num_classes, 3, 4, 4))
    prototypes = np.kron(patterns, np.ones((1, 1, 8, 8)))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=n)
    images = prototypes[labels] * rng.uniform(0.5, 1.5, size=(n, 1, 1, 1))
    for i, (dy, dx) in enumerate(rng.integers(-3, 4, size=(n, 2))):
        images[i] = np.roll(images[i], (int(dy), int(dx)), axis=(1, 2))
    images += rng.normal(scale=2.0, size=images.shape)
    return np.clip(128 + 40 * images, 0, 255).astype(np.uint8), labels.astype(np.int64)


# --- the run: shared state, sections, the JSON file -------------------------------------------------

class Check:
    def __init__(self, device: str, sizes: Sizes, size_name: str, workdir: Path, lemur: Path,
                 deadline: float) -> None:
        self.device = device
        self.sizes = sizes
        self.size_name = size_name
        self.workdir = workdir
        self.lemur = lemur
        self.deadline = deadline  # time.perf_counter() at which the whole check's budget is spent
        self.small_cnn_run: dict[str, Any] | None = None  # the sandbox section's first run, logits included
        self._tiny: Path | None = None
        self._tiny_report: dict[str, Any] | None = None
        self._tiny_error: BaseException | None = None

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    def remaining(self) -> float:
        """Seconds left of the whole check's budget (negative once it is spent)."""
        return self.deadline - time.perf_counter()

    def timeout(self, limit: float) -> float:
        """A runner's time limit: `limit`, cut to what is left of the budget (at least 30 s)."""
        return max(30.0, min(limit, self.remaining()))

    def tiny_model(self) -> tuple[Path, dict[str, Any]]:
        """The tiny Llama (built once, on the CPU, by llm.tiny.build_tiny_model) and its report."""
        if self._tiny_error is not None:
            raise RuntimeError(f"the tiny model could not be built: {self._tiny_error!r}")
        if self._tiny is None:
            try:
                self._tiny, self._tiny_report = self._build_tiny()
            except BaseException as exc:
                self._tiny_error = exc
                raise
        assert self._tiny_report is not None
        return self._tiny, self._tiny_report

    def _build_tiny(self) -> tuple[Path, dict[str, Any]]:
        s = self.sizes
        out = self.workdir / "tiny-model"
        spec = tiny_spec(s.vocab_size, s.layers, s.hidden_size, s.heads, s.pretrain_steps)
        return out, build_bench_model(out, spec, PARAM_BUDGET, say)


def section_environment(check: Check) -> dict[str, Any]:
    import torch

    result: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "versions": {name: _version(name) for name in
                     ("torch", "transformers", "peft", "accelerate", "tokenizers", "safetensors", "numpy",
                      "bitsandbytes")},
        "torch_cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(),
        "device_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
    }
    result["bitsandbytes_imports"], result["bitsandbytes_error"] = _bitsandbytes()
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        free, total = torch.cuda.mem_get_info(0)
        result.update({
            "device_name": props.name,
            "compute_capability": f"{props.major}.{props.minor}",
            "multiprocessors": props.multi_processor_count,
            "memory_total_bytes": int(total),
            "memory_total_gib": round(total / 2**30, 2),
            "memory_free_bytes": int(free),
            "bf16_supported": bool(torch.cuda.is_bf16_supported()),
        })
    else:
        result.update({"device_name": platform.processor() or platform.machine(), "bf16_supported": None})
    say(f"  torch {result['versions']['torch']} (CUDA {result['torch_cuda_version']}), transformers "
        f"{result['versions']['transformers']}, peft {result['versions']['peft']}, accelerate "
        f"{result['versions']['accelerate']}, bitsandbytes {result['versions']['bitsandbytes'] or 'absent'}")
    say(f"  device: {result['device_name']}"
        + (f", {result['memory_total_gib']} GiB, bf16 {result['bf16_supported']}" if result["cuda_available"] else ""))
    result["checks"] = {"cuda_available": bool(result["cuda_available"])} if check.cuda else {}
    if check.cuda:
        result["checks"]["bf16_supported"] = bool(result.get("bf16_supported"))
    return result


# --- 2. the sandbox runners: the small CNN, its CPU reference, a LEMUR model, concurrent processes ------

def _start_runner(module: str, root: Path) -> subprocess.Popen[bytes]:
    """`python -m sandbox.<phase>` with the sandbox's paths under `root`, its output in `root/<module>.log`."""
    from contracts.sandbox import JOB_FILE

    env = {**os.environ, "NASLOOP_SANDBOX_ROOT": str(root),
           "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    with (root / f"{module}.log").open("wb") as log:
        return subprocess.Popen([sys.executable, "-m", module, str(root / "job" / JOB_FILE)], cwd=REPO, env=env,
                                stdout=log, stderr=subprocess.STDOUT)


def _finish_runner(process: subprocess.Popen[bytes], module: str, root: Path, timeout: float) -> None:
    """Wait for a runner; RuntimeError naming the exit status and the runner's error on a failure."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise RuntimeError(f"{module} did not finish within {timeout:.0f} s (killed)") from None
    if process.returncode != 0:
        status = root / "out" / "status.json"
        error = status.read_text()[-2000:] if status.is_file() else ""
        tail = (root / f"{module}.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{module} exited {process.returncode}: {error}\n{tail}")


def _run_runner(module: str, root: Path, timeout: float) -> float:
    """One runner from start to end; its wall seconds."""
    started = time.perf_counter()
    _finish_runner(_start_runner(module, root), module, root, timeout)
    return time.perf_counter() - started


def _threads(device: str) -> int:
    """Torch threads of one runner: the paper profile's cpus = 4 per container on CUDA, every CPU on the CPU."""
    return 4 if device == "cuda" else max(1, os.cpu_count() or 1)


def _cifar(check: Check) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    """The training and test splits every sandbox section uses (the same for the same size)."""
    return synthetic_cifar(1, check.sizes.train_images), synthetic_cifar(2, check.sizes.test_images)


def _prepare_train(root: Path, source: bytes, train: tuple[Any, Any], device: str, threads: int) -> None:
    """A fresh `root` holding the training phase's job (one epoch at batch 16, seed 0), candidate and data."""
    import numpy as np

    from contracts.sandbox import CANDIDATE_FILE, JOB_FILE, TRAIN_IMAGES, TRAIN_LABELS, TrainJob

    if root.exists():
        shutil.rmtree(root)
    for d in ("job", "data", "out"):
        (root / d).mkdir(parents=True)
    (root / "job" / CANDIDATE_FILE).write_bytes(source)
    np.save(root / "data" / TRAIN_IMAGES, train[0])
    np.save(root / "data" / TRAIN_LABELS, train[1])
    write_job(TrainJob(in_shape=[1, 3, 32, 32], num_classes=10, prm=PRM, param_budget=PARAM_BUDGET, batch_size=16,
                       seed=0, crop_padding=4, horizontal_flip=True, mean=CIFAR_MEAN, std=CIFAR_STD,
                       device=device, threads=threads), root / "job" / JOB_FILE)


def _sandbox_once(check: Check, root: Path, source: bytes, train: tuple[Any, Any], test: tuple[Any, Any],
                  device: str) -> dict[str, Any]:
    """Train `source` one epoch and predict the test images on `device`, each phase a fresh runner
    process as each container is; the accuracy scored here from the logits."""
    import numpy as np

    from contracts.sandbox import (JOB_FILE, LOGITS_FILE, PREDICT_IMAGES, TRAIN_IMAGES, TRAIN_LABELS,
                                   TRAIN_REPORT_FILE, WEIGHTS_FILE, PredictJob)

    threads = _threads(device)
    _prepare_train(root, source, train, device, threads)
    job_dir, data_dir, out_dir = root / "job", root / "data", root / "out"
    train_wall = _run_runner("sandbox.train", root, check.timeout(600))
    report = json.loads((out_dir / TRAIN_REPORT_FILE).read_text())
    weights = out_dir / WEIGHTS_FILE
    weights_sha = hashlib.sha256(weights.read_bytes()).hexdigest()

    # Prediction: a fresh job directory holding the trained weights, the test images unlabeled.
    shutil.move(str(weights), job_dir / WEIGHTS_FILE)
    for name in (TRAIN_IMAGES, TRAIN_LABELS):
        (data_dir / name).unlink()
    np.save(data_dir / PREDICT_IMAGES, test[0])
    write_job(PredictJob(in_shape=[1, 3, 32, 32], num_classes=10, prm=PRM, seed=0, mean=CIFAR_MEAN, std=CIFAR_STD,
                         device=device, threads=threads, batch_size=1000), job_dir / JOB_FILE)
    predict_wall = _run_runner("sandbox.predict", root, check.timeout(300))
    logits = np.load(out_dir / LOGITS_FILE, allow_pickle=False)
    if logits.shape != (len(test[1]), 10):
        raise CheckFailed(f"logits of shape {logits.shape}, expected {(len(test[1]), 10)}")
    accuracy = float((logits.argmax(1) == test[1]).mean())
    learn = float(report["learn_seconds"])
    return {"device": device, "threads": threads, "accuracy": accuracy, "params": int(report["params"]),
            "learn_seconds": round(learn, 3),
            "images_per_second": round(len(train[1]) / learn, 1) if learn > 0 else None,
            "train_wall_seconds": round(train_wall, 2), "predict_wall_seconds": round(predict_wall, 2),
            "weights_sha256": weights_sha, "logits": logits}


def _without_logits(run: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in run.items() if key != "logits"}


def _accuracy_is_a_number(accuracy: float) -> bool:
    return isinstance(accuracy, float) and math.isfinite(accuracy) and 0.0 <= accuracy <= 1.0


def section_sandbox(check: Check) -> dict[str, Any]:
    import numpy as np

    s = check.sizes
    train, test = _cifar(check)
    source = CANDIDATE.read_bytes()
    runs = []
    for attempt in (1, 2):
        say(f"  run {attempt}/2: sandbox.train + sandbox.predict on {check.device}, {s.train_images} images, batch 16")
        run = _sandbox_once(check, check.workdir / f"sandbox-{attempt}", source, train, test, check.device)
        say(f"    epoch {run['learn_seconds']} s ({run['images_per_second']} images/s), accuracy {run['accuracy']:.4f}, "
            f"wall: train {run['train_wall_seconds']} s, predict {run['predict_wall_seconds']} s")
        runs.append(run)
    first, second = runs
    check.small_cnn_run = first
    max_logit_diff = float(np.abs(first["logits"] - second["logits"]).max())
    accuracy = first["accuracy"]
    mean_learn = (first["learn_seconds"] + second["learn_seconds"]) / 2
    return {
        "candidate": str(CANDIDATE.relative_to(REPO)),
        "train_images": s.train_images, "test_images": s.test_images, "batch_size": 16, "epochs": 1,
        # The mean of the two runs (each a fresh process, as each container is).
        "seconds_per_epoch": round(mean_learn, 3),
        "images_per_second": round(s.train_images / mean_learn, 1) if mean_learn > 0 else None,
        "accuracy": accuracy,
        "runs": [_without_logits(run) for run in runs],
        "findings": {
            "same_accuracy_same_seed": first["accuracy"] == second["accuracy"],
            "identical_weights_same_seed": first["weights_sha256"] == second["weights_sha256"],
            "max_logit_difference": max_logit_diff,
            "above_chance": accuracy > 0.2,
        },
        "checks": {"accuracy_is_a_number": _accuracy_is_a_number(accuracy),
                   "params_within_budget": 0 < first["params"] <= PARAM_BUDGET},
    }


def section_cpu_reference(check: Check) -> dict[str, Any]:
    """The small CNN once more on the CPU (same seed, data and batch): the device path's accuracy
    beside the CPU path's. Equal within noise is a finding, not a check: CUDA's kernels differ from
    the CPU's in rounding, and one epoch amplifies that into a different trajectory."""
    import numpy as np

    s = check.sizes
    train, test = _cifar(check)
    source = CANDIDATE.read_bytes()
    device_run = check.small_cnn_run
    if device_run is None:
        say(f"  no run of the sandbox section to compare with: training once on {check.device} first")
        device_run = _sandbox_once(check, check.workdir / "reference-device", source, train, test, check.device)
    say(f"  sandbox.train + sandbox.predict on cpu ({_threads('cpu')} threads), {s.train_images} images, batch 16")
    cpu_run = _sandbox_once(check, check.workdir / "reference-cpu", source, train, test, "cpu")
    difference = device_run["accuracy"] - cpu_run["accuracy"]
    p = cpu_run["accuracy"]
    # Three standard errors of the difference of two accuracies measured on the same number of test images.
    noise = 3 * math.sqrt(2 * p * (1 - p) / s.test_images)
    agreement = float((device_run["logits"].argmax(1) == cpu_run["logits"].argmax(1)).mean())
    say(f"    accuracy: device path ({check.device}) {device_run['accuracy']:.4f}, CPU path {cpu_run['accuracy']:.4f}, "
        f"difference {difference:+.4f} (noise bound {noise:.4f}); same prediction on {agreement:.1%} of the test "
        f"images; epoch: device path {device_run['learn_seconds']} s, CPU path {cpu_run['learn_seconds']} s")
    result: dict[str, Any] = {
        "device": check.device, "train_images": s.train_images, "test_images": s.test_images, "batch_size": 16,
        "device_accuracy": device_run["accuracy"], "cpu_accuracy": cpu_run["accuracy"],
        "accuracy_difference": round(difference, 4), "noise_bound": round(noise, 4),
        "prediction_agreement": round(agreement, 4),
        "device_seconds_per_epoch": device_run["learn_seconds"], "cpu_seconds_per_epoch": cpu_run["learn_seconds"],
        "cpu_run": _without_logits(cpu_run),
        "findings": {"within_noise": abs(difference) <= noise,
                     "max_logit_difference": float(np.abs(device_run["logits"] - cpu_run["logits"]).max())},
        "checks": {"cpu_accuracy_is_a_number": _accuracy_is_a_number(cpu_run["accuracy"])},
    }
    if not check.cuda:
        result["note"] = "--device cpu: the device path is the CPU path, so this compares it with itself"
    return result


def lemur_program(path: Path) -> tuple[str, str]:
    """(name, code) of the first of LEMUR_MODELS in a LEMUR export (JSON Lines, gzip or plain)."""
    found: dict[str, str] = {}
    for _, item in read_jsonl(path):
        if isinstance(item, dict) and item.get("name") in LEMUR_MODELS and isinstance(item.get("code"), str):
            found[item["name"]] = item["code"]
    for name in LEMUR_MODELS:
        if name in found:
            return name, found[name]
    raise CheckFailed(f"none of {', '.join(LEMUR_MODELS)} is in {path.name}")


def section_lemur(check: Check) -> dict[str, Any]:
    """A LEMUR program (in the parameter budget, runnable at 3x32x32) through the same runners."""
    if not check.lemur.is_file():
        raise SectionSkipped(f"no LEMUR export at --lemur {check.lemur} (pass the LEMUR image-classification "
                             "JSON Lines file, e.g. lemur-img-classification.jsonl.gz)")
    s = check.sizes
    name, code = lemur_program(check.lemur)
    train, test = _cifar(check)
    say(f"  {name} from {check.lemur.name}: sandbox.train + sandbox.predict on {check.device}, "
        f"{s.train_images} images, batch 16")
    run = _without_logits(_sandbox_once(check, check.workdir / "lemur", code.encode(), train, test, check.device))
    say(f"    {run['params']:,} parameters; epoch {run['learn_seconds']} s ({run['images_per_second']} images/s), "
        f"accuracy {run['accuracy']:.4f}")
    return {
        "file": check.lemur.name, "model": name, "code_sha256": hashlib.sha256(code.encode()).hexdigest(),
        "train_images": s.train_images, "test_images": s.test_images, "batch_size": 16, "epochs": 1,
        "params": run["params"], "seconds_per_epoch": run["learn_seconds"],
        "images_per_second": run["images_per_second"], "accuracy": run["accuracy"], "run": run,
        "findings": {"above_chance": run["accuracy"] > 0.2},
        "checks": {"accuracy_is_a_number": _accuracy_is_a_number(run["accuracy"]),
                   "params_within_budget": 0 < run["params"] <= PARAM_BUDGET},
    }


def _concurrent_epochs(check: Check, template: Path, level_dir: Path, processes: int) -> tuple[list[float], float]:
    """`processes` training runners at once, each with its own output directory and the template's
    job and data (linked); (each one's epoch seconds, wall seconds from the first start to the last end)."""
    from contracts.sandbox import TRAIN_REPORT_FILE

    shutil.rmtree(level_dir, ignore_errors=True)
    roots = []
    for i in range(processes):
        root = level_dir / f"process-{i}"
        (root / "out").mkdir(parents=True)
        for shared in ("job", "data"):
            (root / shared).symlink_to(template / shared, target_is_directory=True)
        roots.append(root)
    started = time.perf_counter()
    running = [_start_runner("sandbox.train", root) for root in roots]
    try:
        for process, root in zip(running, roots):
            _finish_runner(process, "sandbox.train", root, check.timeout(600))
    finally:
        for process in running:
            if process.poll() is None:
                process.kill()
                process.wait()
    wall = time.perf_counter() - started
    return [float(json.loads((root / "out" / TRAIN_REPORT_FILE).read_text())["learn_seconds"]) for root in roots], wall


def section_concurrency(check: Check) -> dict[str, Any]:
    """1, 2, 4, 8 `sandbox.train` processes at once on one device (the small CNN, one epoch each):
    seconds per epoch of each, total images/s (processes x images over the slowest epoch, the epochs
    running side by side), speedup against one process. A level that the time budget cannot take
    (estimated from the previous level's wall time) is skipped with the reason."""
    s = check.sizes
    train, _ = _cifar(check)
    source = CANDIDATE.read_bytes()
    cpus = os.cpu_count() or 1
    levels: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    previous: tuple[int, float] | None = None
    for n in s.concurrency_levels:
        if previous is not None:
            estimate = previous[1] * n / previous[0]
            if check.remaining() < estimate:
                skipped[str(n)] = (f"time budget: {check.remaining():.0f} s left, {n} processes estimated at "
                                   f"{estimate:.0f} s from {previous[0]} process(es) taking {previous[1]:.0f} s")
                say(f"  {n} processes: skipped ({skipped[str(n)]})")
                continue
        threads = max(1, min(_threads(check.device), cpus // n))
        template = check.workdir / "concurrency" / "template"
        _prepare_train(template, source, train, check.device, threads)
        epochs, wall = _concurrent_epochs(check, template, check.workdir / "concurrency" / f"level-{n}", n)
        total = n * s.train_images / max(epochs)
        one = levels["1"]["images_per_second_total"] if "1" in levels else (total if n == 1 else None)
        levels[str(n)] = {
            "processes": n, "threads_per_process": threads, "seconds_per_epoch": [round(e, 3) for e in epochs],
            "seconds_per_epoch_mean": round(sum(epochs) / n, 3), "seconds_per_epoch_max": round(max(epochs), 3),
            "images_per_second_total": round(total, 1), "speedup_vs_1": round(total / one, 3) if one else None,
            "wall_seconds": round(wall, 2),
        }
        previous = (n, wall)
        say(f"  {n} process(es), {threads} thread(s) each: epoch {levels[str(n)]['seconds_per_epoch_mean']} s mean, "
            f"{levels[str(n)]['seconds_per_epoch_max']} s slowest; {levels[str(n)]['images_per_second_total']} "
            f"images/s in all (x{levels[str(n)]['speedup_vs_1']} against 1); wall {wall:.1f} s")
    return {
        "candidate": str(CANDIDATE.relative_to(REPO)), "train_images_per_process": s.train_images, "batch_size": 16,
        "levels": levels, "skipped_levels": skipped,
        "checks": {"one_process_level_ran": "1" in levels},
    }


# --- 3. generation -----------------------------------------------------------------------------------

def _release() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _draw(model: Path, device: str, batching: str, slots: int, n: int, max_new_tokens: int, seed: int
          ) -> tuple[list[Any], float, dict[str, Any]]:
    from contracts.llm import Decoding
    from llm.prompt import generation_task, prompt_messages
    from llm.sampling import SampleRequest, TransformersBackend

    decoding = Decoding(temperature=0.8, top_k=50, top_p=0.9, do_sample=True, max_new_tokens=max_new_tokens,
                        seed=seed)
    backend = TransformersBackend(str(model), decoding, batch_size=slots, device=device, batching=batching)
    request = SampleRequest(prompt_messages(generation_task(PARAM_BUDGET)), n, seed)
    started = time.perf_counter()
    samples = [sample for batch in backend.generate([request]) for sample in batch]
    seconds = time.perf_counter() - started
    info = {"dtype": str(backend.model.dtype).removeprefix("torch."), "computed": backend.counters.computed,
            "useful": backend.counters.useful}
    backend.close()
    del backend
    _release()
    return sorted(samples, key=lambda sample: sample.index), seconds, info


def section_generation(check: Check) -> dict[str, Any]:
    s = check.sizes
    model, tiny = check.tiny_model()
    # Warm up both paths (CUDA kernels, allocator) before anything is timed.
    for batching in ("static", "continuous"):
        _draw(model, check.device, batching, 2, 2, 8, 99)
    modes: dict[str, Any] = {}
    for batching in ("static", "continuous"):
        samples, seconds, info = _draw(model, check.device, batching, s.slots, s.samples, s.max_new_tokens, 0)
        tokens = sum(sample.completion_tokens for sample in samples)
        lengths = [sample.completion_tokens for sample in samples]
        modes[batching] = {
            "samples": len(samples), "slots": s.slots, "dtype": info["dtype"], "seconds": round(seconds, 3),
            "completion_tokens": tokens, "tokens_per_second": round(tokens / seconds, 1) if seconds > 0 else None,
            "decode_rows": info["computed"], "useful_decode_rows": info["useful"],
            "useful_share": round(info["useful"] / info["computed"], 4) if info["computed"] else None,
            "ms_per_decode_row": round(1000 * seconds / info["computed"], 4) if info["computed"] else None,
            "stopped": sum(sample.finish_reason == "stop" for sample in samples),
            "length_min": min(lengths), "length_mean": round(sum(lengths) / len(lengths), 1), "length_max": max(lengths),
        }
        m = modes[batching]
        say(f"  {batching:>10}: {m['samples']} samples in {m['seconds']} s, {m['tokens_per_second']} tokens/s, "
            f"useful share {m['useful_share']}, lengths {m['length_min']}-{m['length_max']} "
            f"(mean {m['length_mean']}), {m['stopped']} stopped on end-of-turn")
    static, continuous = modes["static"], modes["continuous"]
    speedup = (continuous["tokens_per_second"] / static["tokens_per_second"]
               if continuous["tokens_per_second"] and static["tokens_per_second"] else None)
    say(f"  continuous speedup (tokens/s): {speedup:.3f}; ms per decode row: static {static['ms_per_decode_row']}, "
        f"continuous {continuous['ms_per_decode_row']}" if speedup else "  continuous speedup: n/a")

    texts: dict[int, list[str]] = {}
    for slots in (1, 4):
        samples, _, _ = _draw(model, check.device, "continuous", slots, s.seed_samples, s.seed_max_new_tokens, 7)
        texts[slots] = [sample.text for sample in samples]
    same = sum(a == b for a, b in zip(texts[1], texts[4]))
    say(f"  per-sample seeds: {same}/{s.seed_samples} samples identical with 1 and 4 slots")
    return {
        "model": tiny, "decoding": {"temperature": 0.8, "top_k": 50, "top_p": 0.9, "max_new_tokens": s.max_new_tokens},
        "static": static, "continuous": continuous,
        "continuous_speedup": _round(speedup),
        "continuous_wall_ratio": _round(static["seconds"] / continuous["seconds"]) if continuous["seconds"] else None,
        # The part of the speedup that scheduling alone explains (no decode row spent on a finished
        # sample); the rest is the two paths' different cost per decode row (model.generate's
        # per-step overhead against llm.batching's), which dominates on a model this small.
        "useful_share_gain": _round(continuous["useful_share"] / static["useful_share"])
        if continuous["useful_share"] and static["useful_share"] else None,
        "seed_check": {"samples": s.seed_samples, "max_new_tokens": s.seed_max_new_tokens,
                       "identical_1_vs_4_slots": same},
        "findings": {"identical_samples_1_vs_4_slots": same == s.seed_samples,
                     "lengths_vary": static["length_min"] != static["length_max"]
                     or continuous["length_min"] != continuous["length_max"]},
        "checks": {"tokens_per_second_positive": bool(static["tokens_per_second"]) and bool(continuous["tokens_per_second"]),
                   "continuous_no_wasted_rows": continuous["useful_share"] == 1.0,
                   "bf16_on_cuda": (not check.cuda) or (static["dtype"] == continuous["dtype"] == "bfloat16")},
    }


# --- 4. finetune -------------------------------------------------------------------------------------

def section_finetune(check: Check) -> dict[str, Any]:
    import torch

    from contracts.llm import FinetuneJob, LoraHyperparameters
    from llm.finetune import run
    from llm.prompt import chat_example, corpus_tasks

    s = check.sizes
    model, _ = check.tiny_model()
    corpus = check.workdir / "finetune-corpus.jsonl"
    corpus.write_text("".join(json.dumps({"messages": chat_example(task, code)}) + "\n"
                              for code in FINETUNE_PROGRAMS for task in corpus_tasks(PARAM_BUDGET)))
    has_bnb, bnb_error = _bitsandbytes()
    optimizer = "paged_adamw_8bit" if has_bnb else "adamw_torch"
    say(f"  optimizer {optimizer}" + ("" if has_bnb else f" (bitsandbytes does not import: {bnb_error})")
        + f", bf16, gradient checkpointing, {s.finetune_steps} steps")

    def finetune(name: str, output: str) -> tuple[Any, float]:
        hp = LoraHyperparameters(
            lora_r=8, lora_alpha=16, lora_dropout=0.05, target_modules=LORA_TARGETS, epochs=100, lr=2e-3,
            per_device_batch_size=4, grad_accum_steps=1, scheduler="constant", warmup_steps=0, weight_decay=0.0,
            max_grad_norm=1.0, optimizer=name, precision="bf16", max_seq_length=2048, over_length="skip",
            gradient_checkpointing=True)
        job = FinetuneJob(model=str(model), corpus=str(corpus), output_dir=str(check.workdir / output),
                          hyperparameters=hp, seed=0, device=check.device, measure_loss=True,
                          max_steps=s.finetune_steps)
        _release()
        if check.cuda:
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        meta = run(job)
        if meta is None:
            raise RuntimeError("llm.finetune.run returned no metadata (not the main process?)")
        return meta, time.perf_counter() - started

    optimizer_error = None
    try:
        meta, seconds = finetune(optimizer, "adapter")
    except Exception as exc:  # noqa: BLE001  bitsandbytes imports but its optimizer fails: say so, measure the rest
        if optimizer == "adamw_torch":
            raise
        optimizer_error = f"{type(exc).__name__}: {exc}"[-2000:]
        say(f"  {optimizer} failed ({optimizer_error.splitlines()[0]}); running again with adamw_torch")
        meta, seconds = finetune("adamw_torch", "adapter-adamw")
    peak = int(torch.cuda.max_memory_allocated()) if check.cuda else None
    curve = [entry["loss"] for entry in meta.loss_curve]
    result = {
        "steps": meta.steps, "examples": meta.corpus.trained_examples, "requested_optimizer": optimizer,
        "bitsandbytes_imports": has_bnb, "bitsandbytes_error": bnb_error, "optimizer_error": optimizer_error,
        "effective_precision": meta.effective_precision, "effective_optimizer": meta.effective_optimizer,
        "fallbacks": meta.fallbacks, "kernels": meta.kernels,
        "gradient_checkpointing": meta.hyperparameters.gradient_checkpointing,
        "lora_r": meta.hyperparameters.lora_r,
        "trainable_parameters": meta.trainable_parameters, "lora_targets": meta.lora_targets,
        "mean_loss_before": _round(meta.mean_loss_before, 5), "mean_loss_after": _round(meta.mean_loss_after, 5),
        "first_step_loss": curve[0] if curve else None, "last_step_loss": curve[-1] if curve else None,
        "train_seconds": meta.train_seconds, "train_tokens": meta.train_tokens,
        "tokens_per_second": meta.tokens_per_second, "wall_seconds": round(seconds, 2),
        "peak_cuda_memory_bytes": peak, "peak_cuda_memory_mib": round(peak / 2**20, 1) if peak is not None else None,
        "process_max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "device": meta.device,
    }
    say(f"  {meta.steps} steps in {meta.train_seconds} s, {meta.tokens_per_second} tokens/s, mean loss "
        f"{result['mean_loss_before']} -> {result['mean_loss_after']} ({meta.effective_precision}, "
        f"{meta.effective_optimizer})" + (f", peak CUDA memory {result['peak_cuda_memory_mib']} MiB" if peak else ""))
    result["checks"] = {
        "loss_decreased": meta.mean_loss_before is not None and meta.mean_loss_after is not None
        and meta.mean_loss_after < meta.mean_loss_before,
        "all_steps_ran": meta.steps == s.finetune_steps,
        "tokens_per_second_positive": bool(meta.tokens_per_second),
        "requested_optimizer_ran": optimizer_error is None,
    }
    if check.cuda:
        result["checks"]["bf16_on_cuda"] = meta.effective_precision == "bf16"
        result["checks"]["peak_memory_recorded"] = bool(peak)
    return result


# --- 5. memory ----------------------------------------------------------------------------------------

# DeepSeek-Coder-6.7B (the usual 7B-class reference) and the paper profile's model
# deepseek-ai/deepseek-coder-7b-instruct-v1.5 (Llama architecture, no grouped-query attention).
MODEL_CONFIGS = {
    "deepseek-coder-6.7b": {"vocab_size": 32256, "hidden_size": 4096, "intermediate_size": 11008,
                            "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
                            "max_position_embeddings": 16384, "rope_theta": 100000.0,
                            "tie_word_embeddings": False},
    "deepseek-coder-7b-instruct-v1.5": {"vocab_size": 102400, "hidden_size": 4096, "intermediate_size": 11008,
                                        "num_hidden_layers": 30, "num_attention_heads": 32, "num_key_value_heads": 32,
                                        "max_position_embeddings": 4096, "rope_theta": 10000.0,
                                        "tie_word_embeddings": False},
}
BATCH, TOKENS = 16, 2048


def section_memory(check: Check) -> dict[str, Any]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from llm.models import kv_bytes_per_token

    device_total = torch.cuda.mem_get_info(0)[1] if check.cuda and torch.cuda.is_available() else None
    models: dict[str, Any] = {}
    checks: dict[str, bool] = {}
    for name, values in MODEL_CONFIGS.items():
        config = LlamaConfig(**values)
        with torch.device("meta"):
            model = LlamaForCausalLM(config).to(torch.bfloat16)
        params = sum(p.numel() for p in model.parameters())
        head_dim = config.hidden_size // config.num_attention_heads
        per_token = config.num_hidden_layers * 2 * config.num_key_value_heads * head_dim * 2  # K and V, bf16
        repo_per_token = kv_bytes_per_token(model)
        weights = params * 2
        kv = per_token * BATCH * TOKENS
        entry: dict[str, Any] = {
            "config": values, "parameters": params, "param_bytes_bf16": weights,
            "param_gib_bf16": round(weights / 2**30, 2),
            "kv_bytes_per_token": per_token, "kv_bytes_per_token_llm_models": repo_per_token,
            "kv_cache_bytes_batch16_2048": kv, "kv_cache_gib_batch16_2048": round(kv / 2**30, 2),
            "weights_plus_kv_gib": round((weights + kv) / 2**30, 2),
        }
        # As llm.models.auto_batch_size: free memory after the weights, x 0.85, over the KV cache of one
        # sequence of 1,024 prompt + 2,048 new tokens with a quarter more for activations.
        per_sequence = per_token * (1024 + TOKENS) * 1.25
        fits = {f"{gib}GiB": max(0, int((gib * 2**30 - weights) * 0.85 // per_sequence)) for gib in (24, 80, 141)}
        if device_total is not None:
            fits["this_device"] = max(0, int((device_total - weights) * 0.85 // per_sequence))
            entry["fits_batch16_2048_on_this_device"] = weights + kv < device_total
        entry["auto_batch_size_estimate"] = fits
        models[name] = entry
        checks[f"{name}_kv_formula_matches_llm_models"] = per_token == repo_per_token
        say(f"  {name}: {params / 1e9:.2f} B parameters, {entry['param_gib_bf16']} GiB in bf16; KV cache "
            f"{per_token / 2**10:.0f} KiB per token, {entry['kv_cache_gib_batch16_2048']} GiB at {BATCH} x {TOKENS}")
        del model
    return {"batch": BATCH, "tokens": TOKENS, "device_memory_total_bytes": device_total, "models": models,
            "checks": checks}


RUNNERS: dict[str, Callable[[Check], dict[str, Any]]] = {
    "environment": section_environment, "sandbox": section_sandbox, "cpu_reference": section_cpu_reference,
    "lemur": section_lemur, "concurrency": section_concurrency, "generation": section_generation,
    "finetune": section_finetune, "memory": section_memory,
}


def _git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def run_section(name: str, check: Check) -> dict[str, Any]:
    """One section's entry: its results and status ("ok", "failed" or "skipped" with the reason)."""
    allowance = ALLOWANCE[name]
    if allowance and check.remaining() < allowance:  # allowance 0: cheap, always runs
        return {"status": "skipped", "reason": f"time budget: {max(0.0, check.remaining()):.0f} s left, "
                                              f"this section is allowed {allowance} s"}
    try:
        entry = {"status": "ok", **RUNNERS[name](check)}
    except SectionSkipped as skip:
        return {"status": "skipped", "reason": str(skip)}
    except Exception as exc:  # noqa: BLE001  a section's failure is recorded, the others still run
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[-4000:],
                "traceback": traceback.format_exc()[-6000:]}
    failed = [key for key, passed in entry.get("checks", {}).items() if not passed]
    if failed:
        entry["status"] = "failed"
        entry["error"] = f"check(s) failed: {', '.join(failed)}"
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="nasloop's GPU check (see the module docstring)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--size", choices=tuple(SIZES), default=None,
                        help="work per section [default: full on cuda, small on cpu]")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--lemur", type=Path, default=LEMUR_EXPORT,
                        help="LEMUR export for the lemur section [../shared/data/lemur/"
                             "lemur-img-classification.jsonl.gz next to the repository; absent: skipped]")
    parser.add_argument("--budget", type=float, default=BUDGET_SECONDS,
                        help=f"seconds for the whole check: a section is skipped when less than its "
                             f"allowance is left [{BUDGET_SECONDS}]")
    parser.add_argument("--out", type=Path, default=Path("bench-results/gpu-check.json"))
    parser.add_argument("--keep", type=Path, default=None, help="keep the scratch files in this directory")
    args = parser.parse_args(argv)
    sections = [name.strip() for name in args.sections.split(",") if name.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}")
    size_name = args.size or ("full" if args.device == "cuda" else "small")
    sizes = SIZES[size_name]

    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="nasloop-gpu-check-")) if args.keep is None else args.keep
    scratch.mkdir(parents=True, exist_ok=True)
    check = Check(args.device, sizes, size_name, scratch, args.lemur, started + args.budget)
    results: dict[str, Any] = {
        "schema": SCHEMA, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": args.device, "size": size_name, "sizes": asdict(sizes), "git_commit": _git_commit(),
        "argv": sys.argv[1:] if argv is None else argv, "budget_seconds": args.budget, "allowance_seconds": ALLOWANCE,
        "sections": {}, "section_seconds": {}, "failed_sections": [], "skipped_sections": {},
        "ok": None, "total_seconds": None, "host_only_modules_imported": None,
    }

    def save() -> None:
        results["total_seconds"] = round(time.perf_counter() - started, 2)
        atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")

    say(f"nasloop GPU check: device {args.device}, size {size_name}, sections {', '.join(sections)}, budget "
        f"{args.budget:.0f} s -> {args.out}")
    try:
        for name in sections:
            say(f"== {name}")
            section_started = time.perf_counter()
            entry = run_section(name, check)
            entry["seconds"] = round(time.perf_counter() - section_started, 2)
            for finding, value in entry.get("findings", {}).items():
                if value is False:
                    say(f"  note: {finding} is false")
            detail = entry.get("error") or entry.get("reason")
            say(f"  {name}: {entry['status'].upper()} ({entry['seconds']} s)"
                + (f": {detail.splitlines()[0]}" if detail else ""))
            results["sections"][name] = entry
            results["section_seconds"][name] = entry["seconds"]
            if entry["status"] == "failed":
                results["failed_sections"].append(name)
            elif entry["status"] == "skipped":
                results["skipped_sections"][name] = entry["reason"]
            save()
    finally:
        results["host_only_modules_imported"] = sorted(
            m for m in HOST_ONLY_MODULES if m in sys.modules)
        results["ok"] = not results["failed_sections"]
        save()
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)
    skipped = f" ({len(results['skipped_sections'])} skipped: {', '.join(results['skipped_sections'])})" \
        if results["skipped_sections"] else ""
    say(f"== {'all sections passed' + skipped if results['ok'] else 'FAILED: ' + ', '.join(results['failed_sections'])}"
        f" in {results['total_seconds']} s; results in {args.out}")
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
