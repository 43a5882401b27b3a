"""What the tasks share: the default optimizer and LR schedule, and the prediction writer hook."""
from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from ..optim import WarmupCosineLR, make_optimizer
from ..registry import ModelSpec, create_net, get_spec


class Task(pl.LightningModule):
    """Base of the zoo's LightningModules (``self.net`` is the wrapped ``nn.Module``).

    ``configure_optimizers`` builds the default optimizer from the hyper-parameters
    ``optimizer`` (a name in :data:`zoo.optim.OPTIMIZERS`), ``lr``, ``weight_decay`` and ``momentum``
    (:func:`zoo.optim.make_optimizer`: no weight decay on biases and norms) and the task's
    schedule from :meth:`lr_scheduler`, stepped once per optimizer step. A config's
    ``optimizer:`` / ``lr_scheduler:`` keys replace both (LightningCLI).
    """

    net: torch.nn.Module
    num_classes: int
    classes: list[str]

    @staticmethod
    def check_arch(arch: str, task: str) -> ModelSpec:
        """The spec of ``arch``; ``ValueError`` unless it is a ``task`` model."""
        spec = get_spec(arch)
        if spec.task != task:
            raise ValueError(f"arch: {arch!r} is a {spec.task} model, not a {task} model")
        return spec

    @staticmethod
    def class_names(num_classes: int | None, classes: list[str] | None) -> tuple[int | None, list[str] | None]:
        """``(num_classes, classes)`` with the names as strings and the count taken from them;
        ``ValueError`` when both are given and disagree."""
        if classes is None:
            return num_classes, None
        classes = [str(c) for c in classes]
        if num_classes is not None and num_classes != len(classes):
            raise ValueError(f"num_classes: {num_classes} does not match the {len(classes)} names in classes")
        return len(classes), classes

    def build_net(self, arch: str, num_classes: int | None, classes: list[str] | None,
                  net_kwargs: dict | None, **overrides) -> None:
        """``self.net = zoo.create_net(arch, ...)`` with ``net_kwargs``, ``num_classes`` and the
        ``overrides`` that are not None; sets ``num_classes`` and ``classes`` (names, or the
        indices as strings)."""
        kwargs = dict(net_kwargs or {})
        kwargs.update({k: v for k, v in {"num_classes": num_classes, **overrides}.items() if v is not None})
        self.net = create_net(arch, **kwargs)
        self.num_classes = int(self.net.num_classes)
        self.classes = classes or [str(i) for i in range(self.num_classes)]

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

    def warmup_cosine(self, optimizer: torch.optim.Optimizer, total_steps: int | None, warmup_epochs: int):
        """:class:`zoo.optim.WarmupCosineLR` over the run: ``warmup_epochs`` of linear warmup from
        ``lr / (warmup steps + 1)``, then a cosine to 0 at the end of ``trainer.max_epochs`` (None
        when the run has no known length)."""
        epochs = self._trainer.max_epochs if self._trainer is not None else None
        if total_steps is None or not epochs or epochs <= 0:
            return None
        warmup = min(total_steps - 1, warmup_epochs * max(1, total_steps // epochs))
        return WarmupCosineLR(optimizer, warmup_steps=warmup, total_steps=total_steps, start_factor=1 / (warmup + 1))

    def configure_optimizers(self):
        hp = self.hparams
        opt = make_optimizer(self.net, hp.optimizer, hp.lr, hp.weight_decay, hp.momentum)
        sched = self.lr_scheduler(opt, self.total_steps())
        if sched is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _eval_step(self, batch, stage: str) -> torch.Tensor:
        """The loss of one ``stage`` (``"val"`` / ``"test"``) batch, its metrics updated and logged."""
        raise NotImplementedError(f"{type(self).__name__} does not evaluate")

    def validation_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "test")

    def prediction_writer(self) -> Callback | None:
        """The callback that writes what ``predict`` returns (``python -m zoo predict`` adds it
        when the config names no prediction writer)."""
        return None
