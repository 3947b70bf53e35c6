"""The LLM side end to end on a micro model built here in seconds: tiny-model CLI, seeded sampling,
the generate entry point (with resume), LoRA fine-tuning via `accelerate launch`, adapters.

The micro model is the real tiny-model code path with a much smaller architecture and budget, trained on
programs written below (no shared data needed); it does not write good code, it exercises the code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from click.testing import CliRunner  # noqa: E402

from llm import extract_code  # noqa: E402
from contracts.llm import ADAPTER_METADATA_FILE, Decoding, read_samples  # noqa: E402
from llm.prompt import chat_example, corpus_tasks, generation_task, prompt_messages  # noqa: E402
from orchestrator.generator import jobs as llm_jobs, runner as llm_runner  # noqa: E402
from orchestrator.commands.llm import llm as llm_group  # noqa: E402
from orchestrator.config import load_config  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent

MICRO_PROFILE = """
[tiny_model]
vocab_size = 1024
layers = 2
hidden_size = 64
intermediate_size = 128
heads = 2
context = 512
steps = 40
batch_size = 4
lr = 5e-3
warmup_steps = 4

[generation]
max_new_tokens = 40
batch_size = 2
candidates_per_cycle = 4

[finetune]
lr = 5e-3
warmup_steps = 1
max_seq_length = 2048
"""


def program(width: int, depth: int, activation: str) -> str:
    """A valid program in the API contract; the corpus varies width, depth and activation."""
    layers = []
    channels = "in_shape[1]"
    for i in range(depth):
        layers.append(f"nn.Conv2d({channels}, {width * (i + 1)}, 3, padding=1), nn.BatchNorm2d({width * (i + 1)}), "
                      f"nn.{activation}(), nn.MaxPool2d(2),")
        channels = str(width * (i + 1))
    body = "\n            ".join(layers)
    return textwrap.dedent(f"""\
        import torch
        import torch.nn as nn


        def supported_hyperparameters():
            return {{'lr', 'momentum'}}


        class Net(nn.Module):
            def __init__(self, in_shape, out_shape, prm, device):
                super().__init__()
                self.device = device
                self.features = nn.Sequential(
                    {body}
                )
                self.pool = nn.AdaptiveAvgPool2d(1)
                self.classifier = nn.Linear({channels}, out_shape[0])

            def forward(self, x):
                return self.classifier(torch.flatten(self.pool(self.features(x)), 1))

            def train_setup(self, prm):
                self.to(self.device)
                self.criteria = nn.CrossEntropyLoss().to(self.device)
                self.optimizer = torch.optim.SGD(self.parameters(), lr=prm['lr'], momentum=prm['momentum'])

            def learn(self, train_data):
                self.train()
                for inputs, labels in train_data:
                    inputs, labels = inputs.to(self.device), labels.to(self.device)
                    self.optimizer.zero_grad()
                    loss = self.criteria(self(inputs), labels)
                    loss.backward()
                    self.optimizer.step()
        """)


PROGRAMS = [program(w, d, a) for w in (8, 16, 24) for d in (1, 2, 3) for a in ("ReLU", "GELU")]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("llm")
    profile = root / "micro.toml"
    profile.write_text(MICRO_PROFILE)
    lemur_like = root / "programs.jsonl"
    lemur_like.write_text("".join(json.dumps({"name": f"p{i}", "code": c}) + "\n" for i, c in enumerate(PROGRAMS)))
    chat = root / "chat.jsonl"
    budget = load_config("smoke", profile).evaluation.param_budget
    chat.write_text("".join(json.dumps({"messages": chat_example(t, c)}) + "\n"
                            for c in PROGRAMS[:4] for t in corpus_tasks(budget)))
    return {"root": root, "profile": profile, "programs": lemur_like, "chat": chat}


@pytest.fixture(scope="module")
def tiny(workspace: dict[str, Path]) -> Path:
    """The micro model, built through the CLI into the smoke profile's place (WORKDIR/models/tiny)."""
    out = llm_jobs.tiny_model_dir(workspace["root"])
    result = CliRunner().invoke(llm_group, [
        "tiny-model", str(out), "--corpus", str(workspace["programs"]), "--samples", "2", "--no-sandbox",
        "--workdir", str(workspace["root"]), "--profile", "smoke", "--config", str(workspace["profile"])])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out


