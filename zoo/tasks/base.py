"""What the tasks share: the default optimizer and LR schedule, and the prediction writer hook."""
from __future__ import annotations

import math
import os
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torchmetrics import MeanMetric

from ..optim import WarmupCosineLR, make_optimizer
from ..registry import ModelSpec, create_net, get_spec
from ..serialization import load_file


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

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # the means behind val/loss and test/loss (log_eval_loss); non-persistent states, so
        # checkpoints are unchanged
        self.eval_loss = torch.nn.ModuleDict({stage: MeanMetric() for stage in ("val", "test")})

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | os.PathLike, map_location: Any = None,
                             hparams_file: str | os.PathLike | None = None, strict: bool | None = None,
                             weights_only: bool | None = None, **kwargs: Any) -> Task:
        """Lightning's ``load_from_checkpoint`` with the file read by
        :func:`zoo.serialization.load_file` (weights-only; a pickle that needs arbitrary code or
        objects is refused, a damaged file reported, each naming the file). ``map_location``
        defaults to the CPU; ``weights_only=False`` is refused. ``zoo.load(name, weights=...)``
        also takes plain state dicts."""
        from pytorch_lightning.core.saving import _load_state, load_hparams_from_tags_csv, load_hparams_from_yaml
        from pytorch_lightning.utilities.migration.utils import _pl_migrate_checkpoint

        if weights_only is False:
            raise ValueError("weights_only: the zoo reads checkpoints weights-only; weights_only=False is not supported")
        path = os.fspath(checkpoint_path)
        checkpoint = load_file(path, map_location="cpu" if map_location is None else map_location)
        if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
            raise ValueError(f"checkpoint_path: {path!r} is not a Lightning checkpoint (no 'state_dict'); "
                             "zoo.load(name, weights=path) reads plain state dicts")
        checkpoint = _pl_migrate_checkpoint(checkpoint, checkpoint_path=path)
        if hparams_file is not None:
            suffix = os.fspath(hparams_file).rsplit(".", 1)[-1].lower()
            if suffix not in ("csv", "yml", "yaml"):
                raise ValueError(".csv, .yml or .yaml is required for `hparams_file`")
            load = load_hparams_from_tags_csv if suffix == "csv" else load_hparams_from_yaml
            checkpoint[cls.CHECKPOINT_HYPER_PARAMS_KEY] = load(hparams_file)
        checkpoint.setdefault(cls.CHECKPOINT_HYPER_PARAMS_KEY, {})
        checkpoint[cls.CHECKPOINT_HYPER_PARAMS_KEY].update(kwargs)
        model = _load_state(cls, checkpoint, strict=strict, **kwargs)
        first = next((t for t in checkpoint["state_dict"].values() if isinstance(t, torch.Tensor)), None)
        return model if first is None else model.to(first.device)

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

    def log_eval_loss(self, stage: str, loss: torch.Tensor, batch_size: int) -> None:
        """Log ``{stage}/loss``: the mean over every sample of the stage, on every process.

        A torchmetrics ``MeanMetric`` weighted by the batch size (states summed across processes),
        not ``self.log(loss, sync_dist=True)``: Lightning averages the summed losses and the
        sample counts over the processes separately, and its average of the integer counts is
        truncated (361 samples on 2 processes count as 2 x 180), which skews the mean whenever
        the processes saw different numbers of samples, as they do under DDP with
        :class:`zoo.data.base.EvalShardSampler`."""
        metric = self.eval_loss[stage]
        metric.update(loss.detach().float(), batch_size)
        self.log(f"{stage}/loss", metric, prog_bar=True, batch_size=batch_size)

    def _eval_step(self, batch, stage: str) -> torch.Tensor:
        """The loss of one ``stage`` (``"val"`` / ``"test"``) batch, its metrics updated and logged."""
        raise NotImplementedError(f"{type(self).__name__} does not evaluate")

    # A batch of None: every item of it was corrupt and left out (skip_corrupt, zoo.data.corrupt);
    # Lightning's training loop skips it by itself, the evaluation and prediction loops do not.

    def validation_step(self, batch, batch_idx: int) -> torch.Tensor | None:
        return None if batch is None else self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> torch.Tensor | None:
        return None if batch is None else self._eval_step(batch, "test")

    def configure_callbacks(self) -> list[Callback]:
        """:class:`zoo.callbacks.SkippedItems` (logs ``data/skipped_<stage>``, the items a
        datamodule's ``skip_corrupt`` left out each epoch), with every trainer the task runs in."""
        from ..callbacks import SkippedItems

        return [SkippedItems()]

    def prediction_writer(self) -> Callback | None:
        """The callback that writes what ``predict`` returns (``python -m zoo predict`` adds it
        when the config names no prediction writer)."""
        return None
