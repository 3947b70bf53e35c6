"""Candidate bytes built to break the host's parsers, each through its own `nasloop evaluate` (so a
crash of the host cannot hide behind another file's result): the command must finish normally and
record the candidate's failure. Plus the pool's own guarantees: an unexpected exception is one
candidate's failure, never the run's, and an `oom` under `jobs > 1` is re-run alone."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli import main
from orchestrator.containers.client import InfraError
from orchestrator.evaluation.result import EvaluationResult, Submission
from orchestrator.evaluation.run import evaluate_many
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
