"""Evaluating many programs: a thread pool over one Evaluator (or Checker), where they run (this
machine, or a Ray cluster: `open_cluster`, `fit_to_machine`), and the library API that `nasloop
evaluate` and the benchmark call (`evaluate_files`, `check_files`)."""

from __future__ import annotations

import dataclasses
import hashlib
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from orchestrator.config import ExperimentConfig
from orchestrator.containers.client import InfraError
from orchestrator.containers.gpu import preflight
from orchestrator.containers.hardened import piped_core_notice
from orchestrator.containers.images import Docker, connect
from orchestrator.containers.labels import sweep_orphans
from orchestrator.data import PreparedDataset, ensure_prepared
from orchestrator.evaluation.evaluator import Checker, Evaluator
from orchestrator.evaluation.protocol import CheckProtocol, make_check_protocol
from orchestrator.evaluation.result import EvaluationResult, Submission
from orchestrator.evaluation.scoring import scoring_set
from orchestrator.executors.base import Executor
from orchestrator.untrusted import printable

if TYPE_CHECKING:
    from orchestrator.executors.ray_cluster import RayExecutor

OnResult = Callable[[EvaluationResult], None]


class Evaluates(Protocol):
    def evaluate(self, submission: Submission, gpu: int | None = None) -> EvaluationResult: ...


@dataclass(frozen=True)
class Placement:
    """Where candidates run at once: `jobs` CPU slots, or `per_gpu` slots on each of `gpus`."""

    jobs: int = 1
    gpus: tuple[int, ...] = ()
    per_gpu: int = 1

    def slots(self) -> list[int | None]:
        return [gpu for _ in range(self.per_gpu) for gpu in self.gpus] if self.gpus else [None] * max(1, self.jobs)

    @property
    def per_device(self) -> int:
        """Candidates at once on one device: what a warm pool per phase and device keeps ready."""
        return self.per_gpu if self.gpus else max(1, self.jobs)


def evaluate_many(evaluator: Evaluates, submissions: Sequence[Submission], jobs: int | Placement,
                  on_result: OnResult | None = None) -> list[EvaluationResult]:
    """Evaluate `submissions` in parallel slots (`jobs` on the CPU, or a Placement over GPUs), results
    in input order; `on_result` is called (one at a time) as each lands.

    A candidate never stops the run: any unexpected exception while evaluating it becomes its own
    `invalid_output` result. Only an infrastructure failure (InfraError: Docker, images) stops the
    remaining work, and it is re-raised. With `jobs > 1`, a candidate that ends in `oom` is evaluated
    again alone (after the others) before that is recorded: a neighbour may have taken the memory.
    """
    placement = jobs if isinstance(jobs, Placement) else Placement(jobs=jobs)
    slots: queue.Queue[int | None] = queue.Queue()
    for slot in placement.slots():
        slots.put(slot)
    width = slots.qsize()
    lock = threading.Lock()
    stop = threading.Event()

    def attempt(submission: Submission) -> EvaluationResult:
        if stop.is_set():
            raise InfraError("stopped after an infrastructure failure")
        gpu = slots.get()
        try:
            return evaluator.evaluate(submission, gpu=gpu)
        except InfraError:
            stop.set()
            raise
        except OSError as exc:  # the host's own files (disk full, permissions): not the candidate's doing
            stop.set()
            raise InfraError(f"host I/O failure while evaluating {submission.name or submission.key}: {exc}") from None
        except Exception as exc:  # noqa: BLE001  bytes of the candidate's broke a host-side reader
            return unexpected_failure(evaluator, submission, exc)
        finally:
            slots.put(gpu)

    def deliver(result: EvaluationResult) -> EvaluationResult:
        if on_result:
            with lock:
                on_result(result)
        return result

    def first(submission: Submission) -> EvaluationResult | None:
        result = attempt(submission)
        if width > 1 and result.failure == "oom":
            return None  # decided later, alone
        return deliver(result)

    with ThreadPoolExecutor(max_workers=width) as pool:
        results = [f.result() for f in [pool.submit(first, s) for s in submissions]]
    return [result if result is not None else deliver(retry_alone(attempt, submission))
            for submission, result in zip(submissions, results)]


def retry_alone(attempt: Callable[[Submission], EvaluationResult], submission: Submission) -> EvaluationResult:
    """The candidate's outcome when it runs with no neighbour (the pool has drained)."""
    result = attempt(submission)
    if result.failure == "oom" and result.error is not None:
        result.error = printable(f"{result.error}\n(out of memory again when evaluated alone)", 2000)
    return result


def unexpected_failure(evaluator: Evaluates, submission: Submission, exc: Exception) -> EvaluationResult:
    """A result for a candidate whose evaluation raised on the host (never a reason to stop the run)."""
    protocol = getattr(getattr(evaluator, "protocol", None), "id", "")
    result = EvaluationResult(key=submission.key, name=submission.name,
                              sha256=hashlib.sha256(submission.source).hexdigest(), protocol=protocol,
                              image=str(getattr(evaluator, "image", "")))
    return result.fail("invalid_output", f"the host could not process this candidate's output: "
                                         f"{type(exc).__name__}: {exc}")


def sandbox_docker() -> Docker:
    """The daemon and the sandbox image, with containers left by crashed runs swept."""
    docker = connect("sandbox")
    sweep_orphans(docker.client)
    return docker


