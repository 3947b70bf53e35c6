"""Loading the base model, its tokenizer and an adapter; identifying exactly what was loaded.

A model is a Hugging Face id (resolved through the user's cache, or the hub when online) or a local
directory. With `HF_HUB_OFFLINE=1` a model missing from the cache is a clear `ModelNotFound`, not a
hang. Imports torch and transformers: container (or `llm` extra) only.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

# The few files that identify a local model directory cheaply (weights are identified by name + size:
# hashing 14 GB of weights on every start would cost a minute).
_IDENTITY_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json")


class ModelNotFound(RuntimeError):
    """The base model or an adapter cannot be found (offline and not cached, or a wrong path)."""


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA device")
    return torch.device(device)


def default_dtype(device: torch.device) -> torch.dtype:
    """bf16 on a GPU that supports it, float32 otherwise (CPU bf16 matmuls are slow and lossy)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def _is_local(model: str) -> bool:
    return Path(model).is_dir()


def _check_reference(model: str) -> None:
    looks_like_path = model.startswith(("/", "./", "../", "~")) or model.count("/") > 1
    if looks_like_path and not _is_local(model):
        raise ModelNotFound(f"model directory not found: {model}")


def _not_found(model: str, exc: Exception) -> ModelNotFound:
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
    hint = ("HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache; download it first "
            f"(`hf download {model}`) or mount a cache that has it" if offline
            else "check the id, your network and HF_HOME")
    return ModelNotFound(f"cannot load model {model!r}: {hint} ({type(exc).__name__}: {exc})")


def load_tokenizer(model: str) -> PreTrainedTokenizerBase:
    _check_reference(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as exc:
        raise _not_found(model, exc) from exc
    if tokenizer.chat_template is None:
        raise ValueError(f"tokenizer of {model!r} has no chat template; nasloop renders prompts with it")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model: str, device: torch.device, dtype: torch.dtype | None = None,
               attn_implementation: str | None = None) -> PreTrainedModel:
    """The base model on `device`; `attn_implementation` ("sdpa", ...) when given, else transformers' default."""
    _check_reference(model)
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        loaded = AutoModelForCausalLM.from_pretrained(model, dtype=dtype or default_dtype(device), **extra)
    except (OSError, ValueError) as exc:
        raise _not_found(model, exc) from exc
    return loaded.to(device)


def check_adapter(adapter: str) -> Path:
    path = Path(adapter)
    if not (path / "adapter_config.json").is_file():
        raise ModelNotFound(f"not a LoRA adapter directory (no adapter_config.json): {adapter}")
    return path


def model_identity(model: str, loaded: PreTrainedModel | None = None) -> dict[str, Any]:
    """What a run records about its base model: the reference and a revision (hub commit, or a
    fingerprint of a local directory)."""
    if _is_local(model):
        return {"model": model, "revision": "local-" + directory_fingerprint(Path(model))}
    commit = getattr(getattr(loaded, "config", None), "_commit_hash", None) if loaded is not None else None
    return {"model": model, "revision": commit}


def directory_fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in path.iterdir() if p.is_file()):
        digest.update(file.name.encode() + b"\0")
        if file.name in _IDENTITY_FILES:
            digest.update(file.read_bytes())
        else:
            digest.update(str(file.stat().st_size).encode())
    return digest.hexdigest()[:16]


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in ("torch", "transformers", "peft", "accelerate", "tokenizers", "bitsandbytes", "vllm"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def render_prompt(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> str:
    """The prompt text in the model's own chat template, ending where the assistant's answer starts."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prompt_token_ids(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> list[int]:
    """The prompt as token ids, built once by the model's own chat template, ending where the
    assistant's answer starts. Every backend is given these ids, never the text: the template already
    holds the BOS token, and a backend that tokenized the text again with special tokens (vLLM does for
    text prompts) would add a second one."""
    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=False)
    return [int(i) for i in ids]


def kv_bytes_per_token(model: PreTrainedModel) -> int:
    """Bytes of key/value cache one token takes (all layers), from the model's configuration."""
    config = model.config
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return 2 * config.num_hidden_layers * kv_heads * head_dim * torch.finfo(model.dtype).bits // 8


def auto_batch_size(model: PreTrainedModel, device: torch.device, tokens_per_sequence: int, cap: int = 64) -> int:
    """Sequences that fit at once: on CUDA what the free memory (after the model) holds of KV cache
    for `tokens_per_sequence` each, with a quarter more for activations; 8 on the CPU."""
    if device.type != "cuda":
        return 8
    free, _ = torch.cuda.mem_get_info(device)
    per_sequence = kv_bytes_per_token(model) * tokens_per_sequence * 1.25
    return max(1, min(cap, int(free * 0.85 // per_sequence)))
