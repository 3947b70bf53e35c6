"""The Ray executor with real parts: a Ray cluster of two nodes on this machine (`ray_cluster`, started
by the tests, each node with its own raylet and resources), real Docker containers, synthetic data.

Candidates land on both nodes with the results of the local executor; a node killed mid-run leaves
its candidates to the other nodes (never recorded as their failure) and its containers to a sweep;
the hostile suite's containment cases hold through the Ray path; a node that misses a precondition
is named.

Skips without Ray, unless NASLOOP_REQUIRE_RAY=1 (CI sets it), in which case it fails.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli import main
from orchestrator.config import ExecutorConfig, load_config
from orchestrator.containers.client import InfraError
from orchestrator.containers.images import ResolvedImage
from orchestrator.containers.labels import MANAGED_LABEL, OWNER_LABEL
from orchestrator.evaluation.result import EvaluationResult
from tests.conftest import RayCluster, leftovers
from tests.hostile import CASES, Case
from tests.test_sandbox import CANDIDATES, HANG_TIMEOUT, _evaluate, _test_label_table

try:
    import ray
    from ray.cluster_utils import Cluster

    from orchestrator.executors.ray_cluster import RayExecutor, _assigned_gpu, connect_ray
except ImportError as exc:
    if os.environ.get("NASLOOP_REQUIRE_RAY") == "1":
        pytest.fail(f"NASLOOP_REQUIRE_RAY=1 but Ray cannot be imported: {exc}", pytrace=False)
    pytest.skip(f"Ray is not installed ({exc}): pip install 'nasloop[ray]'", allow_module_level=True)

pytestmark = pytest.mark.docker

# Containment cases through the Ray path: exhaustion, the host's files and environment (the Ray
# worker's included), the network (Ray's own ports included), privileges, forged outputs.
HOSTILE = ["benign", "fork_bomb", "memory_hog", "out_fill", "daemonised_child", "host_files_and_secrets", "network",
           "privileges", "symlinked_logits", "forged_infra_status"]
# Compared field by field between the executors (timings and node names differ).
SAME = ("valid", "failure", "accuracy", "holdout_accuracy", "params", "weights_elements", "protocol", "image")


@pytest.fixture(scope="module")
def cluster(ray_cluster: RayCluster, docker_client, sandbox_image) -> Iterator[Cluster]:  # type: ignore[no-untyped-def]
    """The session's two-node Ray cluster, this process connected to it as a driver."""
    ray.init(address=ray_cluster.address, logging_level=logging.WARNING, log_to_driver=False)
    try:
        yield ray_cluster.cluster
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def secret_value(ray_cluster: RayCluster) -> str:
    return ray_cluster.secret


def _connect(cluster: Cluster, image: ResolvedImage, workdir: Path,  # type: ignore[no-untyped-def]
             resources: dict[str, float] | None = None) -> RayExecutor:
    """The Ray executor as `nasloop` makes it (the driver is connected already: the test owns that)."""
    evaluation = replace(load_config("smoke").evaluation, cpus=1.0, memory="1g", warm_containers=False)
    return connect_ray(ExecutorConfig(kind="ray", address=cluster.address, resources=resources or {}, retries=3),
                       evaluation, image, [workdir], say=lambda _: None)


def _ray_nodes(result: EvaluationResult) -> set[str]:
    return {part.split("ray:")[1] for part in result.node.split(", ") if "ray:" in part}


def _by_name(results: list[EvaluationResult]) -> dict[str, EvaluationResult]:
    return {r.name: r for r in results}


def _sources() -> list[tuple[str, bytes]]:
    small = (CANDIDATES / "small_cnn.py").read_bytes()
    cases = {c.name: c for c in CASES}
    return [("small_cnn", small), ("benign", cases["benign"].source()),
            ("forward_shape", cases["forward_shape"].source()), ("crash_in_learn", cases["crash_in_learn"].source())]


def test_candidates_land_on_both_nodes_with_the_local_executors_results(  # type: ignore[no-untyped-def]
        cluster, docker_client, sandbox_image, tmp_path) -> None:
    sources = _sources()
    started = time.monotonic()
    local = _by_name(_evaluate(docker_client, sandbox_image, tmp_path, "synthetic", sources, warm=False))
    local_seconds = time.monotonic() - started
    executor = _connect(cluster, sandbox_image, tmp_path)
    assert executor.capacity == 2 and len(executor.nodes) == 2
    started = time.monotonic()
    on_ray = _by_name(_evaluate(docker_client, sandbox_image, tmp_path, "synthetic", sources, warm=False,
                                executor=executor))
    ray_seconds = time.monotonic() - started
    print(f"4 candidates, 2 at a time: local {local_seconds:.1f} s, Ray {ray_seconds:.1f} s")
    for name, _ in sources:
        assert on_ray[name].failure != "infra"
        for field in SAME:
            assert getattr(on_ray[name], field) == getattr(local[name], field), (name, field)
        assert _ray_nodes(on_ray[name]), on_ray[name].node
    assert on_ray["small_cnn"].valid and on_ray["crash_in_learn"].failure == "crash"
    assert len(set().union(*(_ray_nodes(r) for r in on_ray.values()))) == 2  # both nodes ran candidates
    assert leftovers(docker_client) == []


