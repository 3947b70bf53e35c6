"""Sampling backends behind one small interface: `backend.generate(requests)` yields samples.

`TransformersBackend` (default) decodes with continuous batching (`llm.batching`: a finished
sequence's slot takes the next sample at once, the fixed prompt prefilled once) and each sample seeded
on its own from (request seed, sample index), so a resumed job draws the samples it had not finished
with the same seeds whatever ran beside them; `batching = "static"` keeps `model.generate()` over fixed
batches seeded per batch (the baseline the benchmark measures against). `VLLMBackend` (GPU only, the
LLM image built with vLLM) hands the samples to vLLM as token ids, each with its own seed. All keep,
per sample, the raw text, the token counts, why it stopped and how long it took. A backend holds its
model across jobs (the LLM service): `use_adapter` switches the LoRA adapter, `sleep`/`wake` give the
GPU memory to a fine-tune and take it back.
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
    adapter: str | None = None

    @abstractmethod
    def generate(self, requests: Sequence[SampleRequest]) -> Iterator[list[Sample]]:
        """Yield the samples of each batch as soon as it is done, in index order within a request."""

    @abstractmethod
    def use_adapter(self, adapter: str | None) -> None:
        """Sample from `adapter` (a LoRA directory) from now on, or from the base model (None)."""

    def describe(self) -> dict[str, Any]:
        """What a run records about the backend (model revision, dtype, device, ...)."""
        return {"backend": self.name}

    def sleep(self) -> None:  # noqa: B027 - optional hook
        """Free the GPU memory the engine holds (the service sleeps while a fine-tune runs)."""

    def wake(self) -> None:  # noqa: B027 - optional hook
        """Take the GPU memory back after `sleep` (also done by `generate`)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model."""


class TransformersBackend(SamplingBackend):
    name = "transformers"

    def __init__(self, model: str, decoding: Decoding, batch_size: int, adapter: str | None = None,
                 device: str = "auto", batching: str = "continuous", keep_base: bool = False) -> None:
        """`keep_base`: keep a copy (in CPU memory) of the base weights an adapter changes, so that
        `use_adapter` can switch adapters on the loaded model (the service does); without it the
        first adapter is merged for good."""
        import torch

        from llm import models
        from llm.batching import Counters

        if batching not in ("continuous", "static"):
            raise ValueError(f"batching: {batching!r} is not continuous or static")
        self._torch = torch
        self.batching = batching
        self.counters = Counters()  # decode work: rows computed, and those of a live sample
        self.decoding = decoding
        self.batch_size = batch_size
        self.device = models.resolve_device(device)
        self.tokenizer = models.load_tokenizer(model)
        self.model = models.load_model(model, self.device)
        self.identity = models.model_identity(model, self.model)
        self.model.eval()
        self.keep_base = keep_base
        self.adapter = None
        self._base_weights: dict[int, tuple[Any, Any]] = {}  # id -> (parameter, its base value on the CPU)
        self._asleep = False
        self.use_adapter(adapter)
        if batch_size == 0:  # as many as memory holds, for the longest sequence this job can make
            self.batch_size = models.auto_batch_size(self.model, self.device, 1024 + decoding.max_new_tokens)
        config = self.model.generation_config
        eos = config.eos_token_id if config.eos_token_id is not None else self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self.pad_id = self.tokenizer.pad_token_id

    def use_adapter(self, adapter: str | None) -> None:
        """Merge `adapter` into the weights (same outputs as the adapter, without its per-layer cost),
        after putting back the base weights an earlier adapter changed. The merge is the same
        computation whichever adapter came before, so a switched model samples exactly what a freshly
        loaded one does."""
        if adapter == self.adapter:
            return
        if self.adapter is not None:
            if not self.keep_base:
                raise RuntimeError("this backend merged its adapter for good (keep_base=False): it cannot switch")
            self._restore_base()
        self.adapter = None
        if adapter is None:
            return
        from peft import PeftModel
        from peft.tuners.lora import LoraLayer

        from llm import models

        models.check_adapter(adapter)
        wrapped = PeftModel.from_pretrained(self.model, adapter)
        if self.keep_base:
            for module in wrapped.modules():
                if isinstance(module, LoraLayer):
                    weight = module.get_base_layer().weight
                    self._base_weights.setdefault(id(weight), (weight, weight.detach().to("cpu", copy=True)))
        self.model = wrapped.merge_and_unload()
        self.model.eval()
        self.adapter = adapter

    def _restore_base(self) -> None:
        with self._torch.no_grad():
            for weight, base in self._base_weights.values():
                weight.data.copy_(base.to(weight.device))

    def sleep(self) -> None:
        """On CUDA: the base weights back, the model in CPU memory, the GPU's cache freed."""
        if self.device.type != "cuda" or self._asleep:
            return
        if self.adapter is not None and self.keep_base:
            self._restore_base()
            self.adapter = None
            self._base_weights.clear()  # the model itself now holds them
        self.model.to("cpu")
        self._torch.cuda.empty_cache()
        self._asleep = True

    def wake(self) -> None:
        if self._asleep:
            self.model.to(self.device)
            self._asleep = False

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, **self.identity, "adapter": self.adapter, "batch_size": self.batch_size,
                "batching": self.batching, "device": str(self.device),
                "dtype": str(self.model.dtype).removeprefix("torch.")}

    def generate(self, requests: Sequence[SampleRequest]) -> Iterator[list[Sample]]:
        from llm.models import prompt_token_ids

        self.wake()
        for request in requests:
            ids = prompt_token_ids(self.tokenizer, request.messages)
            prompt_ids = self._torch.tensor([ids], dtype=self._torch.long, device=self.device)
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


