"""The LLM service (`llm.serve` and `orchestrator.generator.service`) on a micro model built here: one
process keeps the model across generation jobs with different adapters (and a fine-tune between them)
and draws exactly what the one-shot `llm.generate` draws; a killed service restarted on its directory
resumes its half-done job; in the LLM image, a killed orchestrator's service container is swept. Also
the prompt as token ids with one BOS, the vLLM backend's requests (a stand-in `vllm` module: vLLM itself
needs a GPU), the vLLM image variant's build argument, the compile caches and the fine-tune's kernels."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from orchestrator.containers.images import IMAGES
from orchestrator.containers.wheelhouse import LLM_BACKEND_REQUIREMENTS, requested_packages
from orchestrator.generator.runner import CONTAINER_WORKDIR, cache_environment, container_environment

REPO_ROOT = Path(__file__).resolve().parent.parent


# --- no torch needed -------------------------------------------------------------------------------

def test_compile_caches_live_in_the_workspace() -> None:
    env = container_environment()
    for name in ("VLLM_CACHE_ROOT", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "CUDA_CACHE_PATH", "XDG_CACHE_HOME"):
        assert env[name].startswith(f"{CONTAINER_WORKDIR}/cache/"), name
    assert len(set(cache_environment("/w/cache").values())) == 5  # one directory each


def _pins(path: Path) -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return dict(line.split("==") for line in lines if "==" in line)


def test_the_vllm_build_argument_picks_the_requirements_and_is_part_of_the_llm_images_identity() -> None:
    from orchestrator.containers.client import ImageError

    vllm = requested_packages({"LLM_BACKEND": "vllm"})
    assert str(LLM_BACKEND_REQUIREMENTS["vllm"]) in vllm and str(LLM_BACKEND_REQUIREMENTS["transformers"]) not in vllm
    assert str(LLM_BACKEND_REQUIREMENTS["transformers"]) in requested_packages({})
    with pytest.raises(ImageError, match="LLM_BACKEND"):
        requested_packages({"LLM_BACKEND": "tgi"})
    # A vLLM built against the image's own torch, and the rest of the LLM stack unchanged but transformers.
    plain, with_vllm = _pins(LLM_BACKEND_REQUIREMENTS["transformers"]), _pins(LLM_BACKEND_REQUIREMENTS["vllm"])
    assert with_vllm["torch"] == plain["torch"] and "vllm" in with_vllm
    assert {k: v for k, v in with_vllm.items() if k not in ("vllm", "transformers")} == {
        k: v for k, v in plain.items() if k != "transformers"}
    # The Dockerfile declares the argument (so it is passed and hashed into the llm image's tag) and
    # picks the requirements file by it; the sandbox image does not declare it (never rebuilt by it).
    assert "LLM_BACKEND" in IMAGES["llm"].declared_args() and "LLM_BACKEND" not in IMAGES["sandbox"].declared_args()
    dockerfile = (REPO_ROOT / IMAGES["llm"].dockerfile).read_text()
    assert "vllm) requirements=/src/requirements-vllm.txt" in dockerfile
    assert "images/llm/requirements-vllm.txt" in IMAGES["llm"]._files()
    # `make images LLM_BACKEND=vllm` hands it to `nasloop images wheelhouse` and `build`, beside any others.
    probe = ["make", "-s", "--no-print-directory", "-C", str(REPO_ROOT), "--eval", 'probe: ; @echo "$$IMAGE_BUILD_ARGS"',
             "probe"]
    out = subprocess.run([*probe, "LLM_BACKEND=vllm", "IMAGE_BUILD_ARGS=X='a b'"], capture_output=True, text=True)
    assert out.stdout.strip() == "X='a b' LLM_BACKEND=vllm", out.stderr
    assert subprocess.run(probe, capture_output=True, text=True).stdout.strip() == ""


def test_fused_kernels_on_cuda_only() -> None:
    pytest.importorskip("transformers")
    from llm.finetune import checkpointing_arguments, kernel_settings

    assert kernel_settings("adamw_torch", cuda=True) == ("adamw_torch_fused",
                                                         {"attention": "sdpa", "optimizer": "adamw_torch_fused"})
    assert kernel_settings("paged_adamw_8bit", cuda=True) == ("paged_adamw_8bit",
                                                              {"attention": "sdpa", "optimizer": "paged_adamw_8bit"})
    assert kernel_settings("adamw_torch", cuda=False) == ("adamw_torch", {})  # the CPU path unchanged
    arguments = checkpointing_arguments(True)
    assert list(arguments.values()) == [True, {"use_reentrant": False}]
    from transformers import TrainingArguments

    assert set(arguments) <= set(TrainingArguments.__dataclass_fields__)


# --- the micro model -------------------------------------------------------------------------------

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from contracts.llm import ADAPTER_METADATA_FILE, read_samples  # noqa: E402
from contracts.service import ServicePaths, read_status  # noqa: E402
from llm.prompt import generation_task, prompt_messages  # noqa: E402
from orchestrator.config import load_config  # noqa: E402
from orchestrator.generator import jobs as llm_jobs  # noqa: E402
from orchestrator.generator.jobs import LLMRunError  # noqa: E402
from orchestrator.generator.service import start_local_service  # noqa: E402
from tests.test_llm_model import MICRO_PROFILE, PROGRAMS  # noqa: E402


@pytest.fixture(scope="module")
def micro(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A micro model at WORKDIR/models/tiny (a few training steps: it exercises the code, nothing more)
    and two LoRA adapters with random, different weights."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from llm.tiny import TinyModelSpec, build_tiny_model
    from orchestrator.config import as_dict

    root = tmp_path_factory.mktemp("service")
    (root / "micro.toml").write_text(MICRO_PROFILE)
    config = load_config("smoke", root / "micro.toml")
    programs = root / "programs.jsonl"
    programs.write_text("".join(json.dumps({"code": c}) + "\n" for c in PROGRAMS))
    spec = dataclasses.replace(TinyModelSpec(**as_dict(config.tiny_model)), steps=4)
    model_dir = llm_jobs.tiny_model_dir(root)
    build_tiny_model(model_dir, programs, spec, config.evaluation.param_budget)
    adapters = {}
    for seed in (1, 2):
        torch.manual_seed(seed)
        peft = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), LoraConfig(
            r=config.finetune.lora_r, lora_alpha=config.finetune.lora_alpha, lora_dropout=config.finetune.lora_dropout,
            target_modules=list(config.finetune.target_modules), task_type="CAUSAL_LM"))
        with torch.no_grad():
            for name, parameter in peft.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0.0, 0.05)
        adapters[seed] = root / "adapters" / f"random-{seed}"
        peft.save_pretrained(adapters[seed])
    chat = root / "chat.jsonl"
    from llm.prompt import chat_example, corpus_tasks

    chat.write_text("".join(json.dumps({"messages": chat_example(t, c)}) + "\n"
                            for c in PROGRAMS[:2] for t in corpus_tasks(config.evaluation.param_budget)))
    return {"root": root, "config": config, "model": model_dir, "adapters": adapters, "chat": chat}


def _untimed(samples: list) -> list[dict]:
    return [{k: v for k, v in s.as_dict().items() if k != "seconds"} for s in samples]


def _one_shot(job) -> list:  # type: ignore[no-untyped-def]
    """What `python -m llm.generate` draws for `job` (in this process), into a directory of its own."""
    from llm.generate import run

    alone = dataclasses.replace(job, output_dir=job.output_dir + "-one-shot")
    run(alone)
    return read_samples(Path(alone.output_dir))


def test_the_prompt_goes_to_a_backend_as_token_ids_with_one_bos(micro: dict) -> None:
    """Built once by the chat template (which holds the BOS); a Llama-like tokenizer that adds a BOS of
    its own when it tokenizes text would put a second one in front of a text prompt."""
    from tokenizers import processors

    from llm.models import load_tokenizer, prompt_token_ids, render_prompt

    tokenizer = load_tokenizer(str(micro["model"]))
    messages = prompt_messages(generation_task(500_000))
    ids = prompt_token_ids(tokenizer, messages)
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
    assert ids == tokenizer(render_prompt(tokenizer, messages), add_special_tokens=False).input_ids
    bos = tokenizer.bos_token
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, tokenizer.bos_token_id)])  # as Llama's tokenizers do
    assert tokenizer(render_prompt(tokenizer, messages)).input_ids.count(tokenizer.bos_token_id) == 2
    assert prompt_token_ids(tokenizer, messages) == ids


def test_one_service_process_serves_every_job_from_one_model_load(micro: dict) -> None:
    """Generation jobs with two adapters, the base model and a fresh fine-tune's adapter, a fine-tune
    between them: one model load, and every generation job draws exactly what the one-shot path draws."""
    root, config, adapters = micro["root"], micro["config"], micro["adapters"]

    def generation(name: str, adapter: Path | None):  # type: ignore[no-untyped-def]
        return llm_jobs.generate_job(config, root, root / "served" / name, adapter=adapter, num_samples=3,
                                     device="cpu")

    trained = root / "adapters" / "served-finetune"
    plan = [generation("adapter-1", adapters[1]), generation("adapter-2", adapters[2]), generation("base", None),
            llm_jobs.finetune_job(config, root, micro["chat"], trained, max_steps=2, device="cpu"),
            generation("trained", trained), generation("adapter-1-again", adapters[1])]
    lines: list[str] = []
    service = start_local_service(root)
    try:
        for number, job in enumerate(plan):
            status = service.run(job, log_file=root / "served-logs" / f"{number}.log", on_line=lines.append,
                                 timeout=300)
            assert status.state == "done" and status.exit_code == 0
        state = service.state()
        assert state is not None and state.model_loads == 1 and state.jobs_done == len(plan)
        assert state.engine is not None and state.engine["adapter"] == str(adapters[1].resolve())
    finally:
        service.close()
    assert service.process.exit_code() == 0 and service.state().state == "stopped"  # type: ignore[union-attr]
    assert (trained / ADAPTER_METADATA_FILE).is_file()
    logs = {number: (root / "served-logs" / f"{number}.log").read_text() for number in range(len(plan))}
    loads = [number for number, job in enumerate(plan) if hasattr(job, "num_samples") and "model: loading" in logs[number]]
    assert loads == [0] and all("already loaded" in logs[n] for n in (1, 2, 4, 5))  # loaded by the first job only
    assert len(lines) == sum(len(text.splitlines()) for text in logs.values())  # each job's lines, to both
    assert "finetune: step 2/2" in logs[3] and "sleeps while the fine-tune runs" in logs[3]
    drawn = {}
    for job in plan:
        if hasattr(job, "num_samples"):
            served = read_samples(Path(job.output_dir))
            assert [s.index for s in served] == [0, 1, 2]
            assert _untimed(served) == _untimed(_one_shot(job)), job.output_dir
            drawn[Path(job.output_dir).name] = [s.text for s in served]
            summary = json.loads((Path(job.output_dir) / "generation.json").read_text())
            assert summary["service"]["model_loads"] == 1
    assert drawn["adapter-1"] == drawn["adapter-1-again"]  # switching adapters leaves the base weights exact
    assert len({tuple(texts) for texts in drawn.values()}) >= 3  # the adapters do change what is drawn


def test_a_killed_service_restarted_resumes_its_half_done_job(micro: dict) -> None:
    root, config = micro["root"], micro["config"]
    job = llm_jobs.generate_job(config, root, root / "killed" / "samples", adapter=micro["adapters"][2],
                                num_samples=10, device="cpu")
    service = start_local_service(root)
    name = service.submit(job)
    samples = Path(job.output_dir) / "samples.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not samples.is_file() or len(samples.read_text().splitlines()) < 2):
        time.sleep(0.02)
    os.kill(service.process.process.pid, signal.SIGKILL)  # type: ignore[attr-defined]
    written = len(samples.read_text().splitlines())
    assert 2 <= written < job.num_samples, "the job ended before it could be killed"
    with pytest.raises(LLMRunError, match=r"infrastructure failure: the LLM service stopped \(exit -9\)"):
        service.wait(name, timeout=60)
    service.kill()
    assert read_status(ServicePaths(service.paths.root), name).state == "running"  # type: ignore[union-attr]

    again = start_local_service(root, root=service.paths.root)  # the same directory: its unfinished job first
    try:
        status = again.wait(name, timeout=300)
    finally:
        again.close()
    assert status.summary["resumed_from"] >= 2 and status.summary["drawn"] == job.num_samples - status.summary[
        "resumed_from"]
    assert _untimed(read_samples(Path(job.output_dir))) == _untimed(_one_shot(job))


def test_a_service_reports_a_bad_job_and_goes_on(micro: dict) -> None:
    root, config = micro["root"], micro["config"]
    service = start_local_service(root)
    try:
        missing = llm_jobs.generate_job(config, root, root / "bad" / "out", adapter=root / "no-such-adapter",
                                        num_samples=1, device="cpu")
        with pytest.raises(LLMRunError, match=r"failed in the LLM service \(exit 2\).*no-such-adapter"):
            service.run(missing, timeout=120)
        good = llm_jobs.generate_job(config, root, root / "bad" / "after", num_samples=1, device="cpu")
        assert service.run(good, timeout=120).state == "done"
    finally:
        service.close()


def test_the_vllm_backend_sends_token_ids_with_a_seed_per_sample(micro: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """vLLM runs on a GPU only; a stand-in `vllm` module records what the backend hands it."""
    from contracts.llm import Decoding
    from llm.models import load_tokenizer, prompt_token_ids
    from llm.sampling import SampleRequest, VLLMBackend, lora_id, sample_seed

    calls: dict[str, list] = {"generate": [], "sleep": [], "wake": []}

    class LLM:
        def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
            calls["engine"] = [kwargs]

        def generate(self, prompts, params, lora_request=None, use_tqdm=True):  # type: ignore[no-untyped-def]
            calls["generate"].append((prompts, params, lora_request))
            completion = types.SimpleNamespace(text="x", token_ids=[5, 6], finish_reason="stop")
            return [types.SimpleNamespace(outputs=[completion]) for _ in prompts]

        def sleep(self, level: int) -> None:
            calls["sleep"].append(level)

        def wake_up(self) -> None:
            calls["wake"].append(True)

    class LoRARequest:
        def __init__(self, name: str, number: int, path: str) -> None:
            self.name, self.number, self.path = name, number, path

    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = LLM, lambda **kwargs: kwargs  # type: ignore[attr-defined]
    lora = types.ModuleType("vllm.lora")
    request_module = types.ModuleType("vllm.lora.request")
    request_module.LoRARequest = LoRARequest  # type: ignore[attr-defined]
    for name, module in (("vllm", vllm), ("vllm.lora", lora), ("vllm.lora.request", request_module)):
        monkeypatch.setitem(sys.modules, name, module)

    decoding = Decoding(temperature=0.2, top_k=50, top_p=0.9, do_sample=True, max_new_tokens=16, seed=0)
    backend = VLLMBackend(str(micro["model"]), decoding, batch_size=2, adapter=str(micro["adapters"][1]))
    engine = calls["engine"][0]
    assert engine["enable_sleep_mode"] and engine["enable_lora"] and engine["max_lora_rank"] == 32
    messages = prompt_messages(generation_task(500_000))
    drawn = [s for batch in backend.generate([SampleRequest(messages, 5, 7, done=frozenset({1}))]) for s in batch]
    assert [s.index for s in drawn] == [0, 2, 3, 4]  # the finished sample 1 is not drawn again
    assert [s.seed for s in drawn] == [sample_seed(7, i) for i in (0, 2, 3, 4)]
    ids = prompt_token_ids(load_tokenizer(str(micro["model"])), messages)
    assert [len(prompts) for prompts, _, _ in calls["generate"]] == [2, 2]  # batch_size at a time
    for prompts, params, lora_request in calls["generate"]:
        assert all(p == {"prompt_token_ids": ids} for p in prompts)  # token ids, never text
        assert all(p["n"] == 1 and p["temperature"] == 0.2 and p["max_tokens"] == 16 for p in params)
        assert lora_request.path == str(micro["adapters"][1]) and lora_request.number == lora_id(lora_request.path)
    assert drawn[0].prompt_tokens == len(ids) and drawn[0].completion_tokens == 2
    backend.use_adapter(None)
    backend.sleep()
    backend.sleep()
    list(backend.generate([SampleRequest(messages, 1, 7)]))
    assert calls["sleep"] == [1] and calls["wake"] == [True] and calls["generate"][-1][2] is None


# --- in the LLM image ------------------------------------------------------------------------------

def _llm_image(docker_client):  # type: ignore[no-untyped-def]
    from orchestrator.containers.client import ImageError
    from orchestrator.containers.images import resolve

    try:
        return resolve(docker_client, "llm")
    except ImageError as exc:
        if os.environ.get("NASLOOP_REQUIRE_DOCKER") == "1":
            pytest.fail(f"NASLOOP_REQUIRE_DOCKER=1 but {exc}")
        pytest.skip(str(exc))


@pytest.mark.docker
def test_the_service_container_serves_a_run_and_a_killed_orchestrators_is_swept(  # type: ignore[no-untyped-def]
        micro: dict, docker_client) -> None:
    from orchestrator.containers.client import ImageError
    from orchestrator.containers.images import llm_backend_of, require_llm_backend
    from orchestrator.containers.labels import MANAGED_LABEL, ROLE_LABEL, sweep_orphans
    from orchestrator.generator.runner import container_mounts
    from orchestrator.generator.service import start_container_service

    image = _llm_image(docker_client)
    root, config = micro["root"], micro["config"]
    assert llm_backend_of(docker_client, image.id) == "transformers"
    require_llm_backend(docker_client, image.id, "transformers")
    with pytest.raises(ImageError, match="make images LLM_BACKEND=vllm"):
        require_llm_backend(docker_client, image.id, "vllm")

    jobs = [llm_jobs.generate_job(config, root, root / "container" / name, adapter=adapter, num_samples=2,
                                  device="cpu") for name, adapter in (("a1", micro["adapters"][1]),
                                                                      ("a2", micro["adapters"][2]))]
    service = start_container_service(docker_client, image.id, root, container_mounts(jobs[0], root))
    container = service.process.container  # type: ignore[attr-defined]
    try:
        for job in jobs:
            assert service.run(job, timeout=300).state == "done"
        assert service.state().model_loads == 1  # type: ignore[union-attr]
        env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
        assert env["VLLM_CACHE_ROOT"] == "/workspace/cache/vllm" and env["TRITON_CACHE_DIR"] == "/workspace/cache/triton"
        assert container.labels[MANAGED_LABEL] == "1" and container.labels[ROLE_LABEL] == "llm"
    finally:
        service.close()
    assert not docker_client.containers.list(all=True, filters={"id": container.id})
    for job in jobs:  # the container's samples are those of the one-shot path here
        assert _untimed(read_samples(Path(job.output_dir))) == _untimed(_one_shot(job))
    assert (root / "cache").is_dir()

    # An orchestrator SIGKILLed while its service runs: the container outlives it, and the next start's
    # sweep removes it.
    code = ("import sys, time, docker\n"
            "from pathlib import Path\n"
            "from orchestrator.generator.runner import Mounts\n"
            "from orchestrator.generator.service import start_container_service\n"
            f"service = start_container_service(docker.from_env(), {image.id!r}, Path({str(root)!r}), "
            f"Mounts(Path({str(root)!r})))\n"
            "print('started', flush=True)\n"
            "time.sleep(600)\n")
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert process.stdout is not None and process.stdout.readline().strip() == "started"
    filters = {"label": [f"{MANAGED_LABEL}=1", f"{ROLE_LABEL}=llm"]}
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert docker_client.containers.list(all=True, filters=filters)  # left behind
    assert sweep_orphans(docker_client) >= 1
    assert docker_client.containers.list(all=True, filters=filters) == []