@pytest.fixture(scope="module")
def config(workspace: dict[str, Path]):
    return load_config("smoke", workspace["profile"])


def test_tiny_model_is_a_llama_with_a_chat_template_and_a_report(tiny: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer

    assert AutoConfig.from_pretrained(tiny).model_type == "llama"
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    assert tokenizer.decode(tokenizer(PROGRAMS[0], add_special_tokens=False).input_ids) == PROGRAMS[0]
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                             add_generation_prompt=True)
    assert rendered == "<s><|user|>\nhi<|end|>\n<|assistant|>\n"
    report = json.loads((tiny / "tiny-model.json").read_text())
    assert report["spec"]["layers"] == 2 and report["trained_tokens"] == 40 * 4 * 512
    losses = [entry["loss"] for entry in report["losses"]]
    assert losses[-1] < losses[0] - 1.0  # it learnt something from the corpus
    check = report["check"]
    assert check["samples"] == 2 and 0 <= check["parsed"] <= 2
    assert check["valid"] is None and check["assessed_for_novelty"] == "parsed"  # --no-sandbox
    assert check["decoding"]["temperature"] == 0.8 and check["decoding"]["max_new_tokens"] == 40


def test_tiny_model_reads_a_lemur_export(workspace: dict[str, Path]) -> None:
    from llm.tiny import read_corpus

    examples = read_corpus(workspace["programs"], 500_000)
    assert len(examples) == 2 * len(PROGRAMS)  # the paper's CIFAR-10 + MNIST pair per program
    assert examples[0] == chat_example(corpus_tasks(500_000)[0], PROGRAMS[0])
    assert len(read_corpus(workspace["chat"], 500_000)) == 8


def test_each_sample_draws_the_same_whatever_it_shares_a_batch_with(tiny: Path) -> None:
    """Continuous batching seeds each sample on its own: one, two or four slots, a resumed job that
    draws only some indices, the same index gives the same completion."""
    from llm.sampling import SampleRequest, TransformersBackend

    decoding = Decoding(temperature=0.8, top_k=50, top_p=0.9, do_sample=True, max_new_tokens=40, seed=0)
    messages = prompt_messages(generation_task(500_000))
    texts = {}
    for slots in (1, 2, 4):
        backend = TransformersBackend(str(tiny), decoding, batch_size=slots, device="cpu")
        drawn = [s for b in backend.generate([SampleRequest(messages, 6, 3)]) for s in b]
        texts[slots] = {s.index: s.text for s in drawn}
        assert backend.counters.computed == backend.counters.useful  # no step spent on a finished sample
    assert texts[1] == texts[2] == texts[4] and len(set(texts[1].values())) > 1
    resumed = TransformersBackend(str(tiny), decoding, batch_size=2, device="cpu")
    rest = [s for b in resumed.generate([SampleRequest(messages, 6, 3, done=frozenset({0, 2, 3}))]) for s in b]
    assert {s.index: s.text for s in rest} == {i: texts[1][i] for i in (1, 4, 5)}
    static = TransformersBackend(str(tiny), decoding, batch_size=4, device="cpu", batching="static")
    batches = list(static.generate([SampleRequest(messages, 6, 3)]))
    assert [len(b) for b in batches] == [4, 2] and static.counters.useful <= static.counters.computed


