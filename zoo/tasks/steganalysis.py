"""Steganalysis (cover vs stego) as a LightningModule."""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torchmetrics.classification import BinaryAUROC, MulticlassAccuracy

from ..callbacks import SteganalysisWriter
from ..metrics import ProbabilityOfError, WeightedAUC
from ..optim import MultiStepDecayLR, WarmupExponentialLR, check_gamma, check_optimizer_args
from .base import Task


def stego_probability(logits: torch.Tensor) -> torch.Tensor:
    """``P(stego) = 1 - P(cover)`` from ``[N, K+1]`` logits whose class 0 is the cover: ``[N]``."""
    return 1.0 - logits.float().softmax(dim=1)[:, 0]


class Steganalyzer(Task):
    """Wraps ``zoo.create_net(arch)`` (a ``steganalysis`` model): cover vs stego.

    Two classes (cover, stego), or cover + K embedding algorithms as K + 1 classes; either
    way the detection score is ``P(stego) = 1 - P(cover)`` (:func:`stego_probability`) and
    the detection metrics treat every non-cover label as stego.

    Args:
        arch: a registered steganalysis model name (``xunet``, ``yenet``, ``srnet``, ``srnet_rgb``).
        num_classes: 2, or K + 1 (default: ``len(classes)``, else 2).
        classes: class names, class 0 the cover (the CLI links them from the datamodule).
        in_chans: overrides the spec's input channels.
        optimizer ("adamax" | "adadelta" | "sgd" | "adamw"), lr, weight_decay, momentum: the
            default optimizer (:func:`zoo.optim.make_optimizer`; no weight decay on biases and
            norms). The papers' recipes: SRNet Adamax lr 1e-3 with L2 2e-4 and the lr divided by
            10 for the last fifth of the run (``lr_milestones: [0.8]``); YeNet Adadelta lr 0.4,
            rho (``momentum``) 0.95, weight decay 5e-4; XuNet SGD momentum 0.9, lr 1e-3, weight
            decay 5e-4, lr x 0.9 every 5,000 steps (``lr_decay_steps: 5000, lr_gamma: 0.9``).
            ``configs/steganalysis/*.yaml`` hold them.
        lr_milestones: fractions of the run (in (0, 1)) at which the lr is multiplied by
            ``lr_gamma`` (:class:`zoo.optim.MultiStepDecayLR`, stepped per optimizer step).
        lr_decay_steps: instead, multiply the lr by ``lr_gamma`` every this many steps
            (:class:`zoo.optim.WarmupExponentialLR` with ``staircase``).
        lr_gamma: the decay factor of either schedule. Neither: a constant lr.
        net_kwargs: extra keyword arguments for the net builder (e.g. ``drop_rate``).

    Batches are ``(x [N, C, H, W] float pixels 0..255, y [N])``; :class:`zoo.data.StegoDataModule`
    lays them out as whole cover/stego pairs. Logged: ``{stage}/loss``, ``{stage}/pe`` (the
    minimum probability of error P_E), ``{stage}/wauc`` (ALASKA2's weighted AUC), ``{stage}/auroc``
    and ``{stage}/acc`` (accuracy of the argmax over the K + 1 classes) for val and test.
    """

    def __init__(
        self,
        arch: str = "srnet",
        num_classes: int | None = None,
        classes: list[str] | None = None,
        in_chans: int | None = None,
        optimizer: str = "adamax",
        lr: float = 1e-3,
        weight_decay: float = 2e-4,
        momentum: float = 0.9,
        lr_milestones: Sequence[float] | None = None,
        lr_decay_steps: int | None = None,
        lr_gamma: float = 0.1,
        net_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.check_arch(arch, "steganalysis")
        check_optimizer_args(optimizer, lr, weight_decay, momentum)
        if lr_milestones is not None and lr_decay_steps is not None:
            raise ValueError("lr_milestones, lr_decay_steps: choose one schedule, not both")
        if lr_milestones is not None:
            lr_milestones = [float(m) for m in lr_milestones]
            if any(not 0.0 < m < 1.0 for m in lr_milestones) or lr_milestones != sorted(lr_milestones):
                raise ValueError(f"lr_milestones: expected increasing fractions of the run in (0, 1), "
                                 f"got {lr_milestones}")
        if lr_decay_steps is not None and (isinstance(lr_decay_steps, bool) or lr_decay_steps < 1):
            raise ValueError(f"lr_decay_steps: expected an int >= 1, got {lr_decay_steps}")
        check_gamma(lr_gamma, "lr_gamma")
        num_classes, classes = self.class_names(num_classes, classes)
        self.save_hyperparameters()
        self.build_net(arch, num_classes, classes, net_kwargs, in_chans=in_chans)
        if self.num_classes < 2:
            raise ValueError(f"num_classes: a steganalyser needs at least 2 classes (cover, stego), "
                             f"got {self.num_classes}")
        if classes is None:
            self.classes = ["cover", "stego"] if self.num_classes == 2 else \
                ["cover"] + [f"stego{k}" for k in range(1, self.num_classes)]
        self.metrics = torch.nn.ModuleDict()
        for stage in ("val", "test"):
            self.metrics[f"{stage}_pe"] = ProbabilityOfError()
            self.metrics[f"{stage}_wauc"] = WeightedAUC()
            self.metrics[f"{stage}_auroc"] = BinaryAUROC()
            self.metrics[f"{stage}_acc"] = MulticlassAccuracy(self.num_classes, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C, H, W]`` pixels (0..255) -> ``[N, num_classes]`` logits."""
        return self.net(x)

    def _check_batch(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if y.min() < 0 or y.max() >= self.num_classes:
            raise ValueError(f"labels: expected values in [0, {self.num_classes - 1}], got "
                             f"{int(y.min())}..{int(y.max())}")

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        self._check_batch(x, y)
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss, prog_bar=True, batch_size=x.shape[0])
        return loss

    def _eval_step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        self._check_batch(x, y)
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        n = x.shape[0]
        p, is_stego = stego_probability(logits), (y > 0).long()
        self.log_eval_loss(stage, loss, n)
        for key, metric, args in (("pe", "pe", (p, is_stego)), ("wauc", "wauc", (p, is_stego)),
                                  ("auroc", "auroc", (p, is_stego)), ("acc", "acc", (logits, y))):
            m = self.metrics[f"{stage}_{metric}"]
            m.update(*args)
            self.log(f"{stage}/{key}", m, prog_bar=key == "pe", batch_size=n)
        return loss

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor] | None:
        """``{"p_stego": [N], "labels": [N] argmax class, "probs": [N, num_classes]}`` (None for a
        batch of None, whose items were all left out as corrupt)."""
        if batch is None:
            return None
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        logits = self(x)
        probs = logits.float().softmax(dim=1)
        return {"p_stego": 1.0 - probs[:, 0], "labels": probs.argmax(dim=1), "probs": probs}

    def lr_scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int | None):
        """``MultiStepDecayLR`` at ``lr_milestones`` of the run, or a staircase decay every
        ``lr_decay_steps``, or none (a constant lr)."""
        hp = self.hparams
        if hp.lr_decay_steps is not None:
            return WarmupExponentialLR(optimizer, warmup_steps=0, gamma=hp.lr_gamma,
                                       decay_steps=hp.lr_decay_steps, staircase=True)
        if hp.lr_milestones and total_steps is not None:
            steps = [max(1, round(m * total_steps)) for m in hp.lr_milestones]
            return MultiStepDecayLR(optimizer, milestones=steps, gamma=hp.lr_gamma)
        return None

    def prediction_writer(self) -> SteganalysisWriter:
        return SteganalysisWriter()