def test_hostile_candidates_are_contained_through_ray(  # type: ignore[no-untyped-def]
        cluster, docker_client, sandbox_image, secret_value, tmp_path) -> None:
    secret_file = tmp_path / "host-secret.txt"
    secret_file.write_text(secret_value)
    sleep_marker = str(900000 + secrets.randbelow(99999))
    host, port = cluster.address.rsplit(":", 1)
    values = {"host_secret_file": str(secret_file), "secret_value": secret_value, "sleep_marker": sleep_marker,
              "in_predict": "os.path.exists('/data/predict_images.npy')", "label_table": _test_label_table(tmp_path)}
    # The Ray worker's environment and the cluster's control plane, as the container would see them.
    ray_case = Case("reaches_ray", "ok", at_import=f"""
        import os, socket
        if any(k.startswith('RAY_') for k in os.environ):
            raise RuntimeError('LEAK: the Ray worker environment')
        try:
            socket.create_connection(('{host}', {port}), timeout=2).close()
        except OSError:
            pass
        else:
            raise RuntimeError('LEAK: reached the Ray head')
        """)
    cases = [c for c in CASES if c.name in HOSTILE] + [ray_case]
    executor = _connect(cluster, sandbox_image, tmp_path)
    hanging = [(c.name, c.source(**values)) for c in cases if c.expect == "timeout"]
    finishing = [(c.name, c.source(**values)) for c in cases if c.expect != "timeout"]
    results = _evaluate(docker_client, sandbox_image, tmp_path, "synthetic", hanging, timeout_s=HANG_TIMEOUT,
                        warm=False, executor=executor)
    results += _evaluate(docker_client, sandbox_image, tmp_path, "synthetic", finishing, timeout_s=120.0,
                         warm=False, executor=executor)
    by_name = _by_name(results)
    for case in cases:
        result = by_name[case.name]
        outcome = "ok" if result.valid else result.failure
        assert outcome == case.expect, f"{case.name}: {outcome}: {result.error}"
        assert _ray_nodes(result), result.node
        if case.expect == "timeout":  # killed at the limit by the node's task, not long after
            assert result.train_seconds is not None and HANG_TIMEOUT <= result.train_seconds < HANG_TIMEOUT + 10.0
        if result.error:
            assert not any(c in result.error for c in "\x1b\x07\x9b\u202e\x00"), result.error
    assert secret_file.read_text() == secret_value
    assert leftovers(docker_client) == []
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert f"sleep {sleep_marker}" not in processes


def test_a_node_lost_mid_run_leaves_its_candidates_to_the_others(  # type: ignore[no-untyped-def]
        cluster, docker_client, sandbox_image, tmp_path) -> None:
    victim = cluster.add_node(num_cpus=1, resources={"node_c": 1})
    cluster.wait_for_nodes()
    victim_id = victim.node_id[:8]
    executor = _connect(cluster, sandbox_image, tmp_path)
    assert executor.capacity == 3
    small = (CANDIDATES / "small_cnn.py").read_bytes()
    sources = [(f"small_cnn_{i}", small + f"\n# copy {i}\n".encode()) for i in range(4)]
    results: list[EvaluationResult] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            results.extend(_evaluate(docker_client, sandbox_image, tmp_path, "synthetic", sources, jobs=3,
                                     warm=False, executor=executor))
        except BaseException as exc:  # noqa: BLE001  reported below
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    # Kill the node (its raylet and workers, SIGKILL) while one of its workers runs a container.
    raylet = victim.all_processes["raylet"][0].process.pid
    deadline = time.monotonic() + 180
    while not _containers_of(docker_client, _descendants(raylet)):
        assert time.monotonic() < deadline and thread.is_alive(), "no candidate ever ran on the third node"
        time.sleep(0.2)
    orphans = _descendants(raylet)
    cluster.remove_node(victim, allow_graceful=False)
    thread.join(timeout=600)
    assert not thread.is_alive() and not failed, failed
    for result in results:  # each finished elsewhere, with its true outcome
        assert result.valid, (result.name, result.failure, result.error)
    last_nodes = {r.node.split(", ")[-1] for r in results}
    assert all(victim_id not in node for node in last_nodes), last_nodes
    # The dead worker's containers are left on the daemon until a sweep on a node of that daemon.
    assert _containers_of(docker_client, orphans)
    assert executor.sweep() >= 1
    assert not _containers_of(docker_client, orphans)
    assert leftovers(docker_client) == []


