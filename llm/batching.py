"""Continuous batching for one fixed prompt: a decode loop that refills a finished sequence's slot
with the next sample at once, so no decoding step is spent on a sequence that has ended.

Every sample of a job has the same prompt (the loop's fixed prompt), so the prompt is prefilled once
and its key/value cache shared by every sequence. Each slot then decodes its own sample with its own
`torch.Generator` seeded from (job seed, sample index): what a sample draws does not depend on which
samples it shared a batch with (up to floating-point ties between batch shapes), so a resumed job
draws the samples it had not finished with the same seeds. Rows of different lengths share one cache
tensor: each row's tokens are right-aligned, earlier columns masked, positions passed explicitly
(what left-padded batch generation does); columns no live row needs are dropped as rows finish.
The cache lives in preallocated tensors written one column per step (`_Store`), not re-concatenated.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.cache_utils import DynamicLayer

from contracts.llm import Decoding


@dataclass
class Finished:
    index: int
    tokens: list[int]  # the completion, end-of-turn token included when it stopped on one
    stopped: bool  # ended on an end-of-turn token (else max_new_tokens)
    seconds: float  # wall time from its first token to its last


@dataclass
class _Slot:
    index: int
    generator: torch.Generator
    started: float
    tokens: list[int] = field(default_factory=list)


@dataclass
class Counters:
    """Decode work done: rows computed per step, and those that belonged to a live sample."""

    computed: int = 0
    useful: int = 0


def sample_rows(logits: torch.Tensor, decoding: Decoding, generators: Sequence[torch.Generator]) -> list[int]:
    """One token per row of `logits` ([rows, vocabulary]), each from its own generator, processed as
    transformers does (temperature, then top-k, then top-p). The draw is one uniform number per row
    from its generator, turned into a token by the inverse of the row's distribution, so every row
    is batched on the device and still owes nothing to its neighbours."""
    if not decoding.do_sample:
        return logits.argmax(-1).tolist()
    scores = logits.float() / decoding.temperature
    if 0 < decoding.top_k < scores.shape[-1]:
        kth = torch.topk(scores, decoding.top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if decoding.top_p < 1.0:
        ordered, order = torch.sort(scores, descending=False, dim=-1)
        remove = ordered.softmax(-1).cumsum(-1) <= 1 - decoding.top_p
        remove[..., -1] = False  # keep at least the most likely token
        scores = scores.masked_fill(remove.scatter(-1, order, remove), float("-inf"))
    cumulative = scores.softmax(-1).cumsum(-1)
    draws = torch.stack([torch.rand((), generator=g) for g in generators]).to(cumulative.device)
    tokens = torch.searchsorted(cumulative, (draws * cumulative[:, -1])[:, None]).clamp_(max=scores.shape[-1] - 1)
    return tokens[:, 0].tolist()


def decode(model, prompt_ids: torch.Tensor, indices: Sequence[int], seeds: Sequence[int], slots: int,
           decoding: Decoding, eos_ids: set[int], counters: Counters | None = None) -> Iterator[Finished]:  # type: ignore[no-untyped-def]
    """Draw one completion per index (its generator seeded with the matching seed), `slots` at a
    time, yielding each as it finishes."""
    from transformers import Cache

    device = prompt_ids.device
    counters = counters if counters is not None else Counters()
    queue = list(zip(indices, seeds))
    if not queue:
        return
    with torch.inference_mode():
        prefill = model(input_ids=prompt_ids, use_cache=True)
        prompt_cache = [(layer.keys, layer.values) for layer in prefill.past_key_values.layers]
        prompt_logits = prefill.logits[0, -1]
        prompt_length = prompt_ids.shape[1]
        width = min(slots, len(queue))
        store = _Store(prompt_cache, width, decoding.max_new_tokens)
        cache = Cache(layers=[_StoreLayer(store, layer) for layer in range(len(prompt_cache))])
        positions = torch.full((width,), prompt_length, dtype=torch.long, device=device)
        rows = [_start(queue.pop(0)) for _ in range(width)]
        pending = sample_rows(prompt_logits.expand(width, -1), decoding, [slot.generator for slot in rows])

        while rows:
            # Take each row's new token; a row that ended is yielded and its slot refilled with the
            # next sample (whose first token comes from the shared prompt), or closed when none is left.
            alive: list[int] = []
            for row in range(len(rows)):
                while True:
                    slot, token = rows[row], pending[row]
                    slot.tokens.append(token)
                    if token not in eos_ids and len(slot.tokens) < decoding.max_new_tokens:
                        alive.append(row)
                        break
                    yield Finished(slot.index, slot.tokens, token in eos_ids, time.perf_counter() - slot.started)
                    if not queue:
                        break
                    rows[row] = _start(queue.pop(0))
                    pending[row] = sample_rows(prompt_logits[None], decoding, [rows[row].generator])[0]
                    store.place_prompt(row, prompt_cache)
                    positions[row] = prompt_length
            if len(alive) < len(rows):
                keep = torch.tensor(alive, device=device, dtype=torch.long)
                store.keep_rows(keep)
                positions = positions.index_select(0, keep)
                rows = [rows[r] for r in alive]
            if not rows:
                break
            store.drop_unattended_columns()
            # One decoding step for every live row: its last token in (written in place into the
            # store's next column by every layer), the next token out.
            step_mask = store.open_column()
            out = model(input_ids=torch.tensor([slot.tokens[-1] for slot in rows], device=device)[:, None],
                        attention_mask=step_mask, position_ids=positions[:, None], past_key_values=cache,
                        use_cache=True)
            store.close_column()
            positions = positions + 1
            counters.computed += len(rows)
            counters.useful += len(rows)
            pending = sample_rows(out.logits[:, -1], decoding, [slot.generator for slot in rows])


def _start(item: tuple[int, int]) -> _Slot:
    index, seed = item
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return _Slot(index=index, generator=generator, started=time.perf_counter())


class _Store:
    """Every row's keys and values, per layer, in preallocated tensors [rows, heads, capacity, dim], and
    the attention mask [rows, capacity]; the live columns are [start, end).

    A decoding step writes one column in place (`DynamicCache` would copy the whole cache to append it,
    every step, which on a CPU costs more than the attention); the leading columns no live row attends
    to are dropped by moving `start`; the live columns are copied, into tensors with `reserve` free
    columns, only when the capacity is used up. Rows are right-aligned: a refilled row's prompt ends at
    `end`.
    """

    def __init__(self, prompt_cache: list[tuple[torch.Tensor, torch.Tensor]], rows: int, reserve: int) -> None:
        self.prompt_length, self.reserve = prompt_cache[0][0].shape[2], max(reserve, 1)
        capacity = self.prompt_length + self.reserve
        self.keys = [_zeros(k, rows, capacity) for k, _ in prompt_cache]
        self.values = [_zeros(v, rows, capacity) for _, v in prompt_cache]
        self.mask = torch.zeros(rows, capacity, dtype=torch.long, device=prompt_cache[0][0].device)
        self.start, self.end = 0, self.prompt_length
        for layer, (k, v) in enumerate(prompt_cache):
            self.keys[layer][:, :, :self.end] = k
            self.values[layer][:, :, :self.end] = v
        self.mask[:, :self.end] = 1

    @property
    def width(self) -> int:
        return self.end - self.start

    def place_prompt(self, row: int, prompt_cache: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Put the shared prompt's cache into `row`, ending at the live end; mask everything before it.
        (Every live row attends to its whole prompt, so the live width is never below the prompt's.)"""
        first = self.end - self.prompt_length
        for layer, (k, v) in enumerate(prompt_cache):
            self.keys[layer][row, :, first:self.end] = k[0]
            self.values[layer][row, :, first:self.end] = v[0]
        self.mask[row, self.start:first] = 0
        self.mask[row, first:self.end] = 1

    def keep_rows(self, keep: torch.Tensor) -> None:
        live = slice(self.start, self.end)
        self.keys = [k[:, :, live].index_select(0, keep) for k in self.keys]
        self.values = [v[:, :, live].index_select(0, keep) for v in self.values]
        self.mask = self.mask[:, live].index_select(0, keep)
        self.start, self.end = 0, self.end - self.start

    def drop_unattended_columns(self) -> None:
        attended = self.mask[:, self.start:self.end].any(dim=0)
        self.start += int(attended.nonzero()[0])  # the last prompt column of every row is attended

    def open_column(self) -> torch.Tensor:
        """Room for one more column (the live columns copied into tensors with `reserve` free columns
        when the capacity is used up), unmasked for every row: the step's mask over the live columns
        and the new one."""
        if self.end == self.mask.shape[1]:
            live, width = slice(self.start, self.end), self.width
            self.keys = [_moved(k, live, width + self.reserve) for k in self.keys]
            self.values = [_moved(v, live, width + self.reserve) for v in self.values]
            mask = torch.zeros(self.mask.shape[0], width + self.reserve, dtype=self.mask.dtype,
                               device=self.mask.device)
            mask[:, :width] = self.mask[:, live]
            self.mask, self.start, self.end = mask, 0, width
        self.mask[:, self.end] = 1
        return self.mask[:, self.start:self.end + 1]

    def write(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer's new column (keys/values [rows, heads, 1, dim]): its live keys and values."""
        self.keys[layer][:, :, self.end] = keys[:, :, 0]
        self.values[layer][:, :, self.end] = values[:, :, 0]
        live = slice(self.start, self.end + 1)
        return self.keys[layer][:, :, live], self.values[layer][:, :, live]

    def close_column(self) -> None:
        self.end += 1


def _zeros(like: torch.Tensor, rows: int, capacity: int) -> torch.Tensor:
    # Zeros, not empty: a masked column's value is multiplied by a zero weight, and must not be NaN.
    return torch.zeros(rows, like.shape[1], capacity, like.shape[3], dtype=like.dtype, device=like.device)


def _moved(t: torch.Tensor, live: slice, capacity: int) -> torch.Tensor:
    out = _zeros(t, t.shape[0], capacity)
    out[:, :, :live.stop - live.start] = t[:, :, live]
    return out


class _StoreLayer(DynamicLayer):
    """One layer of the model's cache, kept in the `_Store`."""

    def __init__(self, store: _Store, layer: int) -> None:
        super().__init__()
        self.store, self.layer, self.is_initialized = store, layer, True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        return None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
               ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.store.write(self.layer, key_states, value_states)

    def get_seq_length(self) -> int:
        return self.store.width

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.store.width + query_length, 0
