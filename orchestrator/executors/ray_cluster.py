"""The Ray executor: one Ray task per candidate phase, reserving its CPUs and memory (and on CUDA its
share of a GPU), which runs nasloop's own hardened container on the Docker daemon of the node it
lands on, with the GPU Ray assigned it. Ray only places and retries; the candidate never runs in a
Ray worker (Ray's container `runtime_env` would run Ray's worker inside the container, which needs
the network), and its outputs come back in memory to the head, which reads and scores them there.

The cluster's preconditions, checked at start on every node with room for a candidate (one error per
failing node): the same nasloop code as the head, the workspace on a path every node shares (the
same path on each: the job directories, the data and the images to predict are bind-mounted from
it), the head's image (by id) on the node's daemon, and on CUDA the GPU preflight. Containers left
on a node by a Ray worker that died (with its node, say) are swept there at start, and by the first
task of every new worker.

A phase whose node or Ray worker dies runs again elsewhere, from scratch (`retries` times at most);
after that, and for any other failure of Ray or of a node's Docker, it is an InfraError: the
infrastructure's, never the candidate's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import docker.utils
import ray
import ray.exceptions
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

import contracts
import orchestrator.containers
import orchestrator.executors
from contracts.sandbox import CONTAINER_JOB_DIR
from orchestrator.config import EvaluationConfig, ExecutorConfig
from orchestrator.containers.client import InfraError, daemon_name, docker_client
from orchestrator.containers.gpu import preflight
from orchestrator.containers.hardened import Limits, Phase, run_phase
from orchestrator.containers.images import ResolvedImage
from orchestrator.containers.labels import sweep_orphans
from orchestrator.executors.base import PhaseRun, PhaseSpec, write_job_dir

CHECK_TIMEOUT_S = 300.0  # for every node to answer the start check (a fresh worker imports nasloop)
MARKER_NAME = ".nasloop-cluster-check"


@dataclass(frozen=True)
class NodeFailure:
    """What a node task returns instead of raising: Docker failed on its node."""

    node: str
    message: str


@dataclass(frozen=True)
class NodeReport:
    """A node's answer to the start check."""

    node: str
    problems: list[str]
    swept: int  # containers of gone runs removed from its daemon


# --- on a node ------------------------------------------------------------------------------------

_node_client: docker.DockerClient | None = None  # one per Ray worker process


def _docker_here() -> docker.DockerClient:
    """This node's Docker daemon; a new worker first sweeps the containers of owners that are gone
    (those of a worker that died, with its node or alone)."""
    global _node_client
    if _node_client is None:
        client = docker_client()
        sweep_orphans(client)
        _node_client = client
    return _node_client


def _node_name(client: docker.DockerClient | None) -> str:
    """The machine (its Docker daemon's name) and the Ray node on it."""
    machine = (daemon_name(client) if client is not None else "") or socket.gethostname()
    return f"{machine} ray:{ray.get_runtime_context().get_node_id()[:8]}"


def _assigned_gpu() -> int:
    """The host index of the GPU Ray assigned this task."""
    ids = ray.get_runtime_context().get_accelerator_ids().get("GPU", [])
    if len(ids) != 1 or not str(ids[0]).isdigit():
        raise InfraError(f"Ray assigned GPU(s) {ids!r}, not one host index: start the node's Ray with GPUs "
                         "named by index (CUDA_VISIBLE_DEVICES without UUIDs)")
    return int(ids[0])


def _run_on_node(phase: Phase, limits: Limits, wants_gpu: bool) -> PhaseRun | NodeFailure:
    """Run one phase in a fresh hardened container on this node's daemon."""
    began, client = time.monotonic(), None
    try:
        client = _docker_here()
        gpu = _assigned_gpu() if wants_gpu else None
        outcome = run_phase(client, dataclasses.replace(phase, gpu=gpu), limits)
        return PhaseRun(outcome, _node_name(client), gpu, time.monotonic() - began)
    except (InfraError, docker.errors.DockerException) as exc:
        return NodeFailure(_node_name(client), str(exc))


