"""What the datamodules share: loaders over the splits their ``setup`` makes."""
from __future__ import annotations

from typing import Callable

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset


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

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True, self.train_collate())

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_set, False)
