"""Sampling backends behind one small interface: `backend.generate(requests)` yields samples.

`TransformersBackend` (default) decodes with continuous batching (`llm.batching`: a finished
sequence's slot takes the next sample at once, the fixed prompt prefilled once) and each sample seeded
on its own from (request seed, sample index), so a resumed job draws the samples it had not finished
with the same seeds whatever ran beside them; `batching = "static"` keeps `model.generate()` over fixed
batches seeded per batch (the baseline the benchmark measures against). `VLLMBackend` (optional, GPU
only) hands every sample to vLLM at once as token ids, each with its own seed. All keep, per sample,
the raw text, the token counts, why it stopped and how long it took.
"""

from __future__ import annotations

import hashlib
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from contracts.llm import Decoding, Sample


@dataclass(frozen=True)
class SampleRequest:
    """`n` samples for one prompt; their indices run from `first_index` (those in `done` are not drawn)."""

    messages: list[dict[str, str]]
    n: int
    seed: int
    first_index: int = 0
    done: frozenset[int] = frozenset()

    @property
    def indices(self) -> list[int]:
        return [i for i in range(self.first_index, self.first_index + self.n) if i not in self.done]


def sample_seed(seed: int, index: int) -> int:
    """A 31-bit seed for sample `index` of a job seeded with `seed`."""
    digest = hashlib.sha256(f"{seed}:sample:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def batch_seed(seed: int, first_index: int) -> int:
    """A 31-bit seed for the batch whose first sample has index `first_index`."""
    digest = hashlib.sha256(f"{seed}:{first_index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def batches(request: SampleRequest, batch_size: int) -> list[tuple[int, int]]:
    """(first index, size) of each batch of `request`, aligned to multiples of `batch_size`."""
    out = []
    index, end = request.first_index, request.first_index + request.n
    while index < end:
        size = min(batch_size - index % batch_size, end - index)
        out.append((index, size))
        index += size
    return out


class SamplingBackend(ABC):
    name: str

    @abstractmethod
    def generate(self, requests: Sequence[SampleRequest]) -> Iterator[list[Sample]]:
        """Yield the samples of each batch as soon as it is done, in index order within a request."""

    def describe(self) -> dict[str, Any]:
        """What a run records about the backend (model revision, dtype, device, ...)."""
        return {"backend": self.name}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model."""


class TransformersBackend(SamplingBackend):
    name = "transformers"

    def __init__(self, model: str, decoding: Decoding, batch_size: int, adapter: str | None = None,
                 device: str = "auto", batching: str = "continuous") -> None:
        import torch

        from llm import models
        from llm.batching import Counters

        if batching not in ("continuous", "static"):
            raise ValueError(f"batching: {batching!r} is not continuous or static")
        self.batching = batching
        self.counters = Counters()  # decode work: rows computed, and those of a live sample
        self.decoding = decoding
        self.batch_size = batch_size
        self.device = models.resolve_device(device)
        self.tokenizer = models.load_tokenizer(model)
        self.model = models.load_model(model, self.device)
        self.identity = models.model_identity(model, self.model)
        self.adapter = adapter
        if adapter is not None:
            from peft import PeftModel

            models.check_adapter(adapter)
            # Merged for sampling: same outputs as the adapter, without its per-layer overhead.
            self.model = PeftModel.from_pretrained(self.model, adapter).merge_and_unload()
        self.model.eval()
        if batch_size == 0:  # as many as memory holds, for the longest sequence this job can make
            self.batch_size = models.auto_batch_size(self.model, self.device, 1024 + decoding.max_new_tokens)
        self._torch = torch
        config = self.model.generation_config
        eos = config.eos_token_id if config.eos_token_id is not None else self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self.pad_id = self.tokenizer.pad_token_id

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, **self.identity, "adapter": self.adapter, "batch_size": self.batch_size,
                "batching": self.batching, "device": str(self.device),
                "dtype": str(self.model.dtype).removeprefix("torch.")}

    def generate(self, requests: Sequence[SampleRequest]) -> Iterator[list[Sample]]:
        from llm.models import render_prompt

        for request in requests:
            prompt = render_prompt(self.tokenizer, request.messages)
            # The chat template already holds the BOS token: no second one from the tokenizer.
            prompt_ids = self.tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
            prompt_ids = prompt_ids.to(self.device)
            if self.batching == "continuous":
                yield from self._continuous(request, prompt_ids)
            else:
                yield from self._static(request, prompt_ids)

    def _continuous(self, request: SampleRequest, prompt_ids) -> Iterator[list[Sample]]:  # type: ignore[no-untyped-def]
        from llm.batching import decode

        indices = request.indices
        seeds = [sample_seed(request.seed, i) for i in indices]
        seed_of = dict(zip(indices, seeds))
        for finished in decode(self.model, prompt_ids, indices, seeds, self.batch_size, self.decoding, self.eos_ids,
                               self.counters):
            yield [self._sample(finished.index, finished.tokens, prompt_ids.shape[1], finished.seconds,
                                self.batch_size, seed_of[finished.index])]

    def _static(self, request: SampleRequest, prompt_ids) -> Iterator[list[Sample]]:  # type: ignore[no-untyped-def]
        torch = self._torch
        for first, size in batches(request, self.batch_size):
            seed = batch_seed(request.seed, first)
            torch.manual_seed(seed)
            start = time.perf_counter()
            with torch.inference_mode():
                output = self.model.generate(
                    input_ids=prompt_ids.expand(size, -1),
                    attention_mask=torch.ones(size, prompt_ids.shape[1], dtype=torch.long,
                                              device=self.device),
                    do_sample=self.decoding.do_sample,
                    temperature=self.decoding.temperature if self.decoding.do_sample else None,
                    top_k=self.decoding.top_k if self.decoding.do_sample else None,
                    top_p=self.decoding.top_p if self.decoding.do_sample else None,
                    max_new_tokens=self.decoding.max_new_tokens,
                    eos_token_id=sorted(self.eos_ids),
                    pad_token_id=self.pad_id,
                )
            seconds = time.perf_counter() - start
            completions = output[:, prompt_ids.shape[1]:].tolist()
            steps = len(completions[0]) if completions else 0
            self.counters.computed += size * steps
            self.counters.useful += sum(_length(ids, self.eos_ids) for ids in completions)
            yield [self._sample(first + row, ids, prompt_ids.shape[1], seconds, size, seed)
                   for row, ids in enumerate(completions)]

    def _sample(self, index: int, ids: list[int], prompt_tokens: int, seconds: float, size: int,
                seed: int) -> Sample:
        stop = next((i for i, token in enumerate(ids) if token in self.eos_ids), None)
        kept = ids if stop is None else ids[:stop]
        return Sample(
            index=index, text=self.tokenizer.decode(kept, skip_special_tokens=True),
            prompt_tokens=prompt_tokens, completion_tokens=len(kept) + (stop is not None),
            finish_reason="length" if stop is None else "stop",
            seconds=round(seconds, 4), batch_size=size, seed=seed,
        )

    def close(self) -> None:
        del self.model


def _length(ids: list[int], eos_ids: set[int]) -> int:
    """Tokens of a completion up to and including its end-of-turn token (the rest is padding)."""
    stop = next((i for i, token in enumerate(ids) if token in eos_ids), None)
    return len(ids) if stop is None else stop + 1


class VLLMBackend(SamplingBackend):
    """vLLM on a GPU: every batch of every request goes to the engine in one `generate` call.

    The adapter is served through a `LoRARequest` whose integer id is derived from the adapter path, so
    a new cycle's adapter never hits a cached earlier one; `max_lora_rank` must cover the adapter's r.
    """

    name = "vllm"

    def __init__(self, model: str, decoding: Decoding, batch_size: int, adapter: str | None = None,
                 device: str = "auto", max_lora_rank: int = 32) -> None:
        try:
            from vllm import LLM
        except ImportError as exc:  # pragma: no cover - needs the vllm extra
            raise RuntimeError("backend 'vllm' needs the vllm package (pip install 'nasloop[vllm]')") from exc
        from llm import models

        if device == "cpu":
            raise RuntimeError("backend 'vllm' runs on a GPU only; use backend 'transformers' on CPU")
        self.decoding = decoding
        self.batch_size = batch_size
        self.adapter = adapter
        self.tokenizer = models.load_tokenizer(model)
        self.identity = models.model_identity(model)
        self.lora_request = None
        if adapter is not None:
            from vllm.lora.request import LoRARequest

            models.check_adapter(adapter)
            lora_id = 1 + int(hashlib.sha256(str(adapter).encode()).hexdigest()[:7], 16)
            self.lora_request = LoRARequest(f"adapter-{lora_id}", lora_id, str(adapter))
        self.engine = LLM(model=model, dtype="bfloat16", seed=decoding.seed,
                          enable_lora=adapter is not None, max_lora_rank=max_lora_rank,
                          enable_prefix_caching=True)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, **self.identity, "adapter": self.adapter, "device": "cuda",
                "dtype": "bfloat16"}

    def generate(self, requests: Sequence[SampleRequest]) -> Iterator[list[Sample]]:  # pragma: no cover
        from vllm import SamplingParams

        from llm.models import render_prompt

        prompts, params, slots = [], [], []
        for request in requests:
            prompt = render_prompt(self.tokenizer, request.messages)
            for first, size in batches(request, self.batch_size):
                seed = batch_seed(request.seed, first)
                prompts.append(prompt)
                params.append(SamplingParams(
                    n=size, seed=seed, max_tokens=self.decoding.max_new_tokens,
                    temperature=self.decoding.temperature if self.decoding.do_sample else 0.0,
                    top_k=self.decoding.top_k if self.decoding.do_sample else -1,
                    top_p=self.decoding.top_p if self.decoding.do_sample else 1.0,
                ))
                slots.append((first, size, seed))
        start = time.perf_counter()
        outputs = self.engine.generate(prompts, params, lora_request=self.lora_request)
        seconds = time.perf_counter() - start
        for (first, size, seed), output in zip(slots, outputs):
            yield [Sample(
                index=first + i, text=completion.text, prompt_tokens=len(output.prompt_token_ids),
                completion_tokens=len(completion.token_ids),
                finish_reason="length" if completion.finish_reason == "length" else "stop",
                seconds=round(seconds, 4), batch_size=size, seed=seed,
            ) for i, completion in enumerate(output.outputs)]


def make_backend(name: str, model: str, decoding: Decoding, batch_size: int, adapter: str | None = None,
                 device: str = "auto", max_lora_rank: int = 32, batching: str = "continuous") -> SamplingBackend:
    if name == "transformers":
        return TransformersBackend(model, decoding, batch_size, adapter=adapter, device=device, batching=batching)
    if name == "vllm":
        return VLLMBackend(model, decoding, batch_size, adapter=adapter, device=device,
                           max_lora_rank=max_lora_rank)
    raise ValueError(f"unknown sampling backend {name!r}")
