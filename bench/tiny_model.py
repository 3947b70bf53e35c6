"""The benchmarks' own tiny Llama: `llm.tiny`'s builder (a line-level BPE tokenizer and a few
pre-training steps on the CPU) on programs generated here, so that a fresh clone needs no shared data
and no network. Its completions end at an end-of-turn token at varied lengths, which is what static
batching pays for. Used by bench/gpu_check.py and bench/bench_sampling.py.

Imports only the standard library and the repo's llm/ (torch, transformers, tokenizers through it).
"""

from __future__ import annotations

import json
import shutil
import textwrap
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from llm.tiny import REPORT_FILE, TinyModelSpec, build_tiny_model


def program(width: int, depth: int, activation: str) -> str:
    """A program in the project's API contract, as tests/test_llm_model.py writes them (valid at 32x32
    up to depth 5: each block halves the image; the deeper ones only lengthen the tiny model's corpus)."""
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


# The tiny model pre-trains on these (107 to 218 tokens each with a 1,024-token vocabulary, so that its
# completions end at varied lengths); a fine-tune can learn others (new widths and activations), so that
# its loss has somewhere to go.
PRETRAIN_PROGRAMS = [program(w, d, a) for w in (8, 16) for d in (1, 2, 3, 4, 6, 8, 10, 12) for a in ("ReLU", "GELU")]
FINETUNE_PROGRAMS = [program(w, d, a) for w in (12, 20) for d in (2, 3) for a in ("SiLU", "ELU")]


def tiny_spec(vocab_size: int, layers: int, hidden_size: int, heads: int, steps: int) -> TinyModelSpec:
    """The builder's settings for a model of this shape (context 512, batch 4, warm-up a tenth)."""
    return TinyModelSpec(vocab_size=vocab_size, layers=layers, hidden_size=hidden_size,
                         intermediate_size=3 * hidden_size, heads=heads, context=512, steps=steps, batch_size=4,
                         lr=3e-3 if hidden_size >= 128 else 5e-3, warmup_steps=max(1, steps // 10),
                         weight_decay=0.1, seed=0)


# What bench/gpu_check.py builds at --size full, and bench/bench_sampling.py without a model.
FULL_SPEC = tiny_spec(vocab_size=1024, layers=3, hidden_size=256, heads=4, steps=60)


def build_bench_model(out: Path, spec: TinyModelSpec, param_budget: int,
                      say: Callable[[str], None] = print) -> dict[str, Any]:
    """Build the tiny model into `out` (on the CPU) from PRETRAIN_PROGRAMS; a summary of its report."""
    out.parent.mkdir(parents=True, exist_ok=True)
    corpus = out.parent / f"{out.name}-corpus.jsonl"
    corpus.write_text("".join(json.dumps({"code": c}) + "\n" for c in PRETRAIN_PROGRAMS))
    say(f"  building the tiny model (llm.tiny, CPU): {spec.layers} layers, hidden {spec.hidden_size}, "
        f"{spec.steps} pre-training steps")
    started = time.perf_counter()
    report = build_tiny_model(out, corpus, spec, param_budget)
    corpus.unlink()
    losses = [entry["loss"] for entry in report["losses"]]
    summary = {"spec": asdict(spec), "parameters": report["parameters"], "corpus_programs": len(PRETRAIN_PROGRAMS),
               "pretrain_loss_first": losses[0], "pretrain_loss_last": losses[-1],
               "build_seconds": round(time.perf_counter() - started, 2)}
    say(f"  tiny model: {summary['parameters']:,} parameters, pre-training loss {losses[0]} -> {losses[-1]} "
        f"({summary['build_seconds']} s)")
    return summary


def ensure_bench_model(out: Path, spec: TinyModelSpec, param_budget: int,
                       say: Callable[[str], None] = print) -> dict[str, Any]:
    """The tiny model at `out`: reused when a complete one of this `spec` is there (its report, written
    last, records the spec), else built afresh; a summary with `reused`."""
    report = out / REPORT_FILE
    if report.is_file() and json.loads(report.read_text()).get("spec") == asdict(spec):
        say(f"  reusing the tiny model built earlier at {out.name}")
        return {"reused": True, "spec": asdict(spec)}
    shutil.rmtree(out, ignore_errors=True)
    return {"reused": False, **build_bench_model(out, spec, param_budget, say)}
