"""`accelerate launch -m llm.finetune JOB.json`: one cycle's LoRA fine-tune, written as a new adapter.

- LoRA (peft) with the profile's r, alpha, dropout on the profile's projection names, resolved against
  the model's own linear layers: a name that matches nothing is an error, never a silent no-op.
- Causal-LM loss on the assistant tokens only: the prompt (system + user turns, as rendered by the
  model's chat template) is masked out, so the model learns to answer, not to repeat the fixed prompt.
- Examples longer than `max_seq_length` are never truncated: they are counted and skipped, or the job
  fails, as the profile says.
- Continues from `parent_adapter` when given (the previous cycle's adapter), else a fresh LoRA.
- On CUDA exactly the profile's precision and optimizer (the paper: bf16 and paged AdamW 8-bit from
  bitsandbytes), or an error that says what is missing: never a silent substitute. On the CPU the job
  falls back to float32 and `adamw_torch` (bf16 autocast is slow and bitsandbytes' paged optimisers
  need CUDA); each fallback is printed and recorded (`effective_precision`, `effective_optimizer`,
  `fallbacks`). Gradient checkpointing as the profile says (recorded with the hyperparameters).
- On CUDA the fused kernels the pinned libraries offer for the same computation (`kernel_settings`:
  PyTorch's fused AdamW when the optimizer is AdamW, scaled-dot-product attention), recorded as
  `kernels` in the metadata; the CPU path is unchanged.
- Nothing is padded: the collator pads a batch to its longest example only, and the profile's batch is
  one example.
- The adapter is written to `<output_dir>.partial` and renamed to `output_dir` only when complete, with
  `nasloop-adapter.json` beside the weights: base model and revision, parent adapter, corpus hash and
  size, hyperparameters, loss curve, wall time, library versions. A failed job leaves no `output_dir`
  and never touches the parent adapter.
Exit status: 0 done, 2 bad job, missing model or over-length examples under `over_length = "error"`,
1 anything else.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from contracts.files import JsonlError, atomic_write_text, file_sha256, read_jsonl
from contracts.jobfile import read_job
from contracts.llm import ADAPTER_METADATA_FILE, AdapterMetadata, CorpusSummary, FinetuneJob, read_adapter_metadata


class FinetuneError(ValueError):
    """The job cannot run as specified (over-length examples, unknown target modules, bad corpus)."""


def read_chat_corpus(path: Path) -> list[list[dict[str, str]]]:
    """One `{"messages": [...]}` per line, each ending with the assistant's answer."""
    examples = []
    try:
        for number, record in read_jsonl(path):
            messages = record.get("messages") if isinstance(record, dict) else None
            if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                raise FinetuneError(f"{path}:{number}: not a chat example (no list of 'messages')")
            if not messages or messages[-1].get("role") != "assistant":
                raise FinetuneError(f"{path}:{number}: the last message must be the assistant's answer")
            examples.append(messages)
    except JsonlError as exc:
        raise FinetuneError(f"not a chat example: {exc}") from None
    if not examples:
        raise FinetuneError(f"{path}: no chat examples")
    return examples


def encode_example(tokenizer, messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """(input ids, labels) with the prompt masked (-100): loss on the assistant's tokens only."""
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise FinetuneError("the chat template renders the prompt differently inside a full conversation")
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    answer_ids = tokenizer(full[len(prompt):], add_special_tokens=False).input_ids
    return prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids


def resolve_targets(model, names: list[str]) -> dict[str, int]:
    """How many linear layers each target name matches; a name matching none is an error."""
    import torch

    counts = dict.fromkeys(names, 0)
    for module_name, module in model.named_modules():
        leaf = module_name.rsplit(".", 1)[-1]
        if leaf in counts and isinstance(module, torch.nn.Linear):
            counts[leaf] += 1
    missing = [name for name, count in counts.items() if count == 0]
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                         if isinstance(m, torch.nn.Linear)})
        raise FinetuneError(f"LoRA target(s) {', '.join(missing)} match no linear layer of the model "
                            f"(its linear layers: {', '.join(linear)})")
    return counts


