"""What the datamodules share: loaders over the splits their ``setup`` makes."""
from __future__ import annotations

from typing import Any, Callable

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch.utils.data import (BatchSampler, DataLoader, Dataset, DistributedSampler, IterableDataset,
                              SequentialSampler)

from .resume import ResumableLoader, ResumableSampler, SeededCollate, SeededDataset


class EvalShardSampler(DistributedSampler):
    """The evaluation samples of one DDP process: rank ``r`` of ``W`` takes the contiguous block
    ``[r * n // W, (r + 1) * n // W)`` of ``range(n)``, in order; every sample goes to exactly one
    rank (no padding, no repeats), and the block sizes differ by at most one.

    torch's :class:`~torch.utils.data.DistributedSampler`, which Lightning puts in front of val /
    test loaders under DDP, repeats samples until ``n`` divides by ``W``, so those samples count
    twice in the metrics; a sampler that already is a ``DistributedSampler`` is left alone by
    Lightning. Contiguous blocks (not ``r::W``) make the ranks' states, gathered in rank order,
    come back in dataset order, so that even order-dependent metrics (COCO mAP breaks score ties
    by image order) equal a single process's.

    Raises ``ValueError`` when ``n < W``: a rank without samples would log nothing and leave
    the others waiting in the metrics' synchronisation.
    """

    def __init__(self, dataset: Dataset, num_replicas: int | None = None, rank: int | None = None) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        n, world = len(dataset), self.num_replicas  # type: ignore[arg-type]
        if n < world:
            raise ValueError(f"the evaluation set has {n} sample(s), fewer than the {world} processes: "
                             f"every process needs at least one")
        self.start, self.stop = self.rank * n // world, (self.rank + 1) * n // world
        self.num_samples = self.stop - self.start
        self.total_size = n

    def __iter__(self):
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.num_samples


def shard_for_eval(loader: DataLoader) -> DataLoader:
    """``loader`` re-made with an :class:`EvalShardSampler` when ``torch.distributed`` is initialised
    with more than one process (and ``loader`` reads a map-style dataset in order, in batches of
    ``batch_size``); else ``loader`` itself."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return loader
    if (isinstance(loader.dataset, IterableDataset) or type(loader.sampler) is not SequentialSampler
            or loader.batch_size is None or type(loader.batch_sampler) is not BatchSampler):
        return loader
    kwargs = dict(batch_size=loader.batch_size, num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                  pin_memory=loader.pin_memory, drop_last=loader.drop_last, timeout=loader.timeout,
                  worker_init_fn=loader.worker_init_fn, multiprocessing_context=loader.multiprocessing_context,
                  generator=loader.generator, persistent_workers=loader.persistent_workers)
    if loader.num_workers > 0:
        kwargs["prefetch_factor"] = loader.prefetch_factor
    return DataLoader(loader.dataset, sampler=EvalShardSampler(loader.dataset), **kwargs)


class SplitDataModule(pl.LightningDataModule):
    """A datamodule whose ``setup`` sets ``train_set`` / ``val_set`` / ``test_set`` /
    ``predict_set``; the loaders take ``batch_size`` and ``num_workers`` from its hyper-parameters
    (workers persist between epochs), ``collate_fn`` (None: torch's default) and, for training,
    :meth:`train_collate`."""

    train_set: Dataset | None = None
    val_set: Dataset | None = None
    test_set: Dataset | None = None
    predict_set: Dataset | None = None
    collate_fn: Callable | None = None

    def train_collate(self) -> Callable | None:
        """The collate function of training batches (default: ``collate_fn``)."""
        return self.collate_fn

    def _loader(self, ds: Dataset | None, shuffle: bool, collate_fn: Callable | None = None) -> DataLoader:
        if ds is None:
            raise RuntimeError(f"{type(self).__name__}: call setup() for this stage first")
        return DataLoader(ds, batch_size=self.hparams.batch_size, shuffle=shuffle,
                          num_workers=self.hparams.num_workers, collate_fn=collate_fn or self.collate_fn,
                          persistent_workers=self.hparams.num_workers > 0)

    def train_batch_size(self) -> int:
        """The number of dataset items per training batch (default: ``batch_size``)."""
        return self.hparams.batch_size

    def shuffle_seed(self) -> int:
        """The seed of the training order and augmentation (:mod:`zoo.data.resume`): the process's
        torch seed (``seed_everything``) when first asked, then kept, and saved in checkpoints so
        that a resumed run continues with it."""
        if getattr(self, "_shuffle_seed", None) is None:
            self._shuffle_seed = int(torch.initial_seed())
        return self._shuffle_seed

    def state_dict(self) -> dict[str, Any]:
        return {"shuffle_seed": self.shuffle_seed()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "shuffle_seed" in state_dict:
            self._shuffle_seed = int(state_dict["shuffle_seed"])

    def _train_progress(self) -> tuple[int, int]:
        """``(epoch, training batches already done in it)`` for the training sampler: the batches
        done are 0 unless Lightning is restarting a fit from a mid-epoch checkpoint."""
        trainer = self.trainer
        if trainer is None:
            return 0, 0
        if not trainer.fit_loop.restarting:
            return trainer.current_epoch, 0
        # (`processed`, not `completed`: a checkpoint written in on_train_batch_end has the batch
        # processed but not yet completed, and Lightning completes it only after asking for data)
        return trainer.current_epoch, int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches that resume exactly (:mod:`zoo.data.resume`): the order and
        each item's augmentation depend only on the seed, the epoch and the position, and a run
        restarted from a mid-epoch checkpoint skips the batches it already trained on."""
        ds = self.train_set
        if ds is None:
            raise RuntimeError(f"{type(self).__name__}: call setup() for this stage first")
        batch_size = self.train_batch_size()
        sampler = ResumableSampler(len(ds), batch_size, shuffle=True, seed=self.shuffle_seed(),
                                   progress=self._train_progress)
        workers = self.hparams.num_workers
        # (a generator of its own: the loader draws its workers' base seed from it, not from the
        # global RNG, whose stream is checkpointed for the model's randomness)
        return ResumableLoader(SeededDataset(ds), batch_size=batch_size, sampler=sampler, num_workers=workers,
                               collate_fn=SeededCollate(self.train_collate()), persistent_workers=workers > 0,
                               generator=torch.Generator().manual_seed(self.shuffle_seed()))

    # Evaluation and prediction loaders: in order; under DDP, each process reads its own
    # contiguous block of the set, every sample exactly once (shard_for_eval, EvalShardSampler).

    def val_dataloader(self) -> DataLoader:
        return shard_for_eval(self._loader(self.val_set, False))

    def test_dataloader(self) -> DataLoader:
        return shard_for_eval(self._loader(self.test_set, False))

    def predict_dataloader(self) -> DataLoader:
        return shard_for_eval(self._loader(self.predict_set, False))
