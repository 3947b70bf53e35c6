"""bench/gpu_check.py, the prepared GPU check, in its CPU mode at the smallest sizes: every section
runs and passes, and the JSON file holds the numbers the GPU run will report."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

for module in ("torch", "transformers", "peft", "accelerate", "tokenizers", "safetensors"):
    pytest.importorskip(module)

REPO_ROOT = Path(__file__).resolve().parent.parent
# gpu_check.py's default --lemur (the shared corpus next to the repository), as tests/conftest.py's.
LEMUR_JSONL = REPO_ROOT.parent / "shared" / "data" / "lemur" / "lemur-img-classification.jsonl.gz"


def _gpu_check(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "bench/gpu_check.py", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_gpu_check_cpu_mode_writes_every_section(tmp_path: Path) -> None:
    out = tmp_path / "gpu-check.json"
    done = _gpu_check("--device", "cpu", "--size", "tiny", "--out", str(out), timeout=400)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "all sections passed" in done.stdout
    result = json.loads(out.read_text())
    assert result["schema"] == "nasloop-gpu-check-v2" and result["ok"] is True and result["failed_sections"] == []
    assert result["device"] == "cpu" and result["size"] == "tiny" and result["total_seconds"] > 0
    assert result["host_only_modules_imported"] == []  # no docker, click, sqlalchemy, orchestrator, ...
    sections = result["sections"]
    assert list(sections) == ["environment", "sandbox", "cpu_reference", "lemur", "concurrency", "generation",
                              "finetune", "memory"]
    # Without the shared corpus the lemur section is skipped with its reason; everything else runs.
    lemur_present = LEMUR_JSONL.is_file()
    assert result["skipped_sections"] == ({} if lemur_present else {"lemur": sections["lemur"]["reason"]})
    assert all(s["status"] == "ok" and s["seconds"] >= 0 and all(s.get("checks", {}).values())
               for s in sections.values() if s["status"] != "skipped")
    # The time guard: the budget, each section's allowance and measured seconds.
    assert result["budget_seconds"] == 480 and set(result["allowance_seconds"]) == set(sections)
    assert result["section_seconds"] == {name: s["seconds"] for name, s in sections.items()}

    env = sections["environment"]
    assert env["versions"]["torch"] and env["versions"]["transformers"] and "cuda_available" in env

    sandbox = sections["sandbox"]
    assert 0.0 <= sandbox["accuracy"] <= 1.0 and sandbox["seconds_per_epoch"] > 0 and sandbox["images_per_second"] > 0
    assert len(sandbox["runs"]) == 2 and sandbox["batch_size"] == 16
    assert sandbox["findings"]["same_accuracy_same_seed"] is True  # the CPU is deterministic

    reference = sections["cpu_reference"]
    assert reference["device_accuracy"] == sandbox["accuracy"]  # the sandbox section's run, reused
    assert reference["cpu_accuracy"] == reference["device_accuracy"] and reference["accuracy_difference"] == 0.0
    assert reference["prediction_agreement"] == 1.0 and reference["noise_bound"] > 0
    assert reference["findings"]["within_noise"] is True and "compares it with itself" in reference["note"]
    assert reference["device_seconds_per_epoch"] > 0 and reference["cpu_seconds_per_epoch"] > 0

    lemur = sections["lemur"]
    if lemur_present:
        assert lemur["status"] == "ok" and lemur["model"] == "DPN68" and len(lemur["code_sha256"]) == 64
        assert 0 < lemur["params"] <= 500_000 and lemur["seconds_per_epoch"] > 0 and lemur["images_per_second"] > 0
        assert 0.0 <= lemur["accuracy"] <= 1.0 and lemur["file"] == LEMUR_JSONL.name
    else:
        assert lemur["status"] == "skipped" and "--lemur" in lemur["reason"]

    concurrency = sections["concurrency"]
    assert list(concurrency["levels"]) == ["1", "2"] and concurrency["skipped_levels"] == {}  # --size tiny: 1, 2
    for n, level in concurrency["levels"].items():
        assert level["processes"] == int(n) and len(level["seconds_per_epoch"]) == int(n)
        assert all(seconds > 0 for seconds in level["seconds_per_epoch"]) and level["images_per_second_total"] > 0
        assert level["seconds_per_epoch_max"] == max(level["seconds_per_epoch"]) and level["threads_per_process"] >= 1
    assert concurrency["levels"]["1"]["speedup_vs_1"] == 1.0 and concurrency["levels"]["2"]["speedup_vs_1"] > 0

    gen = sections["generation"]
    for mode in ("static", "continuous"):
        assert gen[mode]["tokens_per_second"] > 0 and 0 < gen[mode]["useful_share"] <= 1
        assert gen[mode]["samples"] == result["sizes"]["samples"]
    assert gen["continuous"]["useful_share"] == 1.0 and gen["continuous_speedup"] > 0
    assert gen["findings"]["identical_samples_1_vs_4_slots"] is True

    ft = sections["finetune"]
    assert ft["mean_loss_after"] < ft["mean_loss_before"] and ft["steps"] == result["sizes"]["finetune_steps"]
    assert ft["tokens_per_second"] > 0 and ft["effective_precision"] == "fp32"  # bf16 falls back on the CPU
    assert ft["gradient_checkpointing"] is True and ft["peak_cuda_memory_bytes"] is None
    assert "precision bf16 -> fp32 on CPU" in ft["fallbacks"]  # the CPU fallback is recorded in the adapter's metadata

    memory = sections["memory"]["models"]["deepseek-coder-6.7b"]
    assert 6.6e9 < memory["parameters"] < 6.8e9 and memory["param_bytes_bf16"] == 2 * memory["parameters"]
    assert memory["kv_bytes_per_token"] == 32 * 2 * 32 * 128 * 2 == memory["kv_bytes_per_token_llm_models"]
    assert memory["kv_cache_bytes_batch16_2048"] == memory["kv_bytes_per_token"] * 16 * 2048
    assert all(math.isfinite(v) for v in memory["auto_batch_size_estimate"].values())


def test_gpu_check_records_a_failing_section_and_exits_non_zero(tmp_path: Path) -> None:
    """An unknown section is a usage error (exit 2, no file); a failing section (here: CUDA asked for
    on a machine without it) is recorded, the others still run, and the exit status is 1."""
    out = tmp_path / "gpu-check.json"
    bad = _gpu_check("--sections", "nope", "--out", str(out))
    assert bad.returncode == 2 and "unknown section" in bad.stderr and not out.exists()

    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the failure path below needs one without it")
    done = _gpu_check("--device", "cuda", "--sections", "environment,memory", "--out", str(out))
    assert done.returncode == 1, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["ok"] is False and result["failed_sections"] == ["environment"]
    assert "cuda_available" in result["sections"]["environment"]["error"]
    assert result["sections"]["memory"]["status"] == "ok"


def test_gpu_check_skips_what_cannot_run_with_the_reason(tmp_path: Path) -> None:
    """A missing LEMUR export and a spent time budget each skip their section with the reason; a
    skip is not a failure (exit 0), and the cheap sections still run."""
    out = tmp_path / "gpu-check.json"
    missing = _gpu_check("--device", "cpu", "--size", "tiny", "--sections", "lemur", "--lemur",
                         str(tmp_path / "absent.jsonl.gz"), "--out", str(out))
    assert missing.returncode == 0, missing.stdout + missing.stderr
    result = json.loads(out.read_text())
    assert result["ok"] is True and list(result["skipped_sections"]) == ["lemur"]
    assert "no LEMUR export" in result["sections"]["lemur"]["reason"] and "absent.jsonl.gz" in missing.stdout

    spent = _gpu_check("--device", "cpu", "--size", "tiny", "--sections", "sandbox,concurrency,memory",
                       "--budget", "0", "--out", str(out))
    assert spent.returncode == 0, spent.stdout + spent.stderr
    result = json.loads(out.read_text())
    assert result["budget_seconds"] == 0 and list(result["skipped_sections"]) == ["sandbox", "concurrency"]
    assert all("time budget" in reason for reason in result["skipped_sections"].values())
    assert result["sections"]["memory"]["status"] == "ok"  # allowed 0 s: always runs
    assert "2 skipped: sandbox, concurrency" in spent.stdout