def _check_node(image_id: str, markers: dict[Path, str], fingerprint: str, gpus: bool) -> NodeReport:
    """The start check of one node; every problem found, each with what to do."""
    problems = []
    if code_fingerprint() != fingerprint:
        problems.append("runs other nasloop code than the head: install the same nasloop on every node")
    for path, token in markers.items():
        try:
            why = "" if path.read_text() == token else "other content"
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
        if why:
            problems.append(f"does not see the head's {path.parent} as the head does ({why}): put the workspace "
                            "on a filesystem every node mounts at the same path")
    client, swept = None, 0
    try:
        client = docker_client()
        swept = sweep_orphans(client)
        try:
            client.images.get(image_id)
        except docker.errors.ImageNotFound:
            problems.append(f"its Docker daemon has no image {image_id}: load the images onto every node "
                            "(`docker save TAG | docker load` there, or build them there from the same sources)")
        else:
            if gpus:
                preflight(client, image_id, "all")
    except (InfraError, docker.errors.DockerException) as exc:
        problems.append(str(exc))
    return NodeReport(_node_name(client), problems, swept)


def _sweep_node() -> int:
    return sweep_orphans(docker_client())


# The node tasks, exported to the cluster once (their options are set per call).
_run_on_node_task = ray.remote(_run_on_node)
_check_node_task = ray.remote(_check_node)
_sweep_node_task = ray.remote(_sweep_node)


