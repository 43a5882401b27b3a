"""What the tasks share: the default optimizer and LR schedule, and the prediction writer hook."""
from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from ..optim import OPTIMIZERS, make_optimizer


class Task(pl.LightningModule):
    """Base of the zoo's LightningModules (``self.net`` is the wrapped ``nn.Module``).

    ``configure_optimizers`` builds the default optimizer from the hyper-parameters
    ``optimizer`` (``"sgd"`` | ``"adamw"``), ``lr``, ``weight_decay`` and ``momentum``
    (:func:`zoo.optim.make_optimizer`: no weight decay on biases and norms) and the task's
    schedule from :meth:`lr_scheduler`, stepped once per optimizer step. A config's
    ``optimizer:`` / ``lr_scheduler:`` keys replace both (LightningCLI).
    """

    net: torch.nn.Module

    @staticmethod
    def check_optimizer(name: str) -> None:
        if name not in OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {name!r}")

    def total_steps(self) -> int | None:
        """Optimizer steps of the whole run (``Trainer.estimated_stepping_batches``), or None when
        there is no trainer, no data yet or no end."""
        trainer = self._trainer
        if trainer is None:
            return None
        try:
            total = trainer.estimated_stepping_batches
        except Exception:  # noqa: BLE001  (no datamodule / dataloaders attached yet)
            return None
        if not math.isfinite(total) or total <= 0:
            return None
        return int(total)

    def lr_scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int | None):
        """The default schedule for ``optimizer`` over ``total_steps`` steps (None: a constant lr)."""
        return None

    def configure_optimizers(self):
        hp = self.hparams
        opt = make_optimizer(self.net, hp.optimizer, hp.lr, hp.weight_decay, hp.momentum)
        sched = self.lr_scheduler(opt, self.total_steps())
        if sched is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def prediction_writer(self) -> Callback | None:
        """The callback that writes what ``predict`` returns (``python -m zoo predict`` adds it
        when the config names no prediction writer)."""
        return None
