"""The validity checks alone, with real Docker containers: `Checker` on hostile and ordinary
candidates, `nasloop corpus check` on real LEMUR programs (stored per protocol, resumable, never
redone), `nasloop corpus export --valid-only`, `nasloop evaluate --check-only`, and the sample
report of `assess_samples`."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from contracts.llm import Sample
from orchestrator.cli import main
from orchestrator.generator.tiny import check_line as _check_line
from orchestrator.config import load_config
from orchestrator.corpus.checks import prompt_check_protocol
from orchestrator.evaluation.evaluator import Checker
from orchestrator.evaluation.protocol import CHECK_PROTOCOL_NAME
from orchestrator.evaluation.result import Submission
from orchestrator.evaluation.run import evaluate_many
from orchestrator.generator.samples import assess_samples
from tests.conftest import leftovers
from tests.hostile import CASES
from tests.test_sandbox import LEMUR_OK, LEMUR_OVER_BUDGET, _leftover_containers

pytestmark = pytest.mark.docker
CANDIDATES = Path(__file__).parent / "candidates"
SMALL_CNN = (CANDIDATES / "small_cnn.py").read_text()

VALID_LEMUR = Path(__file__).parent / "fixtures" / "lemur-valid-at-3x32x32.txt"
# What the checks alone make of the hostile cases: learn() never runs, and the forward pass is a
# dummy batch of two in eval mode, so the snippets planted there stay dormant.
CHECK_EXPECT = {
    "benign": "ok", "fork_bomb": "timeout", "memory_hog": "oom", "host_files_and_secrets": "ok",
    "network": "ok", "privileges": "ok", "forged_infra_status": "crash", "hidden_parameters": "params_over_budget",
    "system_exit_at_import": "import", "import_error": "import", "instantiate_error": "instantiate",
    "forward_shape": "forward", "endless_loop": "ok", "nan_logits": "ok",
    # The budget is the host's count of the fresh network's state, as after training.
    "replaced_counter": "params_over_budget", "lying_parameter_subclass": "params_over_budget",
    "hidden_submodule": "params_over_budget", "capacity_in_buffers": "params_over_budget",
    "batchnorm_near_budget": "ok", "lazy_linear": "ok", "overridden_state_methods": "ok",
    "forged_budget_failure_kind": "crash", "exit_with_a_runner_status": "params_over_budget",
}
# torchvision is not in the sandbox image; GoogLeNet reads a hyperparameter the protocol does not give.
LEMUR_BROKEN = {"ResNet": "import", "GoogLeNet": "instantiate"}
CHECK_CONFIG = """
[evaluation]
check_timeout_s = 60
memory = "1g"
jobs = 2
"""


def _checker(client, image, tmp_path: Path, timeout_s: float = 60.0) -> Checker:  # type: ignore[no-untyped-def]
    config = load_config("smoke")
    evaluation = replace(config.evaluation, check_timeout_s=timeout_s, memory="1g", cpus=1.0)
    return Checker(client, image, prompt_check_protocol(replace(config, evaluation=evaluation)), tmp_path / "checks",
                   pool_size=2)


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_hostile_and_ordinary_candidates_get_the_right_check_outcome(docker_client, sandbox_image,
                                                                     tmp_path) -> None:  # type: ignore[no-untyped-def]
    secret = tmp_path / "host-secret.txt"
    secret.write_text("s3cret")
    values = {"host_secret_file": str(secret), "secret_value": "s3cret", "sleep_marker": "987654",
              "in_predict": "os.path.exists('/data/predict_images.npy')"}
    cases = [c for c in CASES if c.name in CHECK_EXPECT]
    sources = [Submission(i, c.source(**values), c.name) for i, c in enumerate(cases)]
    with _checker(docker_client, sandbox_image, tmp_path, timeout_s=15.0) as checker:
        results = {r.name: r for r in evaluate_many(checker, sources, jobs=2)}
    for case in cases:
        r = results[case.name]
        outcome = "ok" if r.valid else r.failure
        assert outcome == CHECK_EXPECT[case.name], f"{case.name}: {outcome}: {r.error}"
        assert r.protocol.startswith(CHECK_PROTOCOL_NAME) and r.accuracy is None and r.check_seconds is not None
    assert results["benign"].params is not None and 0 < results["benign"].params < 500_000
    assert "budget 500,000" in results["hidden_parameters"].error
    assert secret.read_text() == "s3cret"
    assert _leftover_containers(docker_client) == []
    assert not any((tmp_path / "checks").iterdir())  # nothing of a check is kept


def test_a_warm_containers_time_limit_starts_at_the_handover(docker_client, sandbox_image, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A container that waited ready for longer than the limit still gives its candidate the whole limit."""
    small = (Path(__file__).parent / "candidates" / "small_cnn.py").read_bytes()
    with _checker(docker_client, sandbox_image, tmp_path, timeout_s=20.0) as checker:
        (first,) = evaluate_many(checker, [Submission(0, small, "first")], jobs=1)
        time.sleep(25.0)  # the next container is ready and waits meanwhile
        (second,) = evaluate_many(checker, [Submission(1, small + b"\n# again\n", "second")], jobs=1)
    assert first.valid and second.valid, (first.error, second.error)
    assert second.check_seconds is not None and second.check_seconds < 20.0
    assert leftovers(docker_client) == []


