"""Candidate bytes built to break the host's parsers, each through its own `nasloop evaluate` (so a
crash of the host cannot hide behind another file's result): the command must finish normally and
record the candidate's failure. Plus the pool's own guarantees (orchestrator/evaluation/run.py, no
containers): an unexpected exception is one candidate's failure, never the run's, an `oom` under
`jobs > 1` is re-run alone, candidates are spread over the GPUs no more than `per_gpu` at a time on
each, and the profile is fitted to the machine (`cpus` capped to the daemon's CPUs)."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli import main
from orchestrator.containers.client import InfraError
from orchestrator.evaluation.result import EvaluationResult, Submission
from orchestrator.config import load_config
from orchestrator.evaluation.run import Placement, evaluate_many, fit_to_machine
from tests.hostile import Case

BOMBS = {
    # Source the host's own parser cannot take: recursion during AST construction, the parser's stack.
    "source_recursion": ("syntax", ("x = a" + ".b" * 30000 + "\n").encode()),
    "source_parser_memory": ("syntax", ("x = " + "-" * 60000 + "1\n").encode()),
    # A coding cookie under which the container would run code the host's check saw as a comment.
    "coding_cookie": ("contract", Case("cookie", "", at_import="# \\u000aimport os; os._exit(0)").source()
                      .replace(b"import torch\n", b"# -*- coding: raw_unicode_escape -*-\nimport torch\n", 1)),
    # Candidate-written files built to exhaust the host's readers.
    "nested_status": ("crash", Case("status", "", at_import="""
        import os
        open('/out/status.json', 'w').write('[' * 100000)
        os._exit(16)
        """).source()),
    "npy_header_bomb": ("invalid_output", Case("npy", "", at_import="""
        import os, struct
        if os.path.exists('/data/predict_images.npy'):
            header = b"{{'descr': '<f4', 'fortran_order': False, 'shape': " + b"(" * 60000
            open('/out/logits.npy', 'wb').write(b'\\x93NUMPY\\x01\\x00' + struct.pack('<H', len(header)) + header)
            os._exit(0)
        """).source()),
    "number_too_large_for_float": ("invalid_output", Case("number", "", in_learn="""
        import os, safetensors.torch
        safetensors.torch.save_file({{k: v.contiguous() for k, v in self.state_dict().items()}},
                                    '/out/weights.safetensors')
        open('/out/train.json', 'w').write('{{"params": 1, "learn_seconds": 1' + '0' * 400 + '}}')
        os._exit(0)
        """).source()),
    "safetensors_header_bomb": ("invalid_output", Case("weights", "", in_learn="""
        import os, struct
        header = b'{{"a":' * 100000 + b'1' + b'}}' * 100000
        open('/out/weights.safetensors', 'wb').write(struct.pack('<Q', len(header)) + header)
        open('/out/train.json', 'w').write('{{"params": 1, "learn_seconds": 1.0}}')
        os._exit(0)
        """).source()),
}


@pytest.mark.docker
@pytest.mark.parametrize("name", sorted(BOMBS))
def test_each_parser_bomb_is_its_candidates_failure(name: str, tmp_path: Path, sandbox_image) -> None:  # type: ignore[no-untyped-def]
    expected, source = BOMBS[name]
    path = tmp_path / f"{name}.py"
    path.write_bytes(source)
    result = CliRunner().invoke(main, ["evaluate", "--json", "--profile", "smoke", "--timeout", "120",
                                       "--workdir", str(tmp_path / "runs"), str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (record,) = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert record["failure"] == expected, record["error"]
    assert record["valid"] is False and record["path"] == str(path)


class ScriptedEvaluator:
    """A stand-in with the Evaluator's interface, for the pool's own logic (no containers)."""

    protocol = type("P", (), {"id": "test-protocol"})()
    image = "test-image"

    def __init__(self, outcomes: dict[int, list[str]]) -> None:
        self.outcomes = outcomes  # key -> outcome of each attempt: "ok", a failure kind, "raise", "infra"
        self.running = 0
        self.alone: dict[int, list[bool]] = {}
        self.lock = threading.Lock()

    def evaluate(self, submission: Submission, gpu: int | None = None) -> EvaluationResult:
        with self.lock:
            self.running += 1
            self.alone.setdefault(submission.key, []).append(self.running == 1)
            outcome = self.outcomes[submission.key].pop(0)
        try:
            if outcome == "raise":
                raise RecursionError("maximum recursion depth exceeded")
            if outcome == "infra":
                raise InfraError("the Docker daemon went away")
            result = EvaluationResult(key=submission.key, name=submission.name, sha256="x")
            if outcome == "ok":
                result.valid = True
                return result
            return result.fail(outcome, outcome)
        finally:
            with self.lock:
                self.running -= 1


def _submissions(n: int) -> list[Submission]:
    return [Submission(key=i, source=b"x", name=f"c{i}") for i in range(n)]


def test_an_unexpected_exception_is_that_candidates_failure_and_the_run_goes_on() -> None:
    evaluator = ScriptedEvaluator({0: ["ok"], 1: ["raise"], 2: ["ok"]})
    seen: list[int] = []
    results = evaluate_many(evaluator, _submissions(3), jobs=2, on_result=lambda r: seen.append(r.key))
    assert [r.valid for r in results] == [True, False, True] and sorted(seen) == [0, 1, 2]
    assert results[1].failure == "invalid_output" and "RecursionError" in results[1].error
    assert results[1].protocol == "test-protocol"


def test_an_infrastructure_failure_stops_the_run() -> None:
    evaluator = ScriptedEvaluator({0: ["infra"], 1: ["ok"], 2: ["ok"]})
    with pytest.raises(InfraError):
        evaluate_many(evaluator, _submissions(3), jobs=1)


def test_an_oom_beside_neighbours_is_run_again_alone_before_it_is_recorded() -> None:
    evaluator = ScriptedEvaluator({0: ["oom", "ok"], 1: ["ok"], 2: ["oom", "oom"], 3: ["ok"]})
    recorded: dict[int, str] = {}
    results = evaluate_many(evaluator, _submissions(4), jobs=2,
                            on_result=lambda r: recorded.setdefault(r.key, r.failure or "ok"))
    assert [r.failure or "ok" for r in results] == ["ok", "ok", "oom", "ok"]
    assert recorded == {0: "ok", 1: "ok", 2: "oom", 3: "ok"}  # each recorded once, after the rerun
    assert evaluator.alone[0][-1] and evaluator.alone[2][-1]  # the reruns had no neighbour
    assert "again when evaluated alone" in results[2].error
    single = ScriptedEvaluator({0: ["oom"]})
    assert evaluate_many(single, _submissions(1), jobs=1)[0].failure == "oom"  # alone already: no rerun


class PlacedEvaluator:
    """A stand-in that records on which GPU each candidate ran and how many ran at once on each."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.lock = threading.Lock()
        self.running: Counter[int | None] = Counter()
        self.peak: Counter[int | None] = Counter()
        self.peak_total = 0

    def evaluate(self, submission: Submission, gpu: int | None = None) -> EvaluationResult:
        with self.lock:
            self.running[gpu] += 1
            self.peak[gpu] = max(self.peak[gpu], self.running[gpu])
            self.peak_total = max(self.peak_total, sum(self.running.values()))
        time.sleep(self.seconds)
        with self.lock:
            self.running[gpu] -= 1
        result = EvaluationResult(key=submission.key, name=submission.name, sha256="x")
        result.valid, result.gpu = True, gpu  # as the Evaluator records the GPU it was given
        return result


