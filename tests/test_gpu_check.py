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


def test_gpu_check_cpu_mode_writes_every_section(tmp_path: Path) -> None:
    out = tmp_path / "gpu-check.json"
    done = subprocess.run([sys.executable, "bench/gpu_check.py", "--device", "cpu", "--size", "tiny", "--out", str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "all sections passed" in done.stdout
    result = json.loads(out.read_text())
    assert result["schema"] == "nasloop-gpu-check-v1" and result["ok"] is True and result["failed_sections"] == []
    assert result["device"] == "cpu" and result["size"] == "tiny" and result["total_seconds"] > 0
    assert result["host_only_modules_imported"] == []  # no docker, click, sqlalchemy, orchestrator, ...
    sections = result["sections"]
    assert list(sections) == ["environment", "sandbox", "generation", "finetune", "memory"]
    assert all(s["status"] == "ok" and s["seconds"] >= 0 and all(s.get("checks", {}).values())
               for s in sections.values())

    env = sections["environment"]
    assert env["versions"]["torch"] and env["versions"]["transformers"] and "cuda_available" in env

    sandbox = sections["sandbox"]
    assert 0.0 <= sandbox["accuracy"] <= 1.0 and sandbox["seconds_per_epoch"] > 0 and sandbox["images_per_second"] > 0
    assert len(sandbox["runs"]) == 2 and sandbox["batch_size"] == 16
    assert sandbox["findings"]["same_accuracy_same_seed"] is True  # the CPU is deterministic

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

    memory = sections["memory"]["models"]["deepseek-coder-6.7b"]
    assert 6.6e9 < memory["parameters"] < 6.8e9 and memory["param_bytes_bf16"] == 2 * memory["parameters"]
    assert memory["kv_bytes_per_token"] == 32 * 2 * 32 * 128 * 2 == memory["kv_bytes_per_token_llm_models"]
    assert memory["kv_cache_bytes_batch16_2048"] == memory["kv_bytes_per_token"] * 16 * 2048
    assert all(math.isfinite(v) for v in memory["auto_batch_size_estimate"].values())


def test_gpu_check_records_a_failing_section_and_exits_non_zero(tmp_path: Path) -> None:
    """An unknown section is a usage error (exit 2, no file); a failing section (here: CUDA asked for
    on a machine without it) is recorded, the others still run, and the exit status is 1."""
    out = tmp_path / "gpu-check.json"
    bad = subprocess.run([sys.executable, "bench/gpu_check.py", "--sections", "nope", "--out", str(out)],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown section" in bad.stderr and not out.exists()

    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the failure path below needs one without it")
    done = subprocess.run([sys.executable, "bench/gpu_check.py", "--device", "cuda", "--sections", "environment,memory",
                           "--out", str(out)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["ok"] is False and result["failed_sections"] == ["environment"]
    assert "cuda_available" in result["sections"]["environment"]["error"]
    assert result["sections"]["memory"]["status"] == "ok"