def test_a_node_without_the_image_is_named(cluster, sandbox_image, tmp_path) -> None:  # type: ignore[no-untyped-def]
    missing = ResolvedImage(tag="nasloop-sandbox:missing", id="sha256:" + "0" * 64)
    with pytest.raises(InfraError) as info:
        _connect(cluster, missing, tmp_path)
    message = str(info.value)
    nodes = [n for n in ray.nodes() if n["Alive"]]
    assert message.count("has no image sha256:0000") == len(nodes) >= 2, message
    assert all(f"ray:{n['NodeID'][:8]}" in message for n in nodes), message
    assert not list(tmp_path.glob(".nasloop-cluster-check*"))  # the head's marker is gone
    # Only the nodes with room for a candidate (here: those with resource node_b) are checked and used.
    with pytest.raises(InfraError, match="has no image") as info:
        _connect(cluster, missing, tmp_path, resources={"node_b": 1})
    assert str(info.value).count("has no image") == 1
    only_b = _connect(cluster, sandbox_image, tmp_path, resources={"node_b": 1})
    assert only_b.capacity == 1 and len(only_b.nodes) == 1
    with pytest.raises(InfraError, match="no node of the Ray cluster has what a candidate phase reserves"):
        _connect(cluster, sandbox_image, tmp_path, resources={"nowhere": 1})


def test_a_gpu_node_is_preflighted_and_its_gpu_assigned(cluster, docker_client, sandbox_image,  # type: ignore[no-untyped-def]
                                                        tmp_path) -> None:
    """No GPU here: a node with two logical GPUs shows the plumbing. The GPU Ray assigns a phase is a host
    index (what the container's device request names); on CUDA only the GPU nodes are checked, each by
    the GPU preflight on its own daemon, which names the node when its Docker has no GPU runtime."""
    gpu_node = cluster.add_node(num_cpus=1, num_gpus=2, resources={"gpu_node": 1})
    cluster.wait_for_nodes()
    try:
        assigned = ray.get(ray.remote(_assigned_gpu).options(num_gpus=0.5, resources={"gpu_node": 0.1}).remote())
        assert assigned in (0, 1)
        if "nvidia" in json.dumps(docker_client.info().get("Runtimes", {})):
            pytest.skip("this Docker has a GPU runtime: the preflight would pass")
        evaluation = replace(load_config("smoke").evaluation, device="cuda", cpus=1.0, memory="1g", jobs_per_gpu=2)
        with pytest.raises(InfraError) as info:
            connect_ray(ExecutorConfig(kind="ray", address=cluster.address, resources={}, retries=3), evaluation,
                        sandbox_image, [tmp_path], say=lambda _: None)
        message = str(info.value)
        assert message.count("\n  node ") == 1 and f"ray:{gpu_node.node_id[:8]}" in message, message
        assert "GPU preflight" in message and "NVIDIA Container Toolkit" in message, message
    finally:
        cluster.remove_node(gpu_node)


def test_nasloop_evaluate_on_ray(cluster, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The command line's way to the Ray executor: `--executor ray --ray-address`, evaluation and the
    checks alone."""
    candidate = tmp_path / "small_cnn.py"
    candidate.write_bytes((CANDIDATES / "small_cnn.py").read_bytes())
    result = CliRunner().invoke(main, [
        "evaluate", "--profile", "smoke", "--dataset", "synthetic", "--executor", "ray", "--ray-address",
        cluster.address, "--json", "--workdir", str(tmp_path / "runs"), str(candidate)], catch_exceptions=False)
    assert result.exit_code == 0, result.output + result.stderr
    (row,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert row["valid"] and " ray:" in row["node"], row
    assert "on the Ray cluster" in result.stderr
    result = CliRunner().invoke(main, [
        "evaluate", "--check-only", "--profile", "smoke", "--dataset", "synthetic", "--executor", "ray",
        "--ray-address", cluster.address, "--json", "--workdir", str(tmp_path / "runs"), str(candidate)],
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (row,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert row["valid"] and row["check_seconds"] and " ray:" in row["node"], row


def _descendants(pid: int) -> set[int]:
    """`pid` and every process below it."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        found.add(current)
        todo += children.get(current, [])
    return found


def _containers_of(client, pids: set[int]) -> list[str]:  # type: ignore[no-untyped-def]
    """nasloop's containers on the daemon whose owner is one of `pids` (on this machine)."""
    names = []
    managed = {"label": f"{MANAGED_LABEL}=1"}
    for container in client.containers.list(all=True, filters=managed, ignore_removed=True):
        owner = container.labels.get(OWNER_LABEL, "::")
        pid = owner.rsplit(":", 2)[1]
        if pid.isdigit() and int(pid) in pids:
            names.append(container.name)
    return names
