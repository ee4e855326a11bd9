"""Deterministic, resumable batches: the samples of iteration t depend only on (seed, t).

Every epoch is a fresh permutation drawn from ``seed + epoch``; the global batch of iteration
``t`` is the next ``batch_size`` indices of that stream, split between the ranks. Each sample
also gets its own augmentation seed from ``(seed, t, position)``, so a run resumed from a
checkpoint at iteration t sees exactly the batches (and crops, flips) that an uninterrupted run
would, whatever the number of loader processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def epoch_permutation(num_samples: int, seed: int, epoch: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_samples, generator=generator).tolist()


def global_batch(num_samples: int, batch_size: int, seed: int, iteration: int) -> list[int]:
    """Dataset indices of the global batch of ``iteration`` (drawn without replacement per
    epoch; a batch can straddle two epochs)."""
    start = iteration * batch_size
    indices: list[int] = []
    while len(indices) < batch_size:
        epoch, offset = divmod(start + len(indices), num_samples)
        take = min(batch_size - len(indices), num_samples - offset)
        indices += epoch_permutation(num_samples, seed, epoch)[offset:offset + take]
    return indices


class IterationBatchSampler(Sampler[list[tuple[int, int, int]]]):
    """Yields this rank's share of the global batches of iterations ``start .. stop - 1`` as
    ``(dataset index, iteration, position)`` triples."""

    def __init__(self, num_samples: int, batch_size: int, seed: int, start: int, stop: int,
                 rank: int = 0, world_size: int = 1) -> None:
        if batch_size % world_size:
            raise ValueError(f"batch_size={batch_size} must divide by world_size={world_size}")
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.start, self.stop, self.rank, self.world_size = start, stop, rank, world_size

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        per_rank = self.batch_size // self.world_size
        for iteration in range(self.start, self.stop):
            batch = global_batch(self.num_samples, self.batch_size, self.seed, iteration)
            mine = range(self.rank * per_rank, (self.rank + 1) * per_rank)
            yield [(batch[p], iteration, p) for p in mine]


class SeededSamples(Dataset):
    """Wraps a dataset so that item ``(index, iteration, position)`` is drawn with the torch
    RNG seeded from ``(seed, iteration, position)`` (augmentations become reproducible)."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int, int]) -> Any:
        index, iteration, position = key
        # the CPU generator only (augmentations draw on the CPU): torch.manual_seed would also
        # seed every accelerator backend, which without one formats a stack trace per call
        # (~1 ms: seconds per training on the default profile)
        generator = torch.random.default_generator
        state = generator.get_state()
        generator.manual_seed((self.seed * 1_000_003 + iteration) * 4099 + position)
        try:
            return self.dataset[index]
        finally:
            generator.set_state(state)


def iteration_loader(dataset: Dataset, batch_size: int, seed: int, start: int, stop: int,
                     rank: int, world_size: int, workers: int,
                     collate_fn: Callable[[Sequence[Any]], Any] | None = None) -> DataLoader:
    """A loader over iterations ``start .. stop - 1`` of this rank (see module docstring)."""
    sampler = IterationBatchSampler(len(dataset), batch_size, seed, start, stop,  # type: ignore[arg-type]
                                    rank, world_size)
    return DataLoader(SeededSamples(dataset, seed), batch_sampler=sampler, num_workers=workers,
                      collate_fn=collate_fn, persistent_workers=False)