def _collate(pad_id: int):
    import torch

    def collate(batch: list[dict[str, list[int]]]) -> dict[str, Any]:
        width = max(len(item["input_ids"]) for item in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, item in enumerate(batch):
            n = len(item["input_ids"])
            ids[row, :n] = torch.tensor(item["input_ids"])
            labels[row, :n] = torch.tensor(item["labels"])
            mask[row, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    return collate


def mean_loss(model, dataset: list[dict[str, list[int]]], device) -> float:
    """Mean loss per assistant token over `dataset`, one example at a time, without gradients."""
    import torch

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for item in dataset:
            ids = torch.tensor([item["input_ids"]], device=device)
            labels = torch.tensor([item["labels"]], device=device)
            n = int((labels[:, 1:] != -100).sum())
            total += model(input_ids=ids, labels=labels).loss.item() * n
            count += n
    model.train(was_training)
    return total / max(count, 1)


def _needs_bitsandbytes(optimizer: str) -> bool:
    return "8bit" in optimizer or optimizer.startswith("paged_")


def effective_settings(precision: str, optimizer: str, cuda: bool, bf16_supported: bool,
                       bitsandbytes: bool) -> tuple[str, str, list[str]]:
    """(precision, optimizer, notes) the job trains with. On CUDA exactly the profile's, or a
    FinetuneError saying what is missing (never a silent substitute). On the CPU, bf16/fp16 and
    bitsandbytes' 8-bit optimisers fall back to fp32 and adamw_torch, each fallback a recorded note."""
    if cuda:
        if precision == "bf16" and not bf16_supported:
            raise FinetuneError("precision bf16 needs a GPU that supports it (Ampere or newer); "
                                "set [finetune] precision = \"fp16\" or \"fp32\" in your profile")
        if _needs_bitsandbytes(optimizer) and not bitsandbytes:
            raise FinetuneError(f"optimizer {optimizer} needs bitsandbytes, which does not import here: the "
                                "LLM image installs it (make images); else set [finetune] optimizer = \"adamw_torch\"")
        return precision, optimizer, []
    notes = []
    if precision != "fp32":
        notes.append(f"precision {precision} -> fp32 on CPU")
        precision = "fp32"
    if _needs_bitsandbytes(optimizer):
        notes.append(f"optimizer {optimizer} -> adamw_torch on CPU (bitsandbytes' paged 8-bit optimisers need CUDA)")
        optimizer = "adamw_torch"
    return precision, optimizer, notes


def kernel_settings(optimizer: str, cuda: bool) -> tuple[str, dict[str, str]]:
    """(optimizer, kernels): on CUDA the fused or fast kernels the pinned libraries offer for the same
    computation: PyTorch's fused AdamW (one kernel for all parameters) when the optimizer is AdamW, and
    PyTorch's scaled-dot-product attention (flash or memory-efficient kernels); bitsandbytes' paged
    8-bit AdamW is already a fused CUDA kernel. On the CPU nothing changes (an empty record)."""
    if not cuda:
        return optimizer, {}
    if optimizer == "adamw_torch":
        optimizer = "adamw_torch_fused"
    return optimizer, {"attention": "sdpa", "optimizer": optimizer}


def checkpointing_arguments(enabled: bool) -> dict[str, Any]:
    """TrainingArguments for gradient checkpointing under the name this transformers knows:
    `activation_checkpointing` in the default image's 5.24, `gradient_checkpointing` in older releases
    such as the 5.19 of the vLLM image."""
    from transformers import TrainingArguments

    name = ("activation_checkpointing" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__
            else "gradient_checkpointing")
    return {name: enabled, f"{name}_kwargs": {"use_reentrant": False} if enabled else None}


def _settings_for(job: FinetuneJob, cuda: bool) -> tuple[str, str, list[str]]:
    import torch

    try:
        import bitsandbytes  # noqa: F401
        has_bitsandbytes = True
    except Exception:  # noqa: BLE001  bitsandbytes raises more than ImportError without its libraries
        has_bitsandbytes = False
    hp = job.hyperparameters
    return effective_settings(hp.precision, hp.optimizer, cuda, cuda and torch.cuda.is_bf16_supported(),
                              has_bitsandbytes)


def _check_parent(parent: Path, hp) -> None:
    """The parent adapter must have this profile's LoRA shape: only the data changes between cycles."""
    config = json.loads((parent / "adapter_config.json").read_text())
    expected = {"r": hp.lora_r, "lora_alpha": hp.lora_alpha, "lora_dropout": hp.lora_dropout,
                "target_modules": sorted(hp.target_modules)}
    found = {"r": config.get("r"), "lora_alpha": config.get("lora_alpha"),
             "lora_dropout": config.get("lora_dropout"),
             "target_modules": sorted(config.get("target_modules") or [])}
    if found != expected:
        raise FinetuneError(f"parent adapter {parent} has LoRA settings {found}, "
                            f"the profile says {expected}")


def run(job: FinetuneJob) -> AdapterMetadata | None:
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments, set_seed

    from llm import models

    hp = job.hyperparameters
    out = Path(job.output_dir)
    if out.exists():
        raise FinetuneError(f"adapter directory already exists: {out}")
    staging = out.with_name(out.name + ".partial")
    if staging.exists():  # left by a killed run
        shutil.rmtree(staging)
    started = time.perf_counter()
    device = models.resolve_device(job.device)
    cuda = device.type == "cuda"
    precision, optimizer, fallbacks = _settings_for(job, cuda)
    optimizer, kernels = kernel_settings(optimizer, cuda)
    for note in fallbacks:
        print(f"finetune: {note}", file=sys.stderr)

    tokenizer = models.load_tokenizer(job.model)
    examples = read_chat_corpus(Path(job.corpus))
    dataset, over_length = [], []
    for number, messages in enumerate(examples, 1):
        ids, labels = encode_example(tokenizer, messages)
        if len(ids) > hp.max_seq_length:
            over_length.append({"example": number, "tokens": len(ids)})
            continue
        dataset.append({"input_ids": ids, "labels": labels})
    if over_length and hp.over_length == "error":
        raise FinetuneError(f"{len(over_length)} example(s) exceed max_seq_length={hp.max_seq_length} "
                            f"(longest {max(o['tokens'] for o in over_length)} tokens; examples "
                            f"{', '.join(str(o['example']) for o in over_length[:10])})")
    if over_length:
        print(f"finetune: skipped {len(over_length)} example(s) longer than {hp.max_seq_length} tokens",
              file=sys.stderr)
    if not dataset:
        raise FinetuneError("no example fits max_seq_length")

    set_seed(job.seed)
    print(f"model: loading {job.model} ({precision}, {optimizer}) (downloading it first if it is not cached)",
          file=sys.stderr, flush=True)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    base = models.load_model(job.model, device, dtype=dtype, attn_implementation=kernels.get("attention"))
    if kernels:  # what the model really runs with
        kernels["attention"] = str(getattr(base.config, "_attn_implementation", kernels["attention"]))
    identity = models.model_identity(job.model, base)
    targets = resolve_targets(base, hp.target_modules)
    parent_meta = None
    if job.parent_adapter:
        parent = models.check_adapter(job.parent_adapter)
        _check_parent(parent, hp)
        parent_meta = read_adapter_metadata(parent) if (parent / ADAPTER_METADATA_FILE).is_file() else None
        if parent_meta and parent_meta.base_model["revision"] != identity["revision"]:
            raise FinetuneError(f"parent adapter {parent} was trained on base revision "
                                f"{parent_meta.base_model['revision']}, not {identity['revision']}")
        model = PeftModel.from_pretrained(base, str(parent), is_trainable=True)
    else:
        model = get_peft_model(base, LoraConfig(
            r=hp.lora_r, lora_alpha=hp.lora_alpha, lora_dropout=hp.lora_dropout,
            target_modules=list(hp.target_modules), bias="none", task_type="CAUSAL_LM"))
    if hp.gradient_checkpointing:  # recompute activations in the backward pass: memory for time
        model.enable_input_require_grads()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    loss_before = mean_loss(model, dataset, device) if job.measure_loss else None
    curve: list[dict[str, float]] = []

    class Record(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                curve.append({"step": state.global_step, "epoch": round(state.epoch or 0, 4),
                              "loss": round(float(logs["loss"]), 5),
                              "lr": float(logs.get("learning_rate", 0.0))})
                elapsed = time.perf_counter() - train_start
                rate = (state.num_input_tokens_seen or 0) / elapsed if elapsed > 0 else 0.0
                print(f"finetune: step {state.global_step}/{state.max_steps} loss {logs['loss']:.4f}, "
                      f"{rate:,.0f} tokens/s", file=sys.stderr, flush=True)

    args = TrainingArguments(
        output_dir=str(staging / "trainer"),
        num_train_epochs=hp.epochs,
        max_steps=job.max_steps if job.max_steps is not None else -1,
        per_device_train_batch_size=hp.per_device_batch_size,
        gradient_accumulation_steps=hp.grad_accum_steps,
        learning_rate=hp.lr,
        lr_scheduler_type=hp.scheduler,
        warmup_steps=hp.warmup_steps,
        weight_decay=hp.weight_decay,
        max_grad_norm=hp.max_grad_norm,
        optim=optimizer,
        **checkpointing_arguments(hp.gradient_checkpointing),
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not cuda,
        logging_steps=1,
        include_num_input_tokens_seen=True,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=job.seed,
        data_seed=job.seed,
        remove_unused_columns=False,
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset,
                      data_collator=_collate(tokenizer.pad_token_id), callbacks=[Record()])
    trainer.remove_callback(PrinterCallback)  # Record prints the loss; keep stdout for the summary
    train_start = time.perf_counter()
    result = trainer.train()
    train_seconds = time.perf_counter() - train_start
    loss_after = mean_loss(model, dataset, device) if job.measure_loss else None

    metadata: AdapterMetadata | None = None
    if trainer.is_world_process_zero():
        shutil.rmtree(staging / "trainer", ignore_errors=True)
        model.save_pretrained(str(staging))
        weights = staging / "adapter_model.safetensors"
        metadata = AdapterMetadata(
            base_model=identity,
            parent_adapter=({"path": job.parent_adapter,
                             "adapter_sha256": parent_meta.adapter_sha256 if parent_meta else None}
                            if job.parent_adapter else None),
            corpus=CorpusSummary(
                file=Path(job.corpus).name, sha256=file_sha256(Path(job.corpus)), examples=len(examples),
                trained_examples=len(dataset), skipped_over_length=len(over_length), over_length=over_length,
                assistant_tokens=sum(sum(1 for t in d["labels"] if t != -100) for d in dataset)),
            hyperparameters=hp,
            effective_precision=precision,
            effective_optimizer=optimizer,
            fallbacks=fallbacks,
            lora_targets=targets,
            trainable_parameters=trainable,
            seed=job.seed,
            max_steps=job.max_steps,
            steps=result.global_step,
            train_loss=round(result.training_loss, 5),
            loss_curve=curve,
            mean_loss_before=loss_before,
            mean_loss_after=loss_after,
            loss_scope="assistant tokens",
            device=str(device),
            world_size=trainer.args.world_size,
            train_seconds=round(train_seconds, 2),
            train_tokens=int(trainer.state.num_input_tokens_seen or 0),
            tokens_per_second=round((trainer.state.num_input_tokens_seen or 0) / train_seconds, 1)
            if train_seconds > 0 else None,
            wall_seconds=round(time.perf_counter() - started, 2),
            libraries=models.library_versions(),
            adapter_sha256=file_sha256(weights) if weights.is_file() else None,
            kernels=kernels,
        )
        atomic_write_text(staging / ADAPTER_METADATA_FILE, json.dumps(metadata.as_dict(), indent=2) + "\n")
        staging.rename(out)  # the adapter appears complete or not at all
    trainer.accelerator.wait_for_everyone()
    return metadata


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: accelerate launch -m llm.finetune JOB.json", file=sys.stderr)
        return 2
    from llm.models import ModelNotFound

    staging = None
    try:
        job = read_job(Path(args[0]), [FinetuneJob])
        staging = Path(job.output_dir).with_name(Path(job.output_dir).name + ".partial")
        metadata = run(job)
    except (ValueError, FileNotFoundError, ModelNotFound) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    if metadata:
        print(json.dumps({k: getattr(metadata, k) for k in ("steps", "train_loss", "mean_loss_before",
                                                             "mean_loss_after", "train_seconds")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
