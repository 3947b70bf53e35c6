"""A tiny local code model for tests and the CPU `smoke` profile: no downloads.

`build_tiny_model()` trains a byte-level BPE tokenizer on a corpus of programs, creates a small
Llama-architecture model with a chat template, and pre-trains it on the corpus as chat examples (the
same prompt template as the loop), so that the real generation and fine-tuning code runs end to end.
What it learns to write is what it is given: `make cycle` trains it on the corpus programs that pass
the sandbox's validity checks (`nasloop corpus export --valid-only`), so that most of its samples are
valid programs, most of them near-copies of those it learnt from.

The tokenizer pre-splits text into lines (each with its newline), not words, so BPE merges whole code
lines or large pieces of them, such as `        self.relu = nn.ReLU(inplace=True)\n`: the fixed prompt
becomes a few dozen tokens and a typical LEMUR program a couple of hundred, which lets a 1,024-token
context hold prompt and answer, keeps CPU training short, and makes the next line depend mostly on the
previous token, which a small model learns quickly.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from contracts.files import atomic_write_text, file_sha256, read_jsonl
from llm.prompt import chat_example, corpus_tasks

BOS, EOS, PAD = "<s>", "<|end|>", "<pad>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
REPORT_FILE = "tiny-model.json"


@dataclass(frozen=True)
class TinyModelSpec:
    """Architecture, tokenizer and training budget (the profile's `[tiny_model]` section)."""

    vocab_size: int
    layers: int
    hidden_size: int
    intermediate_size: int
    heads: int
    context: int
    steps: int
    batch_size: int
    lr: float
    warmup_steps: int
    weight_decay: float
    seed: int


def read_corpus(path: Path, param_budget: int) -> list[list[dict[str, str]]]:
    """Chat examples from a JSONL(.gz) file: lines with `messages` (a chat export) are used as they
    are; lines with `code` (a LEMUR export) become the paper's two examples (CIFAR-10 and MNIST)."""
    examples: list[list[dict[str, str]]] = []
    for number, record in read_jsonl(path):
        if isinstance(record, dict) and "messages" in record:
            examples.append([{**m, "content": _lf(m["content"])} for m in record["messages"]])
        elif isinstance(record, dict) and "code" in record:
            code = _lf(record["code"])
            examples.extend(chat_example(task, code) for task in corpus_tasks(param_budget))
        else:
            raise ValueError(f"{path}:{number}: neither 'messages' nor 'code'")
    if not examples:
        raise ValueError(f"{path}: no examples")
    return examples


def _lf(text: str) -> str:
    """Unix line endings: a few corpus files use CRLF, which would split the small vocabulary."""
    return text.replace("\r\n", "\n")


def train_tokenizer(examples: list[list[dict[str, str]]], vocab_size: int):
    """A byte-level BPE over lines, wrapped as a transformers tokenizer with the chat template."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"[^\n]*\n+|[^\n]+"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    specials = [BOS, EOS, PAD, *ROLE_TOKENS]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  max_token_length=32, show_progress=False)
    # Every message as often as it occurs: the fixed prompt then merges into ~100 tokens.
    tokenizer.train_from_iterator((m["content"] for example in examples for m in example), trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS,
                                      pad_token=PAD, additional_special_tokens=list(ROLE_TOKENS))
    wrapped.chat_template = CHAT_TEMPLATE
    wrapped.model_max_length = 1 << 30  # the model's context is enforced by the callers
    return wrapped


def make_model(spec: TinyModelSpec, tokenizer):
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.layers, num_attention_heads=spec.heads, num_key_value_heads=spec.heads,
        max_position_embeddings=spec.context, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id,
                                               eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    return model


def _token_stream(examples: list[list[int]], rng: random.Random) -> Iterable[int]:
    """Examples in a fresh random order every epoch, back to back (packed pre-training)."""
    order = list(range(len(examples)))
    while True:
        rng.shuffle(order)
        for i in order:
            yield from examples[i]


def build_tiny_model(out: Path, corpus: Path, spec: TinyModelSpec, param_budget: int,
                     progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train the tokenizer and the model, save both to `out`, and return (and save) a report."""
    import torch

    from llm.models import library_versions

    say = progress or (lambda message: None)
    torch.manual_seed(spec.seed)
    rng = random.Random(spec.seed)
    started = time.perf_counter()
    examples = read_corpus(corpus, param_budget)
    tokenizer = train_tokenizer(examples, spec.vocab_size)
    texts = [tokenizer.apply_chat_template(e, tokenize=False) for e in examples]
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    corpus_tokens = sum(map(len, encoded))
    say(f"tokenizer: {len(tokenizer)} tokens; corpus: {len(examples)} examples, {corpus_tokens:,} tokens "
        f"({time.perf_counter() - started:.1f}s)")

    model = make_model(spec, tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, betas=(0.9, 0.95),
                                  weight_decay=spec.weight_decay)

    def lr_factor(step: int) -> float:
        if step < spec.warmup_steps:
            return (step + 1) / spec.warmup_steps
        progress_ = (step - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress_)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    stream = iter(_token_stream(encoded, rng))
    rows = spec.batch_size
    losses: list[dict[str, float]] = []
    model.train()
    train_start = time.perf_counter()
    for step in range(spec.steps):
        batch = torch.tensor([[next(stream) for _ in range(spec.context)] for _ in range(rows)])
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 10 == 0 or step == spec.steps - 1:
            losses.append({"step": step + 1, "loss": round(loss.item(), 4)})
            elapsed = time.perf_counter() - train_start
            say(f"step {step + 1}/{spec.steps} loss {loss.item():.3f} "
                f"({(step + 1) * rows * spec.context / elapsed:,.0f} tokens/s)")
    train_seconds = time.perf_counter() - train_start
    trained_tokens = spec.steps * rows * spec.context

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    report = {
        "spec": asdict(spec),
        "parameters": sum(p.numel() for p in model.parameters()),
        "corpus": {"file": Path(corpus).name, "sha256": file_sha256(corpus), "examples": len(examples),
                   "tokens": corpus_tokens},
        "trained_tokens": trained_tokens,
        "epochs": round(trained_tokens / corpus_tokens, 2),
        "train_seconds": round(train_seconds, 1),
        "tokens_per_second": round(trained_tokens / train_seconds, 1) if train_seconds else None,
        "total_seconds": round(time.perf_counter() - started, 1),
        "losses": losses,
        "libraries": library_versions(),
    }
    atomic_write_text(out / REPORT_FILE, json.dumps(report, indent=2) + "\n")
    return report