@contextmanager
def open_cluster(config: ExperimentConfig, docker: Docker, shared: Sequence[Path],
                 say: Callable[[str], None] = print) -> Iterator[RayExecutor | None]:
    """The Ray executor while in the block when the profile asks for it (`[executor] kind = "ray"`:
    joined, every node checked; `shared`: the paths every node must see as this one does), else None
    (this machine's Docker daemon). InfraError when Ray is missing or the cluster is not ready."""
    if config.executor.kind == "local":
        yield None
        return
    try:
        from orchestrator.executors.ray_cluster import connect_ray
    except ImportError as exc:
        raise InfraError(f'[executor] kind = "ray" needs Ray ({exc}): pip install "nasloop[ray]"') from None
    cluster = connect_ray(config.executor, config.evaluation, docker.images["sandbox"], shared, say)
    try:
        yield cluster
    finally:
        cluster.close()


def fit_to_machine(config: ExperimentConfig, docker: Docker, say: Callable[[str], None] = print,
                   cluster: RayExecutor | None = None) -> tuple[ExperimentConfig, Placement]:
    """The profile as this machine can run it: `cpus` capped to what the Docker daemon has (with a
    notice), and on CUDA the GPU preflight (InfraError naming the cause if it fails) and the slots.
    On a Ray cluster: as many slots as its nodes hold (they were checked as it connected; Ray picks
    each phase's node and GPU)."""
    if cluster is not None:
        return config, Placement(jobs=cluster.capacity)
    evaluation = config.evaluation
    notice = piped_core_notice()
    if notice:
        say(notice)
    available = int(docker.client.info().get("NCPU") or 1)
    if evaluation.cpus > available:
        say(f"note: evaluation.cpus = {evaluation.cpus} but this machine has {available} CPU(s): using {available}")
        evaluation = dataclasses.replace(evaluation, cpus=float(available))
    placement = Placement(jobs=evaluation.jobs)
    if evaluation.device == "cuda":
        gpus = preflight(docker.client, docker.images["sandbox"].id, evaluation.gpus)
        placement = Placement(gpus=tuple(gpus), per_gpu=evaluation.jobs_per_gpu)
    return dataclasses.replace(config, evaluation=evaluation), placement


def prepared_dataset(config: ExperimentConfig, workdir: Path, data_dir: Path | None = None) -> PreparedDataset:
    data = config.data
    return ensure_prepared(data.dataset, workdir, data_dir or workdir / "data", data.holdout_fraction,
                           data.train_subset)


def submissions_of(paths: Sequence[Path]) -> list[Submission]:
    """Files as submissions: key = position on the command line, name = the path."""
    return [Submission(key=i, source=Path(path).read_bytes(), name=str(path)) for i, path in enumerate(paths)]


def evaluate_files(paths: Sequence[Path], config: ExperimentConfig, workdir: Path, data_dir: Path | None = None,
                   on_start: Callable[[Evaluator], None] | None = None, on_result: OnResult | None = None,
                   say: Callable[[str], None] = print) -> list[EvaluationResult]:
    """Run every file through the full evaluation protocol of `config` (one training epoch, prediction,
    host scoring) in hardened containers, as many at once as the profile places.

    Raises ImageError/InfraError (Docker, images, the GPU preflight) and DataError (dataset); a
    candidate's own failure is its result, never an exception."""
    docker = sandbox_docker()
    prepared = prepared_dataset(config, workdir, data_dir)
    submissions = submissions_of(paths)
    with open_cluster(config, docker, _shared_paths(workdir, data_dir), say) as cluster:
        config, placement = fit_to_machine(config, docker, say, cluster)
        with scoring_set(prepared, workdir / "scratch") as scoring, \
                Evaluator(docker.client, docker.images["sandbox"], prepared, config.evaluation, workdir / "artefacts",
                          scoring, pool_size=placement.per_device, executor=cluster) as evaluator:
            if on_start:
                on_start(evaluator)
            return evaluate_many(evaluator, submissions, placement, on_result)


def check_files(paths: Sequence[Path], config: ExperimentConfig, workdir: Path, data_dir: Path | None = None,
                on_start: Callable[[Checker], None] | None = None, on_result: OnResult | None = None,
                say: Callable[[str], None] = print) -> list[EvaluationResult]:
    """The validity checks alone for every file, at the input shape of the profile's dataset."""
    docker = sandbox_docker()
    meta = prepared_dataset(config, workdir, data_dir).meta
    with open_cluster(config, docker, _shared_paths(workdir), say) as cluster:
        config, placement = fit_to_machine(config, docker, say, cluster)
        with make_checker(docker, config, make_check_protocol(config.evaluation, meta.in_shape, meta.num_classes),
                          workdir, placement, cluster) as checker:
            if on_start:
                on_start(checker)
            return evaluate_many(checker, submissions_of(paths), placement, on_result)


def make_checker(docker: Docker, config: ExperimentConfig, protocol: CheckProtocol, workdir: Path,
                 placement: Placement | None = None, executor: Executor | None = None) -> Checker:
    """A Checker for `protocol` with the sandbox image of `docker`; scratch space in the workspace.
    Close it (or use it as a context manager) to remove the containers it started ahead."""
    size = (placement or Placement(jobs=config.evaluation.jobs)).per_device
    return Checker(docker.client, docker.images["sandbox"], protocol, workdir / "scratch" / "checks",
                   warm=config.evaluation.warm_containers, pool_size=size, executor=executor)


def _shared_paths(workdir: Path, data_dir: Path | None = None) -> list[Path]:
    """What the nodes of a cluster bind-mount from: the workspace (job directories, the images to
    predict) and the data, if elsewhere."""
    workdir.mkdir(parents=True, exist_ok=True)
    return [workdir] + ([data_dir] if data_dir is not None and not data_dir.resolve().is_relative_to(
        workdir.resolve()) else [])
