"""The training data path: uint8 images resident on the training device, augmented with batched
tensor ops (random crop with zero padding, horizontal flip) and normalised on the fly — no
per-sample PIL work, no DataLoader (the airbench approach)."""

from __future__ import annotations

from collections.abc import Iterator

import torch

# Augment this many images at once, then hand out `batch_size` slices of them.
_CHUNK = 2048


def normalise(images_uint8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (images_uint8.float().div_(255.0) - mean) / std


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Pad by `padding` zeros on each side, then crop back to size at a random offset per image."""
    if padding == 0:
        return images
    n, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device="cpu").to(images.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device="cpu").to(images.device)
    rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = torch.rand(images.shape[0], generator=generator, device="cpu").lt(0.5).to(images.device)
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


class SecondPass(Exception):
    """`learn()` iterated the training stream a second time: one epoch is the protocol."""


class TrainBatches:
    """One seeded, shuffled, augmented pass over (images, labels), as `(inputs, labels)` batches.

    It can be iterated once: a second `iter()` raises SecondPass and is remembered in `passes`, which
    the runner checks after `learn()` returns (so catching the exception does not hide it). A
    candidate can still copy the batches it was given and train on them again: that is not
    enforceable inside its own process (a residual risk, documented).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int,
                 mean: list[float], std: list[float], crop_padding: int, horizontal_flip: bool) -> None:
        self.images = images  # uint8 (N, C, H, W) on the training device
        self.labels = labels  # int64 (N,) on the training device
        self.batch_size = batch_size
        self.crop_padding = crop_padding
        self.horizontal_flip = horizontal_flip
        self.mean = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.passes = 0

    def __len__(self) -> int:
        return (len(self.labels) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.passes += 1
        if self.passes > 1:
            raise SecondPass("the training stream was iterated a second time (one epoch is the protocol)")
        return self._batches()

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.labels), generator=self.generator).to(self.images.device)
        chunk = max(self.batch_size, (_CHUNK // self.batch_size) * self.batch_size)
        for start in range(0, len(order), chunk):
            index = order[start:start + chunk]
            images = normalise(self.images[index], self.mean, self.std)
            images = random_crop(images, self.crop_padding, self.generator)
            if self.horizontal_flip:
                images = random_flip(images, self.generator)
            labels = self.labels[index]
            for b in range(0, len(index), self.batch_size):
                yield images[b:b + self.batch_size], labels[b:b + self.batch_size]
