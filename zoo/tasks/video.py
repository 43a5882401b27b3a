"""Deepfake video detection (real vs fake clip) as a LightningModule."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC

from ..callbacks import VideoWriter
from ..metrics import BinaryLogLoss
from ..optim import check_optimizer_args
from .base import Task


class VideoClassifier(Task):
    """Wraps ``zoo.create_net(arch)`` (a ``video`` model: ``[B, T, 3, H, W]`` -> one logit per
    clip) for real-vs-fake clips.

    Args:
        arch: ``deepfake_effnet_lstm``, ``deepfake_effnet`` or ``deepfake_r3d``.
        classes: the two class names, negative first (default ``["REAL", "FAKE"]``; the CLI links
            them from the datamodule). The logit scores the second.
        in_chans: overrides the spec's channels per frame.
        pos_weight: weight of the positive (fake) clips in the loss, e.g. the real:fake ratio of
            an unbalanced set such as DFDC's (None: 1).
        optimizer ("adamw" | "sgd" | "adamax" | "adadelta"), lr, weight_decay, momentum: the
            default optimizer (:func:`zoo.optim.make_optimizer`).
        warmup_epochs: the default schedule (:meth:`Task.warmup_cosine`): linear warmup over these
            epochs, then a cosine to 0 at the end of the run.
        net_kwargs: extra keyword arguments for the net builder (``hidden_size``,
            ``bidirectional``, ``drop_rate``, ...).

    Batches are ``(clips [B, T, C, H, W] float, labels [B] float 0./1.)``
    (:class:`zoo.data.VideoDataModule`, T frames sampled uniformly per clip; a batch of None, whose
    clips all failed to decode, is skipped). The loss is binary
    cross-entropy on the clip logits. Logged for val and test: ``{stage}/loss``,
    ``{stage}/logloss`` (the DFDC metric: mean BCE of the clipped probabilities),
    ``{stage}/auroc`` and ``{stage}/acc`` (threshold 0.5); for a net with frame-level logits
    (``forward_frames`` + ``pool_frames``: ``deepfake_effnet``), also ``{stage}/frame_auroc`` and
    ``{stage}/frame_acc``, each frame labelled with its clip's label.
    """

    def __init__(
        self,
        arch: str = "deepfake_effnet_lstm",
        classes: list[str] | None = None,
        in_chans: int | None = None,
        pos_weight: float | None = None,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        momentum: float = 0.9,
        warmup_epochs: int = 0,
        net_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.check_arch(arch, "video")
        check_optimizer_args(optimizer, lr, weight_decay, momentum)
        if pos_weight is not None and (isinstance(pos_weight, bool) or not isinstance(pos_weight, (int, float))
                                       or not pos_weight > 0):
            raise ValueError(f"pos_weight: expected a weight > 0 or None, got {pos_weight!r}")
        if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 0:
            raise ValueError(f"warmup_epochs: expected an int >= 0, got {warmup_epochs!r}")
        _, classes = self.class_names(None, classes)
        if classes is not None and len(classes) != 2:
            raise ValueError(f"classes: expected two names (negative, positive), got {classes}")
        self.save_hyperparameters()
        self.build_net(arch, 1, None, net_kwargs, in_chans=in_chans)
        if self.num_classes != 1:
            raise ValueError(f"net_kwargs: a video classifier's net has one logit, got num_classes={self.num_classes}")
        self.classes = classes or ["REAL", "FAKE"]
        self.has_frames = hasattr(self.net, "forward_frames") and hasattr(self.net, "pool_frames")
        self.metrics = torch.nn.ModuleDict()
        for stage in ("val", "test"):
            self.metrics[f"{stage}_logloss"] = BinaryLogLoss(from_logits=True)
            self.metrics[f"{stage}_auroc"] = BinaryAUROC()
            self.metrics[f"{stage}_acc"] = BinaryAccuracy()
            if self.has_frames:
                self.metrics[f"{stage}_frame_auroc"] = BinaryAUROC()
                self.metrics[f"{stage}_frame_acc"] = BinaryAccuracy()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, C, H, W] -> [B]`` clip logits."""
        return self.net(x).squeeze(1)

    def forward_with_frames(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(clip logits [B], frame logits [B, T] or None)`` from one forward pass."""
        if not self.has_frames:
            return self(x), None
        frames = self.net.forward_frames(x)
        return self.net.pool_frames(frames).squeeze(1), frames.squeeze(2)

    def _labels(self, y: torch.Tensor, n: int) -> torch.Tensor:
        if not isinstance(y, torch.Tensor) or y.shape != (n,):
            raise ValueError(f"labels: expected a [{n}] tensor of 0/1 clip labels, got "
                             f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}")
        if not bool(((y == 0) | (y == 1)).all()):
            raise ValueError(f"labels: expected 0 ({self.classes[0]}) or 1 ({self.classes[1]}), got {y.tolist()}")
        return y.float()

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        pw = self.hparams.pos_weight
        weight = None if pw is None else torch.tensor(float(pw), device=logits.device)
        return F.binary_cross_entropy_with_logits(logits.float(), y, pos_weight=weight)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor | None:
        if batch is None:  # every clip of the batch failed to decode (VideoDataModule(skip_corrupt=True))
            return None
        x, y = batch
        y = self._labels(y, x.shape[0])
        loss = self._loss(self(x), y)
        self.log("train/loss", loss, prog_bar=True, batch_size=x.shape[0])
        return loss

    def _eval_step(self, batch, stage: str) -> torch.Tensor | None:
        if batch is None:
            return None
        x, y = batch
        n = x.shape[0]
        y = self._labels(y, n)
        logits, frames = self.forward_with_frames(x)
        loss = self._loss(logits, y)
        self.log_eval_loss(stage, loss, n)
        yi = y.long()
        updates = [("logloss", logits), ("auroc", logits.sigmoid()), ("acc", logits.sigmoid())]
        for key, preds in updates:
            m = self.metrics[f"{stage}_{key}"]
            m.update(preds, yi)
            self.log(f"{stage}/{key}", m, prog_bar=key == "auroc", batch_size=n)
        if frames is not None:
            fp, fy = frames.sigmoid().reshape(-1), yi[:, None].expand_as(frames).reshape(-1)
            for key in ("frame_auroc", "frame_acc"):
                m = self.metrics[f"{stage}_{key}"]
                m.update(fp, fy)
                self.log(f"{stage}/{key}", m, batch_size=n)
        return loss

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor] | None:
        """``{"p_fake": [B]}`` (the sigmoid of the clip logit), plus ``"frame_p_fake": [B, T]`` for a
        net with frame-level logits (None for a batch of None, whose clips all failed to decode)."""
        if batch is None:
            return None
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        logits, frames = self.forward_with_frames(x)
        out = {"p_fake": logits.float().sigmoid()}
        if frames is not None:
            out["frame_p_fake"] = frames.float().sigmoid()
        return out

    def lr_scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int | None):
        return self.warmup_cosine(optimizer, total_steps, self.hparams.warmup_epochs)

    def prediction_writer(self) -> VideoWriter:
        return VideoWriter()
