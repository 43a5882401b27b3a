"""Image classification as a LightningModule."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from ..callbacks import ClassificationWriter
from ..optim import check_optimizer_args
from .base import Task


class Classifier(Task):
    """Wraps ``zoo.create_net(arch)``: cross-entropy training, top-1/top-5 accuracy.

    Args:
        arch: a registered classification model name.
        num_classes: number of classes (default: ``len(classes)``, else the spec's).
        classes: class names, for predictions (the CLI links them from the datamodule).
        in_chans: overrides the spec's input channels.
        label_smoothing: passed to the cross-entropy loss (of every head).
        aux_weight: weight of the auxiliary heads' losses. A net that returns a tuple
            ``(logits, *aux_logits)`` while training (GoogLeNet with its auxiliary classifiers)
            is trained on ``CE(logits) + aux_weight * sum_i CE(aux_logits_i)``; ``train/loss``
            logs that total and ``train/loss_main`` the first term. Evaluation and prediction
            use the logits the net returns in eval mode.
        optimizer ("sgd" | "adamw" | "adamax" | "adadelta"), lr, weight_decay, momentum: the default optimizer
            (:func:`zoo.optim.make_optimizer`: SGD with Nesterov momentum, AdamW, Adamax or Adadelta).
        warmup_epochs: the default schedule (:class:`zoo.optim.WarmupCosineLR`, stepped per
            optimizer step): a linear warmup over these epochs from ``lr / (warmup steps + 1)``,
            then a cosine down to 0 at the end of ``trainer.max_epochs``. A config's
            ``optimizer:`` / ``lr_scheduler:`` keys replace the optimizer and schedule.
        topk: how many labels ``predict_step`` returns.
        net_kwargs: extra keyword arguments for the net builder (e.g. ``drop_rate``).

    Batches are ``(images [N, C, H, W], labels [N])``.
    """

    def __init__(
        self,
        arch: str = "resnet18",
        num_classes: int | None = None,
        classes: list[str] | None = None,
        in_chans: int | None = None,
        label_smoothing: float = 0.0,
        aux_weight: float = 0.3,
        lr: float = 0.1,
        weight_decay: float = 1e-4,
        momentum: float = 0.9,
        optimizer: str = "sgd",
        warmup_epochs: int = 0,
        topk: int = 5,
        net_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.check_arch(arch, "classification")
        check_optimizer_args(optimizer, lr, weight_decay, momentum)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing: expected a value in [0, 1), got {label_smoothing}")
        if not aux_weight >= 0.0:
            raise ValueError(f"aux_weight: expected a value >= 0, got {aux_weight}")
        num_classes, classes = self.class_names(num_classes, classes)
        self.save_hyperparameters()
        self.build_net(arch, num_classes, classes, net_kwargs, in_chans=in_chans)
        if self.num_classes < 2:
            raise ValueError(f"num_classes: a classifier needs at least 2 classes, got {self.num_classes}")
        k5 = min(5, self.num_classes)
        self.metrics = torch.nn.ModuleDict(
            {
                f"{stage}_acc{k}": MulticlassAccuracy(self.num_classes, top_k=k, average="micro")
                for stage in ("val", "test")
                for k in (1, k5)
            }
        )
        self._k5 = k5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C, H, W] -> [N, num_classes]`` logits (while training, a net with auxiliary heads
        returns the tuple ``(logits, *aux_logits)``)."""
        return self.net(x)

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        out = self(x)
        if isinstance(out, tuple):  # (logits, *aux logits): e.g. GoogLeNet's auxiliary heads
            logits, *aux = out
            main = self._loss(logits, y)
            loss = main + self.hparams.aux_weight * sum(self._loss(a, y) for a in aux)
            self.log("train/loss_main", main, batch_size=x.shape[0])
        else:
            loss = self._loss(out, y)
        self.log("train/loss", loss, prog_bar=True, batch_size=x.shape[0])
        return loss

    def _eval_step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = self._loss(logits, y)
        self.log_eval_loss(stage, loss, x.shape[0])
        for k in sorted({1, self._k5}):
            metric = self.metrics[f"{stage}_acc{k}"]
            metric(logits, y)
            self.log(f"{stage}/acc{k}", metric, prog_bar=k == 1, batch_size=x.shape[0])
        return loss

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor] | None:
        """``{"labels": [N, k] int64, "probs": [N, k]}``: the top-k classes by softmax probability
        (None for a batch of None, whose items were all left out as corrupt)."""
        if batch is None:
            return None
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        probs = self(x).softmax(dim=1)
        k = min(self.hparams.topk, self.num_classes)
        top = probs.topk(k, dim=1)
        return {"labels": top.indices, "probs": top.values}

    def lr_scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int | None):
        """:meth:`Task.warmup_cosine` with ``warmup_epochs``."""
        return self.warmup_cosine(optimizer, total_steps, self.hparams.warmup_epochs)

    def prediction_writer(self) -> ClassificationWriter:
        return ClassificationWriter()
