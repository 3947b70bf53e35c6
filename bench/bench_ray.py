"""Ray executor benchmark: what a candidate costs through the Ray path against the local path, in
one run, on the same machine, data and image.

A Ray cluster of two nodes is started on this machine (1 CPU each; or --address joins one), and the
same stream of candidates (copies of one program, each distinct) is evaluated one at a time through
both executors, the sides interleaved (their order alternating), every container started cold (the
Ray path has no warm pools). The first candidate of each side (a Ray worker's first start) is left
out. Medians of:

- per candidate: `Evaluator.evaluate` from call to result (contract check, phases, host scoring) on
  each side, and the paired difference Ray minus local (neighbours in time share the machine's load);
- per phase, Ray's own cost: the head's wall time of the phase minus the wall time where it ran (the
  job files written on the head, the task's placement, transfer and the outcome's return);
- per phase, Docker's cost outside the container (output volume, keeper, read-back, removal): the
  wall time where it ran minus the container's own (start to exit).

Every copy must score the same on both sides.

Usage: .venv/bin/python bench/bench_ray.py [--candidate trivial|small_cnn] [--count N] [--address HOST:PORT]
           [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from orchestrator.config import load_config  # noqa: E402
from orchestrator.containers.images import connect  # noqa: E402
from orchestrator.data import prepare_from  # noqa: E402
from orchestrator.evaluation.evaluator import Evaluator  # noqa: E402
from orchestrator.evaluation.result import Submission  # noqa: E402
from orchestrator.evaluation.scoring import scoring_set  # noqa: E402
from orchestrator.executors.base import Executor, PhaseRun, PhaseSpec  # noqa: E402
from orchestrator.executors.local import LocalExecutor  # noqa: E402
from orchestrator.executors.ray_cluster import connect_ray  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from bench_evaluate import CANDIDATE, TRIVIAL  # noqa: E402


@dataclass
class Timed:
    """An executor that notes, per phase, its wall time and the container's own."""

    inner: Executor
    phases: list[tuple[float, float, float]] = field(default_factory=list)  # head wall, where it ran, container

    def run(self, spec: PhaseSpec) -> PhaseRun:
        started = time.perf_counter()
        run = self.inner.run(spec)
        self.phases.append((time.perf_counter() - started, run.seconds, run.outcome.seconds))
        return run

    def sweep(self) -> int:
        return self.inner.sweep()

    def close(self) -> None:
        self.inner.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", choices=("trivial", "small_cnn"), default="trivial",
                        help="trivial: learn() returns at once (the fixed cost); small_cnn: tests/candidates")
    parser.add_argument("--count", type=int, default=6, help="candidates per side [6]")
    parser.add_argument("--address", default=None, help="join this Ray cluster instead of starting two nodes here")
    parser.add_argument("--json", type=Path, default=REPO / "bench-results" / "ray.json")
    args = parser.parse_args()
    source = TRIVIAL if args.candidate == "trivial" else CANDIDATE.read_bytes()

    docker = connect("sandbox")
    image = docker.images["sandbox"]
    config = load_config("smoke")
    evaluation = replace(config.evaluation, cpus=1.0, warm_containers=False)
    scratch = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    temp = tempfile.mkdtemp(prefix="nlray-")  # Ray's own files (short: its socket paths are capped)
    os.environ["RAY_TMPDIR"] = temp
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    cluster = None
    try:
        if args.address is None:
            cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
            cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()
        address = args.address or cluster.address  # type: ignore[union-attr]
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        prepared = prepare_from("synthetic", None, scratch / "data", config.data.holdout_fraction, secret=0)
        executor_config = replace(config.executor, kind="ray", address=address)
        local = Timed(LocalExecutor(docker.client, image, False, 1, scratch / "warm"))
        on_ray = Timed(connect_ray(executor_config, evaluation, image, [scratch], say=print))
        sides = {"local": local, "ray": on_ray}
        walls: dict[str, list[float]] = {name: [] for name in sides}
        transport: dict[str, list[float]] = {name: [] for name in sides}
        docker_side: dict[str, list[float]] = {name: [] for name in sides}
        scores: dict[str, set[tuple[float | None, float | None]]] = {name: set() for name in sides}
        nodes: set[str] = set()
        with scoring_set(prepared, scratch / "scratch") as scoring:
            evaluators = {name: Evaluator(docker.client, image, prepared, evaluation, scratch / "artefacts" / name,
                                          scoring, executor=executor) for name, executor in sides.items()}
            for i in range(args.count + 1):  # the first of each side (a Ray worker's first start) is left out
                for name in (("local", "ray") if i % 2 == 0 else ("ray", "local")):
                    submission = Submission(i, source + f"\n# copy {i}\n".encode(), f"{name}-{i}")
                    before = len(sides[name].phases)
                    started = time.perf_counter()
                    result = evaluators[name].evaluate(submission)
                    wall = time.perf_counter() - started
                    if not result.valid:
                        raise SystemExit(f"error: {name} candidate {i}: {result.failure}: {result.error}")
                    if name == "ray":
                        nodes.update(part.split("ray:")[1] for part in result.node.split(", "))
                    if i == 0:
                        continue
                    walls[name].append(wall)
                    transport[name] += [head - there for head, there, _ in sides[name].phases[before:]]
                    docker_side[name] += [there - inside for _, there, inside in sides[name].phases[before:]]
                    scores[name].add((result.accuracy, result.holdout_accuracy))
                    print(f"  {name:5s} candidate {i}: {wall:.2f} s")
        local.close()
        on_ray.close()
        report: dict[str, Any] = {
            "candidate": args.candidate, "count": args.count, "machine": platform.node(), "cpus": os.cpu_count(),
            "ray": ray.__version__, "ray_nodes_used": len(nodes),
            "per_candidate_s": {name: statistics.median(values) for name, values in walls.items()},
            "ray_minus_local_per_candidate_ms": 1000 * statistics.median(
                r - loc for r, loc in zip(walls["ray"], walls["local"])),
            "executor_transport_per_phase_ms": {name: 1000 * statistics.median(values)
                                                for name, values in transport.items()},
            "docker_outside_container_per_phase_ms": {name: 1000 * statistics.median(values)
                                                      for name, values in docker_side.items()},
            "phases_per_candidate": len(sides["ray"].phases) // (args.count + 1),
            "same_scores": scores["local"] == scores["ray"] and len(scores["local"]) == 1,
        }
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(temp, ignore_errors=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 0 if report["same_scores"] else 1


if __name__ == "__main__":
    sys.exit(main())