def test_syntax_errors_never_reach_a_container(docker_client, sandbox_image, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with _checker(docker_client, sandbox_image, tmp_path) as checker:
        (result,) = evaluate_many(checker, [Submission(0, b"def (:\n", "bad")], jobs=1)
    assert result.failure == "syntax" and result.check_seconds is None


@pytest.fixture(scope="module")
def lemur_workspace(lemur_records, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A workspace whose corpus is eight real LEMUR programs of known outcomes."""
    root = tmp_path_factory.mktemp("corpus-check")
    by_name = {r["name"]: r for r in lemur_records}
    names = LEMUR_OK + LEMUR_OVER_BUDGET + list(LEMUR_BROKEN)
    lemur = root / "lemur.jsonl"
    lemur.write_text("".join(json.dumps(by_name[name]) + "\n" for name in names))
    config = root / "check.toml"
    config.write_text(CHECK_CONFIG)
    workdir = root / "runs"
    _invoke("corpus", "import", "--lemur", str(lemur), "--workdir", str(workdir))
    return workdir, config, by_name


def test_corpus_check_stores_each_outcome_resumes_and_exports_the_valid(lemur_workspace, docker_client) -> None:  # type: ignore[no-untyped-def]
    workdir, config, by_name = lemur_workspace
    common = ["--workdir", str(workdir), "--profile", "smoke", "--config", str(config)]
    out = workdir / "valid.jsonl"
    result = CliRunner().invoke(main, ["corpus", "export", "--format", "chat-jsonl", "--valid-only", str(out), *common])
    assert result.exit_code == 1 and "nasloop corpus check" in result.output and not out.exists()

    first = _invoke("corpus", "check", "--limit", "3", *common)  # an interrupted run, in effect
    assert "checked 3 program(s)" in first and "5 unchecked" in first
    rest = _invoke("corpus", "check", *common)
    assert "checked 5 program(s)" in rest and "0 unchecked" in rest
    assert "checked 0 program(s)" in _invoke("corpus", "check", *common)  # nothing is checked twice

    stats = json.loads(_invoke("corpus", "stats", "--json", "--workdir", str(workdir)))
    ((protocol, counts),) = stats["checks"].items()
    assert protocol.startswith(CHECK_PROTOCOL_NAME)
    assert counts == {"ok": len(LEMUR_OK), "params_over_budget": len(LEMUR_OVER_BUDGET), "import": 1,
                      "instantiate": 1, "unchecked": 0}

    from sqlalchemy import select

    from orchestrator.store.schema import Program
    from orchestrator.store.schema import ProgramCheck
    from orchestrator.store.database import open_database

    db = open_database(workdir)
    with db.transaction() as session:
        rows = {name: check for name, check in session.execute(
            select(Program.name, ProgramCheck).join(ProgramCheck, ProgramCheck.program_id == Program.id))}
    db.close()
    for name in LEMUR_OK:
        assert rows[name].valid and 0 < rows[name].params <= 500_000 and rows[name].image.startswith("nasloop-sandbox:")
    for name, kind in {**{n: "params_over_budget" for n in LEMUR_OVER_BUDGET}, **LEMUR_BROKEN}.items():
        assert not rows[name].valid and rows[name].failure == kind, (name, rows[name].error)
    assert "torchvision" in rows["ResNet"].error

    assert "wrote 8 chat examples" in _invoke("corpus", "export", "--format", "chat-jsonl", "--valid-only",
                                              str(out), *common)
    answers = [json.loads(line)["messages"][-1]["content"] for line in out.read_text().splitlines()]
    assert sorted(set(answers)) == sorted(f"```python\n{by_name[n]['code'].strip()}\n```" for n in LEMUR_OK)

    # Another budget is another protocol: nothing recorded under the first one counts for it.
    other = workdir.parent / "budget.toml"
    other.write_text(CHECK_CONFIG + "param_budget = 1000000\n")
    result = CliRunner().invoke(main, ["corpus", "export", "--format", "chat-jsonl", "--valid-only", str(out),
                                       "--workdir", str(workdir), "--profile", "smoke", "--config", str(other)])
    assert result.exit_code == 1 and "8 corpus program(s) have no check result" in result.output
    assert _leftover_containers(docker_client) == []


def test_evaluate_check_only(tmp_path: Path, docker_client) -> None:  # type: ignore[no-untyped-def]
    output = _invoke("evaluate", "--check-only", "--json", "--profile", "smoke", "--workdir", str(tmp_path / "runs"),
                     str(CANDIDATES / "small_cnn.py"))
    (record,) = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert record["valid"] and record["accuracy"] is None and record["params"] > 0
    assert record["protocol"].startswith(CHECK_PROTOCOL_NAME) and record["provenance"]["check_seconds"] == "host"
    assert not (tmp_path / "runs" / "artefacts").exists()  # nothing was trained


def test_assess_samples_counts_parse_valid_and_near_copies(docker_client, sandbox_image, tmp_path) -> None:  # type: ignore[no-untyped-def]
    novel = next(c for c in CASES if c.name == "benign").source().decode()
    texts = [
        f"Here it is:\n```python\n{SMALL_CNN}\n```\n",  # a copy of the training program: valid, near-copy
        f"```python\n{novel}\n```",  # valid and new
        "```python\n" + SMALL_CNN.replace("def forward(self, x):", "def forward(self, x):\n        x = x[:, :1]") + "```",
        "```python\nclass Net(:\n```",  # does not parse
    ]
    samples = [Sample(i, text, 10, 100, "stop" if i < 3 else "length", 1.0, 4, 0) for i, text in enumerate(texts)]
    config = load_config("smoke")
    with _checker(docker_client, sandbox_image, tmp_path) as checker:
        report = assess_samples(samples, [SMALL_CNN], config.novelty, checker, jobs=2)
    assert (report["samples"], report["parsed"], report["has_net"], report["stopped"]) == (4, 3, 3, 3)
    assert report["valid"] == 2 and report["failures"] == {"forward": 1, "syntax": 1}
    assert report["near_copies"] == 1 and report["assessed_for_novelty"] == "valid"
    line = _check_line(report)  # what `nasloop llm tiny-model` prints
    assert "3/4 parse" in line and "2/4 valid (every check at 3x32x32, <= 500,000 parameters)" in line
    assert "1 of them not near-copies" in line and "failures: forward 1, syntax 1" in line
    unchecked = assess_samples(samples, [SMALL_CNN], config.novelty, None, jobs=1)
    assert unchecked["valid"] is None and unchecked["near_copies"] == 2  # the copy and the broken copy


@pytest.mark.slow
def test_every_lemur_program_valid_before_the_host_budget_stays_valid(docker_client, sandbox_image, lemur_records,
                                                                      tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The host now counts every tensor of the weights file (parameters and buffers): each of the 74
    LEMUR programs that was valid at 3x32x32 before must still pass, with its buffers inside the allowance."""
    names = [line for line in VALID_LEMUR.read_text().splitlines() if line and not line.startswith("#")]
    by_name = {r["name"]: r for r in lemur_records}
    submissions = [Submission(i, by_name[name]["code"].encode(), name) for i, name in enumerate(names)]
    with _checker(docker_client, sandbox_image, tmp_path, timeout_s=120.0) as checker:
        results = evaluate_many(checker, submissions, jobs=2)
    failed = [(r.name, r.failure, (r.error or "")[-200:]) for r in results if not r.valid]
    assert not failed, failed
    evaluation = load_config("smoke").evaluation
    assert all(r.params <= evaluation.param_budget for r in results)
    assert all(r.weights_elements <= evaluation.param_budget + evaluation.buffer_allowance for r in results)
    assert max(r.weights_elements - r.params for r in results) > 0  # some carry BatchNorm buffers