def test_continuous_decoding_equals_recomputing_every_step(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-place cache of continuous batching (rows refilled, right-aligned, columns dropped and moved
    as capacity runs out) gives each sample what a cache-free decode of that sample alone gives: the
    whole sequence recomputed each step, the same per-sample generator (float64: no ties to flip)."""
    import torch

    from llm.batching import _Store, decode, sample_rows
    from llm.models import prompt_token_ids
    from llm.sampling import TransformersBackend, sample_seed

    decoding = Decoding(temperature=0.8, top_k=50, top_p=0.9, do_sample=True, max_new_tokens=80, seed=0)
    backend = TransformersBackend(str(tiny), decoding, batch_size=3, device="cpu")
    model = backend.model.double()
    prompt = torch.tensor([prompt_token_ids(backend.tokenizer, prompt_messages(generation_task(500_000)))])
    seeds = [sample_seed(7, i) for i in range(7)]
    full: list[bool] = []
    open_column = _Store.open_column
    monkeypatch.setattr(_Store, "open_column", lambda store: (full.append(store.end == store.mask.shape[1]),
                                                              open_column(store))[1])
    got = {f.index: f.tokens for f in decode(model, prompt, range(7), seeds, 3, decoding, backend.eos_ids)}
    with torch.inference_mode():
        for index, seed in enumerate(seeds):
            generator, tokens = torch.Generator().manual_seed(seed), []
            while not tokens or (tokens[-1] not in backend.eos_ids and len(tokens) < decoding.max_new_tokens):
                logits = model(input_ids=torch.cat([prompt, torch.tensor([tokens], dtype=torch.long)], dim=1)).logits
                tokens += sample_rows(logits[:, -1], decoding, [generator])
            assert got[index] == tokens, index
    assert len({len(t) for t in got.values()}) > 1  # ragged: rows ended and were refilled at different steps
    assert any(full)  # and the capacity ran out: the live columns were copied to new tensors


def test_sampling_is_seeded_and_keeps_raw_text_counts_and_reasons(tiny: Path, config) -> None:
    from llm.sampling import SampleRequest, TransformersBackend

    decoding = Decoding(temperature=0.8, top_k=50, top_p=0.9, do_sample=True, max_new_tokens=24, seed=0)
    backend = TransformersBackend(str(tiny), decoding, batch_size=2, device="cpu")
    messages = prompt_messages(generation_task(500_000))

    def draw(seed: int, n: int = 3) -> list:
        return [s for batch in backend.generate([SampleRequest(messages, n, seed)]) for s in batch]

    first, again, other = (sorted(draw(seed), key=lambda s: s.index) for seed in (1, 1, 2))
    assert [s.text for s in first] == [s.text for s in again]
    assert [s.text for s in first] != [s.text for s in other]
    assert [s.index for s in first] == [0, 1, 2] and [s.batch_size for s in first] == [2, 2, 2]  # two slots
    for sample in first:
        assert sample.finish_reason in ("stop", "length")
        assert 0 < sample.completion_tokens <= 24 and sample.prompt_tokens > 10
        assert (sample.finish_reason == "length") == (sample.completion_tokens == 24)
        assert sample.seconds > 0
    # A request resumed at a batch boundary draws what the uninterrupted request drew.
    resumed = [s for b in backend.generate([SampleRequest(messages, 1, 1, first_index=2)]) for s in b]
    assert resumed[0].text == first[2].text


def test_generate_entry_point_writes_samples_and_resumes(tiny: Path, config, workspace) -> None:
    from llm.generate import main

    out = workspace["root"] / "gen"
    job = llm_jobs.generate_job(config, workspace["root"], out, device="cpu")
    assert job.model == str(tiny) and job.num_samples == 4 and job.decoding.temperature == 0.8
    job_path = workspace["root"] / "jobs" / "gen.json"
    from contracts.jobfile import write_job

    write_job(job, job_path)
    assert main([str(job_path)]) == 0
    samples = read_samples(out)
    assert [s.index for s in samples] == [0, 1, 2, 3]
    summary = json.loads((out / "generation.json").read_text())
    assert summary["prompt_sha256"] == job.prompt_sha256 and summary["drawn"] == 4
    assert summary["revision"].startswith("local-") and summary["libraries"]["transformers"]

    # Kill mid-way: one whole batch and half a line of the next survive; the rerun completes identically.
    lines = (out / "samples.jsonl").read_text().splitlines()
    (out / "samples.jsonl").write_text(lines[0] + "\n" + lines[1] + "\n" + lines[2][: len(lines[2]) // 2])
    assert main([str(job_path)]) == 0

    def untimed(rows: list) -> list[dict]:
        return [{k: v for k, v in row.as_dict().items() if k != "seconds"} for row in rows]

    assert untimed(read_samples(out)) == untimed(samples)
    assert json.loads((out / "generation.json").read_text())["resumed_from"] == 2


def test_finetune_via_accelerate_lowers_loss_and_writes_a_loadable_adapter(tiny: Path, config,
                                                                            workspace) -> None:
    from llm.sampling import SampleRequest, TransformersBackend

    adapter = workspace["root"] / "adapters" / "cycle-1"
    job = llm_jobs.finetune_job(config, workspace["root"], workspace["chat"], adapter, max_steps=8,
                                  measure_loss=True, device="cpu")
    llm_runner.run_local(job, workspace["root"] / "jobs" / "ft.json", timeout=600)
    meta = json.loads((adapter / ADAPTER_METADATA_FILE).read_text())
    assert meta["mean_loss_after"] < meta["mean_loss_before"]
    assert meta["steps"] == 8 and len(meta["loss_curve"]) == 8
    assert meta["lora_targets"] == dict.fromkeys(config.finetune.target_modules, 2)
    assert meta["hyperparameters"]["lora_r"] == 32 and meta["effective_optimizer"] == "adamw_torch"
    assert meta["corpus"]["examples"] == 8 and meta["corpus"]["skipped_over_length"] == 0
    assert meta["base_model"]["revision"].startswith("local-") and meta["parent_adapter"] is None
    assert meta["libraries"]["peft"] and meta["train_seconds"] > 0
    assert not adapter.with_name(adapter.name + ".partial").exists()

    decoding = Decoding(temperature=0.8, top_k=50, top_p=0.9, do_sample=True, max_new_tokens=24, seed=0)
    messages = prompt_messages(generation_task(config.evaluation.param_budget))
    # The sampling backend applies the adapter: its next-token distribution after the prompt moved.
    # (Each sample's draws are coupled across models by its seed, so a few tokens of text may agree.)
    import torch

    from llm.models import render_prompt

    distributions = {}
    for name, path in (("base", None), ("adapted", adapter)):
        backend = TransformersBackend(str(tiny), decoding, batch_size=2, adapter=str(path) if path else None,
                                      device="cpu")
        ids = backend.tokenizer(render_prompt(backend.tokenizer, messages), add_special_tokens=False,
                                return_tensors="pt").input_ids
        with torch.inference_mode():
            distributions[name] = backend.model(input_ids=ids).logits[0, -1].softmax(-1)
        assert len([s for b in backend.generate([SampleRequest(messages, 2, 7)]) for s in b]) == 2
    assert (distributions["adapted"] - distributions["base"]).abs().sum() > 1e-3

    # The next cycle continues from this adapter (in-process run of the same entry point).
    from llm.finetune import run

    child = workspace["root"] / "adapters" / "cycle-2"
    child_job = llm_jobs.finetune_job(config, workspace["root"], workspace["chat"], child,
                                        previous_adapter=adapter, max_steps=2, measure_loss=True, device="cpu")
    child_meta = run(child_job)
    assert child_meta.parent_adapter["path"] == str(adapter.resolve())
    assert child_meta.parent_adapter["adapter_sha256"] == meta["adapter_sha256"]
    assert child_meta.mean_loss_before == pytest.approx(meta["mean_loss_after"], rel=1e-4)


def test_finetune_refuses_over_length_examples_and_leaves_no_adapter(tiny: Path, workspace) -> None:
    from llm.finetune import FinetuneError, run

    strict = load_config("smoke", workspace["profile"],
                         overrides={"finetune": {"max_seq_length": 64, "over_length": "error"}})
    out = workspace["root"] / "adapters" / "too-long"
    with pytest.raises(FinetuneError, match="8 example\\(s\\) exceed max_seq_length=64"):
        run(llm_jobs.finetune_job(strict, workspace["root"], workspace["chat"], out, device="cpu"))
    assert not out.exists() and not out.with_name("too-long.partial").exists()


def test_finetune_rejects_unknown_targets_an_existing_output_and_a_mismatched_parent(tiny: Path,
                                                                                   workspace) -> None:
    from transformers import AutoModelForCausalLM

    from llm.finetune import FinetuneError, _check_parent, resolve_targets

    model = AutoModelForCausalLM.from_pretrained(tiny)
    assert resolve_targets(model, ["q_proj", "down_proj"]) == {"q_proj": 2, "down_proj": 2}
    with pytest.raises(FinetuneError, match="c_attn match no linear layer"):
        resolve_targets(model, ["q_proj", "c_attn"])

    from llm.finetune import run

    existing = workspace["root"] / "adapters" / "exists"
    existing.mkdir(parents=True)
    config = load_config("smoke", workspace["profile"])
    with pytest.raises(FinetuneError, match="already exists"):
        run(llm_jobs.finetune_job(config, workspace["root"], workspace["chat"], existing, device="cpu"))

    parent = workspace["root"] / "adapters" / "r8"
    parent.mkdir()
    (parent / "adapter_config.json").write_text(json.dumps({"r": 8, "lora_alpha": 32, "lora_dropout": 0.05,
                                                            "target_modules": ["q_proj"]}))
    with pytest.raises(FinetuneError, match="LoRA settings"):
        _check_parent(parent, llm_jobs.finetune_job(config, workspace["root"], workspace["chat"],
                                                      workspace["root"] / "x").hyperparameters)


def test_finetune_on_cuda_never_falls_back_silently(monkeypatch: pytest.MonkeyPatch) -> None:
    """On CUDA the profile's optimizer and precision run, or the job stops naming what is missing."""
    import torch

    from llm.finetune import FinetuneError, _settings_for, effective_settings

    with pytest.raises(FinetuneError, match="paged_adamw_8bit needs bitsandbytes.*optimizer = \"adamw_torch\""):
        effective_settings("bf16", "paged_adamw_8bit", cuda=True, bf16_supported=True, bitsandbytes=False)
    with pytest.raises(FinetuneError, match="bf16 needs a GPU that supports it"):
        effective_settings("bf16", "adamw_torch", cuda=True, bf16_supported=False, bitsandbytes=True)
    assert effective_settings("bf16", "paged_adamw_8bit", cuda=True, bf16_supported=True,
                              bitsandbytes=True) == ("bf16", "paged_adamw_8bit", [])
    # The job's own probe: bitsandbytes that does not import (here: blocked) is the same clear error.
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    job = type("Job", (), {"hyperparameters": type("HP", (), {"precision": "bf16", "optimizer": "paged_adamw_8bit"})})
    with pytest.raises(FinetuneError, match="needs bitsandbytes, which does not import here"):
        _settings_for(job, cuda=True)  # type: ignore[arg-type]


def test_finetune_on_the_cpu_falls_back_explicitly_and_says_so() -> None:
    from llm.finetune import effective_settings

    precision, optimizer, notes = effective_settings("bf16", "paged_adamw_8bit", cuda=False, bf16_supported=False,
                                                     bitsandbytes=True)
    assert (precision, optimizer) == ("fp32", "adamw_torch")
    assert notes == ["precision bf16 -> fp32 on CPU",
                     "optimizer paged_adamw_8bit -> adamw_torch on CPU (bitsandbytes' paged 8-bit optimisers need CUDA)"]
    assert effective_settings("fp32", "adamw_torch", cuda=False, bf16_supported=False,
                              bitsandbytes=False) == ("fp32", "adamw_torch", [])  # nothing to fall back from


def test_missing_tiny_model_and_offline_hub_model_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(llm_jobs.LLMRunError, match="nasloop llm tiny-model"):
        llm_jobs.resolve_model("tiny", tmp_path)
    code = ("from llm.models import load_tokenizer, ModelNotFound\n"
            "try:\n    load_tokenizer('nasloop-test/no-such-model')\n"
            "except ModelNotFound as e:\n    print('NOTFOUND', e)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                            cwd=REPO_ROOT, timeout=120)
    assert "NOTFOUND" in result.stdout and "HF_HUB_OFFLINE" in result.stdout, result.stderr[-2000:]
    assert time.perf_counter() - start < 60


def _llm_image(docker_client):
    from orchestrator.containers.client import ImageError
    from orchestrator.containers.images import resolve

    try:
        return resolve(docker_client, "llm")
    except ImageError as exc:
        if os.environ.get("NASLOOP_REQUIRE_DOCKER") == "1":
            pytest.fail(f"NASLOOP_REQUIRE_DOCKER=1 but {exc}")
        pytest.skip(str(exc))


@pytest.mark.docker
def test_generate_and_finetune_in_the_llm_container(tiny: Path, config, workspace, docker_client) -> None:
    image = _llm_image(docker_client)
    root = workspace["root"]
    out = root / "container-gen"
    job = llm_jobs.generate_job(config, root, out, num_samples=2, device="cpu")
    llm_runner.run_in_container(job, root, image.tag, client=docker_client, timeout=600)
    samples = read_samples(out)
    assert [s.index for s in samples] == [0, 1]
    assert all(isinstance(extract_code(s.text), (str, type(None))) for s in samples)

    adapter = root / "adapters" / "container-cycle-1"
    ft = llm_jobs.finetune_job(config, root, workspace["chat"], adapter, max_steps=4, measure_loss=True,
                                 device="cpu")
    logs = llm_runner.run_in_container(ft, root, image.tag, client=docker_client, timeout=600)
    meta = json.loads((adapter / ADAPTER_METADATA_FILE).read_text())
    assert meta["mean_loss_after"] < meta["mean_loss_before"], logs[-2000:]
    assert meta["base_model"]["model"] == "/workspace/models/tiny"
    assert (adapter / "adapter_model.safetensors").stat().st_uid == os.getuid()


def test_cli_generate_local(tiny: Path, workspace) -> None:
    out = workspace["root"] / "cli-gen"
    result = CliRunner().invoke(llm_group, [
        "generate", "--local", "--out", str(out), "-n", "2", "--profile", "smoke",
        "--config", str(workspace["profile"]), "--workdir", str(workspace["root"])])
    assert result.exit_code == 0, result.output
    assert f"2 samples in {out}" in result.output
    assert [s.index for s in read_samples(out)] == [0, 1]


@pytest.mark.docker
def test_an_llm_container_left_by_a_killed_orchestrator_is_swept(tiny: Path, config, workspace,
                                                                 docker_client) -> None:
    """SIGKILL the process that runs an LLM job: its container outlives it, carrying the managed
    labels; the next orchestrator start (every command sweeps first) removes it."""
    from orchestrator.containers.labels import MANAGED_LABEL, ROLE_LABEL, sweep_orphans

    image = _llm_image(docker_client)
    root = workspace["root"]
    ft = llm_jobs.finetune_job(config, root, workspace["chat"], root / "adapters" / "killed", max_steps=10_000,
                               device="cpu")
    code = ("import sys, docker\n"
            "from contracts.jobfile import read_job\n"
            "from contracts.llm import JOB_KINDS\n"
            "from orchestrator.generator.runner import run_in_container\n"
            f"job = read_job({str(root / 'killed-job.json')!r}, JOB_KINDS)\n"
            f"run_in_container(job, {str(root)!r}, {image.tag!r}, client=docker.from_env())\n")
    from contracts.jobfile import write_job

    write_job(ft, root / "killed-job.json")
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT)
    filters = {"label": [f"{MANAGED_LABEL}=1", f"{ROLE_LABEL}=llm"]}
    deadline = time.monotonic() + 120
    while not docker_client.containers.list(filters=filters) and time.monotonic() < deadline:
        assert process.poll() is None, "the orchestrator process ended before its LLM container ran"
        time.sleep(0.5)
    assert docker_client.containers.list(filters=filters), "no LLM container appeared"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert docker_client.containers.list(all=True, filters=filters)  # left behind, still running
    assert sweep_orphans(docker_client) >= 1
    assert docker_client.containers.list(all=True, filters=filters) == []