def chunks(indices: list[int], size: int) -> list[list[int]]:
    """`indices` in runs of `size` (0: one run)."""
    if size <= 0:
        return [indices] if indices else []
    return [indices[i:i + size] for i in range(0, len(indices), size)]


def vllm_sampling_arguments(decoding: Decoding, seed: int) -> dict[str, Any]:
    """vLLM's `SamplingParams` for one sample with its own seed (the profile's decoding)."""
    return {"n": 1, "seed": seed, "max_tokens": decoding.max_new_tokens,
            "temperature": decoding.temperature if decoding.do_sample else 0.0,
            "top_k": decoding.top_k if decoding.do_sample else -1,
            "top_p": decoding.top_p if decoding.do_sample else 1.0}


def lora_id(adapter: str) -> int:
    """vLLM's integer id for an adapter directory: derived from its path, so a new cycle's adapter
    never hits a cached earlier one."""
    return 1 + int(hashlib.sha256(str(adapter).encode()).hexdigest()[:7], 16)


class VLLMBackend(SamplingBackend):
    """vLLM on a GPU (the LLM image built with `LLM_BACKEND=vllm`). Each sample is its own request,
    with its own seed from (request seed, sample index) as in continuous batching, so a resumed job
    draws the samples it had not finished with the same seeds. The prompt goes in as the token ids of
    `llm.models.prompt_token_ids` (one BOS). The samples go to the engine `batch_size` at a time (0: all
    at once), each run written as it ends. The engine is built once with LoRA enabled
    (`max_lora_rank` must cover the adapter's r) and with sleep mode: the service keeps it across
    cycles, switching adapters by `LoRARequest` and sleeping (level 1: weights to CPU memory, KV cache
    dropped) while a fine-tune has the GPU.
    """

    name = "vllm"

    def __init__(self, model: str, decoding: Decoding, batch_size: int, adapter: str | None = None,
                 device: str = "auto", max_lora_rank: int = 32) -> None:
        try:
            from vllm import LLM
        except ImportError as exc:
            raise RuntimeError("backend 'vllm' needs vLLM, which only the LLM image built with it has: "
                               "make images LLM_BACKEND=vllm (GPU only; see the README)") from exc
        from llm import models

        if device == "cpu":
            raise RuntimeError("backend 'vllm' runs on a GPU only; use backend 'transformers' on CPU")
        self.decoding = decoding
        self.batch_size = batch_size
        self.tokenizer = models.load_tokenizer(model)
        self.identity = models.model_identity(model)
        self.engine = LLM(model=model, dtype="bfloat16", seed=decoding.seed, enable_lora=True,
                          max_lora_rank=max_lora_rank, enable_prefix_caching=True, enable_sleep_mode=True)
        self.adapter = None
        self.lora_request = None
        self._asleep = False
        self.use_adapter(adapter)

    def use_adapter(self, adapter: str | None) -> None:
        from vllm.lora.request import LoRARequest

        from llm import models

        if adapter is not None:
            models.check_adapter(adapter)
            number = lora_id(adapter)
            self.lora_request = LoRARequest(f"adapter-{number}", number, str(adapter))
        else:
            self.lora_request = None
        self.adapter = adapter

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, **self.identity, "adapter": self.adapter, "batch_size": self.batch_size,
                "device": "cuda", "dtype": "bfloat16"}

    def sleep(self) -> None:
        if not self._asleep:
            self.engine.sleep(level=1)
            self._asleep = True

    def wake(self) -> None:
        if self._asleep:
            self.engine.wake_up()
            self._asleep = False

    def generate(self, requests: Sequence[SampleRequest]) -> Iterator[list[Sample]]:
        from vllm import SamplingParams

        from llm.models import prompt_token_ids

        self.wake()
        for request in requests:
            ids = prompt_token_ids(self.tokenizer, request.messages)
            for run in chunks(request.indices, self.batch_size):
                seeds = [sample_seed(request.seed, index) for index in run]
                start = time.perf_counter()
                outputs = self.engine.generate(
                    [{"prompt_token_ids": ids} for _ in run],
                    [SamplingParams(**vllm_sampling_arguments(self.decoding, seed)) for seed in seeds],
                    lora_request=self.lora_request, use_tqdm=True)
                seconds = time.perf_counter() - start
                samples = []
                for index, seed, output in zip(run, seeds, outputs):
                    completion = output.outputs[0]
                    samples.append(Sample(
                        index=index, text=completion.text, prompt_tokens=len(ids),
                        completion_tokens=len(completion.token_ids),
                        finish_reason="length" if completion.finish_reason == "length" else "stop",
                        seconds=round(seconds, 4), batch_size=len(run), seed=seed))
                yield samples

    def close(self) -> None:
        del self.engine


def make_backend(name: str, model: str, decoding: Decoding, batch_size: int, adapter: str | None = None,
                 device: str = "auto", max_lora_rank: int = 32, batching: str = "continuous",
                 keep_base: bool = False) -> SamplingBackend:
    """The backend `name`; `keep_base`: able to switch adapters (vLLM always is)."""
    if name == "transformers":
        return TransformersBackend(model, decoding, batch_size, adapter=adapter, device=device, batching=batching,
                                   keep_base=keep_base)
    if name == "vllm":
        return VLLMBackend(model, decoding, batch_size, adapter=adapter, device=device,
                           max_lora_rank=max_lora_rank)
    raise ValueError(f"unknown sampling backend {name!r}")