def test_candidates_are_spread_over_the_gpus_never_more_than_per_gpu_at_once() -> None:
    placement = Placement(gpus=(0, 1), per_gpu=2)
    assert placement.slots() == [0, 1, 0, 1] and placement.per_device == 2  # interleaved: two use both GPUs
    evaluator = PlacedEvaluator(seconds=0.3)
    results = evaluate_many(evaluator, _submissions(10), placement)
    assert [r.key for r in results] == list(range(10)) and all(r.valid for r in results)
    assert Counter(r.gpu for r in results).keys() == {0, 1}  # each result records its GPU; both were used
    assert evaluator.peak == {0: 2, 1: 2} and evaluator.peak_total == 4  # full, never more than per_gpu
    pair = PlacedEvaluator(seconds=0.3)
    assert sorted(r.gpu for r in evaluate_many(pair, _submissions(2), placement)) == [0, 1]
    cpu = PlacedEvaluator(seconds=0.05)
    assert {r.gpu for r in evaluate_many(cpu, _submissions(4), 2)} == {None} and cpu.peak_total == 2


class _Daemon:
    """What fit_to_machine reads of a Docker connection: the daemon's CPU count."""

    def __init__(self, cpus: int) -> None:
        self.client = self
        self.images = {"sandbox": type("Image", (), {"id": "sha256:sandbox"})()}
        self.cpus = cpus

    def info(self) -> dict[str, int]:
        return {"NCPU": self.cpus}


def test_the_profiles_cpus_are_capped_to_the_machine_with_a_notice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("orchestrator.evaluation.run.piped_core_notice", lambda: None)  # the host's own notice
    smoke = load_config("smoke")
    wide = dataclasses.replace(smoke, evaluation=dataclasses.replace(smoke.evaluation, cpus=8.0))
    said: list[str] = []
    fitted, placement = fit_to_machine(wide, _Daemon(2), said.append)  # type: ignore[arg-type]
    assert fitted.evaluation.cpus == 2.0 and placement == Placement(jobs=smoke.evaluation.jobs)
    assert said == ["note: evaluation.cpus = 8.0 but this machine has 2 CPU(s): using 2"]
    said.clear()
    fitted, _ = fit_to_machine(smoke, _Daemon(16), said.append)  # type: ignore[arg-type]
    assert fitted.evaluation == smoke.evaluation and said == []  # it fits: unchanged, nothing said
    # On CUDA the preflight's GPUs become the placement, jobs_per_gpu on each.
    monkeypatch.setattr("orchestrator.evaluation.run.preflight", lambda client, image, gpus: [0, 1])
    cuda = dataclasses.replace(smoke, evaluation=dataclasses.replace(smoke.evaluation, device="cuda", jobs_per_gpu=3))
    _, placement = fit_to_machine(cuda, _Daemon(16), said.append)  # type: ignore[arg-type]
    assert placement == Placement(gpus=(0, 1), per_gpu=3)
