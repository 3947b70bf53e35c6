"""The prompt (golden), the job contract and the host-side job building: no torch needed.

Golden files live in tests/fixtures/llm/; after an intended change of the template (a new version),
regenerate them with NASLOOP_UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llm import extract_code
from contracts.jobfile import read_job, write_job
from contracts.llm import JOB_KINDS, Decoding, LoraHyperparameters, read_samples
from llm.prompt import chat_example, corpus_tasks, generation_task, load_template, prompt_messages
from llm.sampling import SampleRequest, batch_seed, batches
from llm.tiny import CHAT_TEMPLATE, TinyModelSpec
from orchestrator.generator import jobs as llm_jobs, runner as llm_runner
from orchestrator.config import FinetuneConfig, TinyModelConfig, load_config

REPO_ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "fixtures" / "llm"
# The v1 template's hash, recorded with every generation: editing v1's text must fail here.
PROMPT_V1_SHA256 = "767c4a96b1a110391d30dc39919924588da90b7764305cecba9d69d7f64aaa54"


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("NASLOOP_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from its golden file"


def test_generation_prompt_matches_golden() -> None:
    messages = prompt_messages(generation_task(500_000))
    _golden("prompt-v1-cifar10.json", json.dumps(messages, indent=1) + "\n")


def test_prompt_rendered_with_the_tiny_chat_template_matches_golden() -> None:
    jinja2 = pytest.importorskip("jinja2")
    template = jinja2.Environment().from_string(CHAT_TEMPLATE)
    rendered = template.render(messages=prompt_messages(generation_task(500_000)), bos_token="<s>",
                               add_generation_prompt=True)
    _golden("prompt-v1-cifar10.tiny.txt", rendered)
    assert rendered.startswith("<s><|system|>\nYou are an expert PyTorch") and rendered.endswith("<|assistant|>\n")


def test_template_version_and_hash_are_pinned() -> None:
    template = load_template("v1")
    assert (template.version, template.sha256) == ("v1", PROMPT_V1_SHA256)
    with pytest.raises(ValueError, match="unknown prompt template"):
        load_template("v0")


def test_user_message_tells_the_truth_about_the_task() -> None:
    cifar, mnist = corpus_tasks(500_000)
    assert generation_task(500_000) == cifar
    user = prompt_messages(cifar)[1]["content"]
    for fact in ("CIFAR-10", "(N, 3, 32, 32)", "(1, 3, 32, 32)", "`in_shape[1]` is the number of channels",
                 "32x32 pixels", "logits of shape (N, 10)", "At most 500,000 trainable parameters",
                 "No pretrained weights", "edge-friendly", "`import torch`", "`import torch.nn as nn`",
                 "`supported_hyperparameters()` that returns {'lr', 'momentum'}", "`class Net(nn.Module)`",
                 "`__init__(self, in_shape, out_shape, prm, device)`", "`forward(self, x)`",
                 "`train_setup(self, prm)`", "`learn(self, train_data)`", "no data loading"):
        assert fact in user, fact
    assert "(N, 1, 28, 28)" in prompt_messages(mnist)[1]["content"]
    system = prompt_messages(cifar)[0]["content"]
    assert "expert PyTorch" in system and "single training epoch" in system


def test_chat_example_answers_in_one_python_fence_that_extracts_back() -> None:
    code = "\n\nimport torch\nimport torch.nn as nn\n\nclass Net(nn.Module):\n    pass\n\n"
    example = chat_example(generation_task(1000), code)
    assert [m["role"] for m in example] == ["system", "user", "assistant"]
    assert example[2]["content"] == f"```python\n{code.strip()}\n```"
    assert extract_code(example[2]["content"]) == code.strip()
    assert example[:2] == prompt_messages(generation_task(1000))


def test_llm_package_imports_stay_light() -> None:
    code = ("import sys, llm, llm.prompt, contracts.llm, llm.sampling, llm.tiny, orchestrator.generator.runner\n"
            "heavy = [m for m in ('torch', 'transformers', 'peft', 'accelerate') if m in sys.modules]\n"
            "print(heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT,
                            timeout=60)
    assert result.stdout.strip() == "[]", result.stderr


def test_container_side_settings_mirror_the_profile_sections() -> None:
    def names(cls: type) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    assert names(LoraHyperparameters) == names(FinetuneConfig) - {"continue_from_previous"}
    assert names(TinyModelSpec) == names(TinyModelConfig)


def test_paper_profile_becomes_the_papers_jobs(tmp_path: Path) -> None:
    config = load_config("paper")
    gen = llm_jobs.generate_job(config, tmp_path, tmp_path / "out")
    assert gen.model == "deepseek-ai/deepseek-coder-7b-instruct-v1.5"
    assert dataclasses.astuple(gen.decoding) == (0.2, 50, 0.9, True, 2048, 0)
    assert gen.num_samples == config.generation.candidates_per_cycle and gen.prompt_sha256 == PROMPT_V1_SHA256
    assert gen.messages == prompt_messages(generation_task(500_000)) and gen.max_lora_rank >= 32
    ft = llm_jobs.finetune_job(config, tmp_path, tmp_path / "corpus.jsonl", tmp_path / "adapter")
    hp = ft.hyperparameters
    assert (hp.lora_r, hp.lora_alpha, hp.lora_dropout, hp.epochs, hp.lr) == (32, 32, 0.05, 5, 1e-5)
    assert (hp.per_device_batch_size, hp.grad_accum_steps, hp.warmup_steps) == (1, 4, 20)
    assert (hp.scheduler, hp.optimizer, hp.precision) == ("cosine", "paged_adamw_8bit", "bf16")
    assert set(hp.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj", "gate_proj"}


def test_finetune_continues_from_the_previous_adapter_unless_the_profile_restarts(tmp_path: Path) -> None:
    previous = tmp_path / "adapters" / "cycle-1"
    job = llm_jobs.finetune_job(load_config("paper"), tmp_path, tmp_path / "c.jsonl", tmp_path / "b",
                                  previous_adapter=previous)
    assert job.parent_adapter == str(previous.resolve())
    restart = load_config("paper", overrides={"finetune": {"continue_from_previous": False}})
    job = llm_jobs.finetune_job(restart, tmp_path, tmp_path / "c.jsonl", tmp_path / "b",
                                  previous_adapter=previous)
    assert job.parent_adapter is None


def test_smoke_profile_needs_the_tiny_model_built(tmp_path: Path) -> None:
    config = load_config("smoke")
    with pytest.raises(llm_jobs.LLMRunError, match="tiny-model"):
        llm_jobs.generate_job(config, tmp_path, tmp_path / "out")
    tiny = llm_jobs.tiny_model_dir(tmp_path)
    tiny.mkdir(parents=True)
    (tiny / "config.json").write_text("{}")
    assert llm_jobs.generate_job(config, tmp_path, tmp_path / "out").model == str(tiny)


def test_jobs_round_trip_and_reject_garbage(tmp_path: Path) -> None:
    gen = llm_jobs.generate_job(load_config("paper"), tmp_path, tmp_path / "out", adapter=tmp_path / "a")
    assert read_job(write_job(gen, tmp_path / "g.json"), JOB_KINDS) == gen
    ft = llm_jobs.finetune_job(load_config("paper"), tmp_path, tmp_path / "c.jsonl", tmp_path / "b",
                                 previous_adapter=tmp_path / "a", max_steps=3)
    assert read_job(write_job(ft, tmp_path / "f.json"), JOB_KINDS) == ft
    (tmp_path / "bad.json").write_text(json.dumps({"kind": "GenerateJob", "model": "x"}))
    with pytest.raises(ValueError, match="malformed GenerateJob"):
        read_job(tmp_path / "bad.json", JOB_KINDS)
    (tmp_path / "extra.json").write_text(json.dumps({**json.loads((tmp_path / "g.json").read_text()), "x": 1}))
    with pytest.raises(ValueError, match="unknown field"):
        read_job(tmp_path / "extra.json", JOB_KINDS)
    (tmp_path / "what.json").write_text(json.dumps({"kind": "train"}))
    with pytest.raises(ValueError, match="unknown job kind"):
        read_job(tmp_path / "what.json", JOB_KINDS)
    with pytest.raises(ValueError, match="backend"):
        dataclasses.replace(gen, backend="openai")


def test_read_samples_stops_at_a_torn_line(tmp_path: Path) -> None:
    rest = '"prompt_tokens": 3, "completion_tokens": 1, "finish_reason": "stop", "seconds": 0.1, "batch_size": 2, "seed": 5'
    (tmp_path / "samples.jsonl").write_text(f'{{"index": 1, "text": "b", {rest}}}\n{{"index": 0, "text": "a", {rest}}}\n{{"ind')
    assert [s.text for s in read_samples(tmp_path)] == ["a", "b"]
    assert read_samples(tmp_path / "missing") == []


def test_batches_are_aligned_so_resumed_requests_draw_the_same_seeds() -> None:
    request = SampleRequest([], n=7, seed=0)
    assert batches(request, 3) == [(0, 3), (3, 3), (6, 1)]
    assert batches(SampleRequest([], n=4, seed=0, first_index=3), 3) == [(3, 3), (6, 1)]
    assert batch_seed(0, 3) == batch_seed(0, 3) != batch_seed(0, 6) != batch_seed(1, 3)
    assert 0 <= batch_seed(123, 456) < 2**31


def test_container_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workdir = tmp_path / "runs"
    model = tmp_path / "my-model"
    model.mkdir()
    (workdir / "models" / "tiny").mkdir(parents=True)
    (workdir / "models" / "tiny" / "config.json").write_text("{}")
    config = load_config("smoke")
    job = llm_jobs.generate_job(config, workdir, workdir / "gen" / "c1", adapter=workdir / "adapters" / "c0")
    mounts = llm_runner.container_mounts(job, workdir)
    inner = llm_runner.in_container_job(job, mounts)
    assert (inner.model, inner.output_dir, inner.adapter) == (
        "/workspace/models/tiny", "/workspace/gen/c1", "/workspace/adapters/c0")
    assert set(mounts.volumes()) == {str(workdir.resolve())}

    outside = dataclasses.replace(job, model=str(model))
    mounts = llm_runner.container_mounts(outside, workdir)
    assert llm_runner.in_container_job(outside, mounts).model == "/model"
    assert mounts.volumes()[str(model.resolve())] == {"bind": "/model", "mode": "ro"}
    with pytest.raises(llm_jobs.LLMRunError, match="outside the workspace"):
        llm_runner.in_container_job(dataclasses.replace(job, adapter=str(tmp_path / "elsewhere")), mounts)

    hub = dataclasses.replace(job, model="deepseek-ai/deepseek-coder-7b-instruct-v1.5")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    mounts = llm_runner.container_mounts(hub, workdir)
    assert llm_runner.in_container_job(hub, mounts).model == hub.model
    assert mounts.volumes()[str((tmp_path / "hf").resolve())]["bind"] == "/hf"


def test_decoding_is_the_profile_generation_section() -> None:
    assert {f.name for f in dataclasses.fields(Decoding)} <= {f.name for f in dataclasses.fields(
        type(load_config("paper").generation))}
