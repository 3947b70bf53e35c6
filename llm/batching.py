"""Continuous batching for one fixed prompt: a decode loop that refills a finished sequence's slot
with the next sample at once, so no decoding step is spent on a sequence that has ended.

Every sample of a job has the same prompt (the loop's fixed prompt), so the prompt is prefilled once
and its key/value cache shared by every sequence. Each slot then decodes its own sample with its own
`torch.Generator` seeded from (job seed, sample index): what a sample draws does not depend on which
samples it shared a batch with (up to floating-point ties between batch shapes), so a resumed job
draws the samples it had not finished with the same seeds. Rows of different lengths share one cache
tensor: each row's tokens are right-aligned, earlier columns masked, positions passed explicitly
(what left-padded batch generation does); columns no live row needs are dropped as rows finish.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

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
        keys = [k.expand(width, -1, -1, -1).contiguous() for k, _ in prompt_cache]
        values = [v.expand(width, -1, -1, -1).contiguous() for _, v in prompt_cache]
        mask = torch.ones(width, prompt_length, dtype=torch.long, device=device)
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
                    _place_prompt(keys, values, mask, positions, row, prompt_cache, prompt_length)
            if len(alive) < len(rows):
                keep = torch.tensor(alive, device=device, dtype=torch.long)
                keys = [k.index_select(0, keep) for k in keys]
                values = [v.index_select(0, keep) for v in values]
                mask, positions = mask.index_select(0, keep), positions.index_select(0, keep)
                rows = [rows[r] for r in alive]
            if not rows:
                break
            keys, values, mask = _compact(keys, values, mask)
            # One decoding step for every live row: its last token in, the next token out.
            step_mask = torch.cat([mask, torch.ones(len(rows), 1, dtype=torch.long, device=device)], dim=1)
            cache = _cache(keys, values)
            out = model(input_ids=torch.tensor([slot.tokens[-1] for slot in rows], device=device)[:, None],
                        attention_mask=step_mask, position_ids=positions[:, None], past_key_values=cache,
                        use_cache=True)
            keys = [layer.keys for layer in cache.layers]
            values = [layer.values for layer in cache.layers]
            mask, positions = step_mask, positions + 1
            counters.computed += len(rows)
            counters.useful += len(rows)
            pending = sample_rows(out.logits[:, -1], decoding, [slot.generator for slot in rows])


def _start(item: tuple[int, int]) -> _Slot:
    index, seed = item
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return _Slot(index=index, generator=generator, started=time.perf_counter())


def _place_prompt(keys: list[torch.Tensor], values: list[torch.Tensor], mask: torch.Tensor, positions: torch.Tensor,
                  row: int, prompt_cache: list[tuple[torch.Tensor, torch.Tensor]], prompt_length: int) -> None:
    """Put the shared prompt's cache into `row`, right-aligned; mask everything before it."""
    width = mask.shape[1]
    for layer, (k, v) in enumerate(prompt_cache):
        keys[layer][row].zero_()
        values[layer][row].zero_()
        keys[layer][row, :, width - prompt_length:] = k[0]
        values[layer][row, :, width - prompt_length:] = v[0]
    mask[row] = 0
    mask[row, width - prompt_length:] = 1
    positions[row] = prompt_length


def _compact(keys: list[torch.Tensor], values: list[torch.Tensor], mask: torch.Tensor
             ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """Drop the leading cache columns that no live row attends to."""
    live = mask.any(dim=0)
    first = int(live.nonzero()[0]) if bool(live.any()) else 0
    if first == 0:
        return keys, values, mask
    return [k[:, :, first:] for k in keys], [v[:, :, first:] for v in values], mask[:, first:]


def _cache(keys: list[torch.Tensor], values: list[torch.Tensor]):  # type: ignore[no-untyped-def]
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=list(zip(keys, values)))