def code_fingerprint() -> str:
    """A hash of the code that runs on a node (contracts, containers, executors): the head's and every
    node's must agree."""
    digest = hashlib.sha256()
    for package in (contracts, orchestrator.containers, orchestrator.executors):
        root = Path(package.__file__).parent
        for file in sorted(root.glob("*.py")):
            digest.update(f"{package.__name__}/{file.name}".encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


# --- on the head ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskResources:
    """What one candidate phase reserves on a node."""

    cpus: float
    gpu_share: float  # 0 on the CPU
    memory: int  # bytes: the container's memory limit, so that a node is never given more than it holds
    custom: dict[str, float]

    def demand(self) -> dict[str, float]:
        return {"CPU": self.cpus, "GPU": self.gpu_share, "memory": float(self.memory), **self.custom}

    def slots_on(self, node: dict[str, float]) -> int:
        """How many phases fit on a node with these total resources at once."""
        fits = [int(node.get(name, 0.0) / amount + 1e-6) for name, amount in self.demand().items() if amount > 0]
        return min(fits, default=0)


@dataclass
class RayExecutor:
    """Runs phases on a connected, checked Ray cluster (`connect_ray`)."""

    image_id: str
    resources: TaskResources
    retries: int
    nodes: list[str]  # the checked nodes, by name
    capacity: int  # phases the checked nodes can run at once
    owns_connection: bool  # whether closing disconnects from the cluster

    def run(self, spec: PhaseSpec) -> PhaseRun:
        """Write the job directory (on the shared workspace) and run the phase on whichever node Ray
        places it; InfraError when Ray or the node's Docker fails, after Ray's retries."""
        write_job_dir(spec.job_dir, spec.files, spec.job)
        phase = Phase(spec.name, self.image_id, spec.command, {spec.job_dir: CONTAINER_JOB_DIR, **spec.data},
                      spec.labels)
        task = _run_on_node_task.options(
            num_cpus=self.resources.cpus, num_gpus=self.resources.gpu_share, memory=self.resources.memory,
            resources=self.resources.custom, max_retries=self.retries, retry_exceptions=False,
            scheduling_strategy="SPREAD", name=f"nasloop-{spec.name}")
        try:
            reply = ray.get(task.remote(phase, spec.limits, self.resources.gpu_share > 0))
        except ray.exceptions.RayError as exc:  # the node or worker died (retries spent), or Ray failed
            raise InfraError(f"the Ray task of the {spec.name} phase failed ({type(exc).__name__}): "
                             f"{_first_line(exc)}") from None
        if isinstance(reply, NodeFailure):
            raise InfraError(f"on {reply.node}: {reply.message}")
        return reply

    def sweep(self) -> int:
        """Sweep the containers of gone runs on every live node that runs candidates."""
        tasks = [_sweep_node_task.options(num_cpus=0, scheduling_strategy=_on(node_id))
                 for node_id in _candidate_nodes(self.resources)]
        try:
            return sum(ray.get([task.remote() for task in tasks], timeout=CHECK_TIMEOUT_S))
        except ray.exceptions.RayError as exc:
            raise InfraError(f"sweeping the Ray nodes failed: {_first_line(exc)}") from None

    def close(self) -> None:
        if self.owns_connection and ray.is_initialized():
            ray.shutdown()
        self.owns_connection = False


def connect_ray(executor: ExecutorConfig, evaluation: EvaluationConfig, image: ResolvedImage,
                shared: Sequence[Path], say: Callable[[str], None] = print) -> RayExecutor:
    """Join the Ray cluster at `executor.address` and check its nodes (`shared`: the paths the
    nodes must see as the head does); InfraError naming each failing node and what to do."""
    owns = not ray.is_initialized()
    if owns:
        try:
            ray.init(address=executor.address, logging_level=logging.WARNING, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise InfraError(f"cannot join the Ray cluster at {executor.address!r} ({exc}): start one "
                             "(`ray start --head` on the head, `ray start --address HEAD:PORT` on each node) or "
                             "set --ray-address") from None
    try:
        resources = TaskResources(cpus=evaluation.cpus,
                                  gpu_share=1.0 / evaluation.jobs_per_gpu if evaluation.device == "cuda" else 0.0,
                                  memory=int(docker.utils.parse_bytes(evaluation.memory)),
                                  custom=dict(executor.resources))
        reports, capacity = _check_nodes(image.id, shared, resources, evaluation.device == "cuda")
    except BaseException:
        if owns:
            ray.shutdown()
        raise
    swept = sum(r.swept for r in reports)
    say(f"Ray cluster at {executor.address}: {len(reports)} node(s), {capacity} candidate phase(s) at once"
        + (f"; removed {swept} container(s) left behind on its nodes" if swept else ""))
    if evaluation.warm_containers:
        say("note: on Ray every phase starts its container cold (evaluation.warm_containers is for the local executor)")
    return RayExecutor(image.id, resources, executor.retries, [r.node for r in reports], capacity, owns)


def _check_nodes(image_id: str, shared: Sequence[Path], resources: TaskResources,
                 gpus: bool) -> tuple[list[NodeReport], int]:
    """The reports of the live nodes that can run a candidate phase and how many phases they run at
    once, or InfraError listing each such node that fails a precondition (the others are left alone)."""
    nodes = _candidate_nodes(resources)
    if not nodes:
        raise InfraError(f"no node of the Ray cluster has what a candidate phase reserves ({_show(resources.demand())}): "
                         "start nodes with more resources, or lower evaluation.cpus or evaluation.memory")
    token = secrets.token_hex(16)
    markers = {Path(path).resolve() / f"{MARKER_NAME}-{token[:8]}": token for path in shared}
    for marker in markers:
        marker.write_text(token)
    try:
        pending = {node_id: _check_node_task.options(num_cpus=0, scheduling_strategy=_on(node_id), max_retries=0)
                   .remote(image_id, markers, code_fingerprint(), gpus and node["Resources"].get("GPU", 0) > 0)
                   for node_id, node in nodes.items()}
        deadline = time.monotonic() + CHECK_TIMEOUT_S
        reports, failures = [], []
        for node_id, ref in pending.items():
            where = nodes[node_id].get("NodeManagerAddress", "?")
            try:
                report = ray.get(ref, timeout=max(1.0, deadline - time.monotonic()))
            except ray.exceptions.RayError as exc:
                failures.append(f"node ray:{node_id[:8]} ({where}): its check failed: {_first_line(exc)}")
                continue
            reports.append(report)
            failures += [f"node {report.node} ({where}): {problem}" for problem in report.problems]
    finally:
        for marker in markers:
            marker.unlink(missing_ok=True)
    if failures:
        raise InfraError("the Ray cluster does not meet nasloop's preconditions:\n  " + "\n  ".join(failures))
    return reports, sum(resources.slots_on(node["Resources"]) for node in nodes.values())


def _candidate_nodes(resources: TaskResources) -> dict[str, dict]:  # type: ignore[type-arg]
    """The live nodes with room for at least one candidate phase, by id."""
    return {node["NodeID"]: node for node in ray.nodes()
            if node["Alive"] and resources.slots_on(node["Resources"]) > 0}


def _on(node_id: str) -> NodeAffinitySchedulingStrategy:
    return NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)


def _show(demand: dict[str, float]) -> str:
    return ", ".join(f"{name} {amount:g}" for name, amount in demand.items() if amount > 0)


def _first_line(exc: BaseException) -> str:
    """What went wrong, in a line: for an exception raised in a Ray task, its last line (the cause)."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return (lines[-1] if isinstance(exc, ray.exceptions.RayTaskError) else lines[0])[:500]
