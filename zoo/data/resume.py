"""Training batches that a run killed partway through an epoch can resume exactly.

Two things make a resumed run see the same batches as an uninterrupted one:

* :class:`ResumableSampler` shuffles each epoch with its own generator, seeded from
  ``(seed, epoch)`` (not from the global RNG), shards the order across DDP ranks, and can
  start an epoch ``skip_batches`` batches in: a resumed run skips the batches its checkpoint
  already trained on instead of starting the epoch again.
* Random augmentation must not depend on how many samples were loaded before (Lightning fetches
  a batch ahead, and workers run ahead of training). The sampler hands each index to the
  dataset with a seed of its own; :class:`SeededDataset` runs the dataset's ``__getitem__``
  with torch's, NumPy's and Python's RNGs seeded from it, and :class:`SeededCollate` does the
  same for the collate function (the detector's multi-scale size) with a seed per batch. The
  global RNG streams are restored afterwards, so loading data never moves them: the model's
  own randomness (dropout, ...) is checkpointed by :class:`zoo.callbacks.RNGStates`.
"""
from __future__ import annotations

import math
import random
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torch.utils.data._utils.collate import default_collate

_MASK = (1 << 63) - 1


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (a splitmix64-style hash): nearby inputs give unrelated seeds."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
        h = h * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 29
    return h & _MASK


class _SeededRNGs:
    """A context that seeds torch's, NumPy's and Python's global RNGs with ``seed`` and restores
    their previous states on exit."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __enter__(self) -> None:
        self._torch = torch.get_rng_state()
        self._numpy = np.random.get_state()
        self._python = random.getstate()
        torch.manual_seed(self.seed)
        np.random.seed(self.seed % (1 << 32))
        random.seed(self.seed)

    def __exit__(self, *exc) -> None:
        torch.set_rng_state(self._torch)
        np.random.set_state(self._numpy)
        random.setstate(self._python)


class SeededDataset(Dataset):
    """``dataset`` read with ``(index, sample_seed, batch_seed)`` keys from a
    :class:`ResumableSampler`: each item is made under RNGs seeded with ``sample_seed`` and
    comes back as ``(batch_seed, item)`` for :class:`SeededCollate`."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[int, Any]:
        index, sample_seed, batch_seed = key
        with _SeededRNGs(sample_seed):
            return batch_seed, self.dataset[index]

    def __getattr__(self, name: str) -> Any:
        """The wrapped dataset's plain attributes (``classes``, ``files``, ...); not its dunders
        (a ``Subset``'s ``__getitems__`` would be handed the sampler's tuple keys)."""
        if name == "dataset" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


class SeededCollate:
    """``collate_fn`` (default: torch's) over the items of :class:`SeededDataset`, run under RNGs
    seeded with the batch's seed."""

    def __init__(self, collate_fn: Callable | None = None) -> None:
        self.collate_fn = collate_fn or default_collate

    def __call__(self, batch: Sequence[tuple[int, Any]]) -> Any:
        seed = batch[0][0] if len(batch) else 0
        with _SeededRNGs(seed):
            return self.collate_fn([item for _, item in batch])


class ResumableSampler(DistributedSampler):
    """The training order: a permutation of ``range(n)`` per epoch from a generator seeded with
    ``(seed, epoch)`` (or ``range(n)`` without ``shuffle``), split across DDP ranks as torch's
    :class:`~torch.utils.data.DistributedSampler` does (rank ``r`` takes every ``world``-th index,
    the order padded by repeating its start so every rank has as many; one rank without DDP).

    Yields ``(index, sample_seed, batch_seed)`` for :class:`SeededDataset`; ``batch_size`` only
    decides which items share a batch seed. :meth:`skip` makes the next pass start that many
    batches into the epoch (once). ``progress`` (optional) is asked, as each pass starts, for
    ``(epoch, batches already done in it)``: a loader built before Lightning restored a checkpoint
    (Lightning builds it early to count the run's steps) then still starts where the checkpoint
    left off. A ``DistributedSampler``, so Lightning keeps it under DDP.
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool = True, seed: int = 0,
                 progress: Callable[[], tuple[int, int]] | None = None) -> None:
        if dist.is_available() and dist.is_initialized():
            world, rank = dist.get_world_size(), dist.get_rank()
        else:
            world, rank = 1, 0
        # (DistributedSampler wants a dataset only for its length)
        super().__init__(range(n), num_replicas=world, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.n = n
        self.batch_size = int(batch_size)
        self.progress = progress
        self._skip = 0

    def skip(self, batches: int) -> None:
        """Start the next pass ``batches`` batches into the epoch (a resumed run)."""
        self._skip = max(0, int(batches))

    def order(self) -> list[int]:
        """This rank's indices for the current epoch, before any skip."""
        if self.shuffle:
            g = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        total = self.num_samples * self.num_replicas
        if total > len(order) and order:
            order += (order * math.ceil((total - len(order)) / len(order)))[: total - len(order)]
        return order[self.rank:total:self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        if self.progress is not None:
            epoch, done = self.progress()
            self.set_epoch(epoch)
            self.skip(done)
        order = self.order()
        start, self._skip = min(len(order), self._skip * self.batch_size), 0
        for pos in range(start, len(order)):
            i = order[pos]
            yield i, mix_seed(self.seed, self.epoch, self.rank, pos, 1), mix_seed(
                self.seed, self.epoch, self.rank, pos // self.batch_size, 2)


class ResumableLoader(DataLoader):
    """A DataLoader over a :class:`ResumableSampler` that Lightning recognises as resumable
    (``state_dict`` / ``load_state_dict``, saved in each checkpoint): its state is the sampler's
    seed, which a resumed run takes over (the position in the epoch comes from Lightning's own
    progress, see :class:`ResumableSampler`'s ``progress``)."""

    def state_dict(self) -> dict[str, int]:
        return {"seed": int(self.sampler.seed), "epoch": int(self.sampler.epoch)}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        if "seed" in state_dict:
            self.sampler.seed = int(state_dict["seed"])


__all__ = ["ResumableLoader", "ResumableSampler", "SeededCollate", "SeededDataset", "mix_seed"]
