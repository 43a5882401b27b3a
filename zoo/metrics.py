"""torchmetrics ``Metric``s the ecosystem lacks: the steganalysis scores and the DFDC log loss.

Both take ``preds`` (any real score, higher meaning "stego", e.g. P(stego)) and binary
``target`` (0 cover, 1 stego), accumulate over ``update`` calls (and over processes: the
states are concatenated), and are computed from the empirical ROC curve of all of them:
points ``(FPR(t), TPR(t))`` for every distinct score ``t`` (predict stego when
``score >= t``), from ``(0, 0)`` to ``(1, 1)``; tied scores move both rates at once
(a diagonal segment).

* :class:`ProbabilityOfError`: ``P_E = min_t (P_FA(t) + P_MD(t)) / 2`` with ``P_FA = FPR`` and
  ``P_MD = 1 - TPR``, the minimum over all thresholds (so at most 0.5).
* :class:`WeightedAUC`: ALASKA2's score. The area under the ROC curve is cut into horizontal
  bands of TPR, ``[0, 0.4]`` weighted 2 and ``[0.4, 1]`` weighted 1; the result is the
  weighted sum of the areas divided by its value for a perfect detector
  (``2 * 0.4 + 1 * 0.6``), so it lies in ``[0, 1]``: 1 for a perfect detector, about 0.586
  for a random one.

:class:`BinaryLogLoss` is the DeepFake Detection Challenge's metric: the mean binary
cross-entropy of predicted probabilities, each clipped to ``[eps, 1 - eps]``.

:class:`MeanAveragePrecision` is torchmetrics' COCO mAP with a synchronisation that works when
the processes of a DDP run saw different numbers of images (docs/DISTRIBUTED.md).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.distributed as dist
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.detection import MeanAveragePrecision as _TorchMeanAveragePrecision
from torchmetrics.utilities import dim_zero_cat
from torchmetrics.utilities.data import apply_to_collection


def _check_update(preds: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    if not isinstance(preds, Tensor) or not preds.is_floating_point():
        raise ValueError(f"preds: expected a floating-point tensor of scores, got {getattr(preds, 'dtype', type(preds))}")
    if not isinstance(target, Tensor):
        raise ValueError(f"target: expected a tensor of 0/1 labels, got {type(target).__name__}")
    preds, target = preds.reshape(-1), target.reshape(-1)
    if preds.numel() != target.numel():
        raise ValueError(f"preds, target: expected the same number of elements, got {preds.numel()} and {target.numel()}")
    if not bool(torch.isfinite(preds).all()):
        raise ValueError("preds: expected finite scores, got NaN or infinity")
    if target.is_complex() or not bool(((target == 0) | (target == 1)).all()):
        raise ValueError("target: expected binary labels 0 (cover, real) and 1 (stego, fake)")
    return preds.detach().double(), target.long()


def roc_points(preds: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """The empirical ROC curve of ``preds`` for binary ``target``: ``(fpr, tpr)``, each ``[T + 1]``
    (float64), from ``(0, 0)`` through one point per distinct score (descending) to ``(1, 1)``.

    ``ValueError`` unless both classes are present."""
    preds, target = _check_update(preds, target)
    pos = int(target.sum())
    neg = target.numel() - pos
    if pos == 0 or neg == 0:
        raise ValueError(f"target: the ROC curve needs both classes, got {neg} cover(s) and {pos} stego(s)")
    order = torch.argsort(preds, descending=True, stable=True)
    s, y = preds[order], target[order].double()
    tp, fp = torch.cumsum(y, 0), torch.cumsum(1 - y, 0)
    last = torch.ones_like(s, dtype=torch.bool)  # the last position of each run of equal scores
    last[:-1] = s[1:] != s[:-1]
    zero = torch.zeros(1, dtype=torch.float64)
    return torch.cat([zero, fp[last] / neg]), torch.cat([zero, tp[last] / pos])


class _ROCMetric(Metric):
    is_differentiable = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch: ``preds [N]`` scores (higher: stego), ``target [N]`` 0 (cover) / 1 (stego)."""
        preds, target = _check_update(preds, target)
        self.preds.append(preds)
        self.target.append(target)

    def _roc(self) -> tuple[Tensor, Tensor]:
        if not self.preds:
            raise ValueError(f"{type(self).__name__}: compute() before any update()")
        return roc_points(dim_zero_cat(self.preds), dim_zero_cat(self.target))


class ProbabilityOfError(_ROCMetric):
    """``P_E = min over thresholds of (P_FA + P_MD) / 2``: the steganalysis error of the best
    threshold on the scores seen (0 for a perfect detector, 0.5 for a useless one)."""

    higher_is_better = False

    def compute(self) -> Tensor:
        fpr, tpr = self._roc()
        return (0.5 * (fpr + 1 - tpr)).min().float()


class WeightedAUC(_ROCMetric):
    """ALASKA2's weighted AUC: the ROC area in TPR bands ``[0, 0.4]`` (weight 2) and ``[0.4, 1]``
    (weight 1), normalised by a perfect detector's, so in ``[0, 1]``.

    Args:
        tpr_thresholds: the band edges on the TPR axis, from 0 to 1.
        weights: one weight per band.

    The curve is piecewise linear between its points, and each band's area
    ``int_0^1 clip(TPR(FPR) - lo, 0, hi - lo) dFPR`` is integrated exactly on every segment.
    """

    higher_is_better = True

    def __init__(
        self, tpr_thresholds: Sequence[float] = (0.0, 0.4, 1.0), weights: Sequence[float] = (2.0, 1.0), **kwargs
    ) -> None:
        super().__init__(**kwargs)
        edges = [float(t) for t in tpr_thresholds]
        if len(edges) < 2 or edges[0] != 0.0 or edges[-1] != 1.0 or any(b <= a for a, b in zip(edges, edges[1:])):
            raise ValueError(f"tpr_thresholds: expected increasing band edges from 0 to 1, got {tuple(tpr_thresholds)}")
        if len(weights) != len(edges) - 1 or any(not float(w) >= 0 for w in weights) or not any(float(w) > 0 for w in weights):
            raise ValueError(
                f"weights: expected {len(edges) - 1} non-negative weights (one per band), not all 0, got {tuple(weights)}"
            )
        self.edges = edges
        self.weights = [float(w) for w in weights]

    def compute(self) -> Tensor:
        fpr, tpr = self._roc()
        dx = fpr[1:] - fpr[:-1]
        y0, y1 = tpr[:-1], tpr[1:]
        total = torch.zeros((), dtype=torch.float64)
        for lo, hi, w in zip(self.edges, self.edges[1:], self.weights):
            h = hi - lo

            def band_integral(y: Tensor) -> Tensor:  # int_0^y clip(u - lo, 0, h) du
                u = (y - lo).clamp(0.0, h)
                return 0.5 * u * u + h * (y - hi).clamp_min(0.0)

            flat = (y1 - y0).abs() < 1e-15
            slope_part = (band_integral(y1) - band_integral(y0)) / torch.where(flat, torch.ones_like(y0), y1 - y0)
            level = (y0 - lo).clamp(0.0, h)
            total = total + w * (dx * torch.where(flat, level, slope_part)).sum()
        norm = sum(w * (hi - lo) for lo, hi, w in zip(self.edges, self.edges[1:], self.weights))
        return (total / norm).float()


class BinaryLogLoss(Metric):
    """``-mean(y log p + (1 - y) log(1 - p))`` over every sample seen, with ``p`` clipped to
    ``[eps, 1 - eps]`` (the DFDC metric; a confident wrong answer costs at most ``-log(eps)``).

    ``update(preds, target)``: ``preds`` probabilities in [0, 1] (or logits with
    ``from_logits=True``, whose sigmoid is then taken), ``target`` 0/1 labels of the same size.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, eps: float = 1e-15, from_logits: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0.0 < eps < 0.5:
            raise ValueError(f"eps: expected a value in (0, 0.5), got {eps}")
        self.eps, self.from_logits = float(eps), bool(from_logits)
        self.add_state("total", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        preds, target = _check_update(preds, target)
        p = preds.sigmoid() if self.from_logits else preds
        if not self.from_logits and bool(((p < 0) | (p > 1)).any()):
            raise ValueError("preds: expected probabilities in [0, 1] (pass from_logits=True for logits)")
        p = p.clamp(self.eps, 1.0 - self.eps)
        y = target.double()
        self.total += -(y * p.log() + (1 - y) * (1 - p).log()).sum()
        self.count += target.numel()

    def compute(self) -> Tensor:
        if int(self.count) == 0:
            raise ValueError("BinaryLogLoss: compute() before any update()")
        return (self.total / self.count).float()


class MeanAveragePrecision(_TorchMeanAveragePrecision):
    """torchmetrics' ``MeanAveragePrecision`` (same arguments, same results in one process) whose
    states also synchronise across processes that saw different numbers of images.

    Its states are lists with one entry per image (boxes, scores, labels, ...). torchmetrics
    gathers such a list one entry at a time, one collective per entry, which only works when
    every process holds as many images (else the processes issue different numbers of
    collectives: a hang or an error) and interleaves the processes' images. Under DDP with
    :class:`zoo.data.base.EvalShardSampler` (no padding) the counts differ by one whenever the
    set does not divide evenly, so here each process's lists are gathered whole, in one
    ``all_gather_object`` of CPU copies, and concatenated in rank order: with the sampler's
    contiguous blocks, that is the dataset's order, and ``compute()`` equals a single process's
    on the whole set. A process without images contributes empty lists. ``dist_sync_fn`` is not
    used.
    """

    def _sync_dist(self, dist_sync_fn=None, process_group=None) -> None:  # noqa: ARG002
        group = process_group or self.process_group
        local = {attr: apply_to_collection(list(getattr(self, attr)), Tensor, lambda t: t.detach().cpu())
                 for attr in self._reductions}
        gathered: list = [None] * dist.get_world_size(group)
        dist.all_gather_object(gathered, local, group=group)
        for attr in self._reductions:
            items = [item for part in gathered for item in part[attr]]
            setattr(self, attr, apply_to_collection(items, Tensor, lambda t: t.to(self.device)))


__all__ = ["BinaryLogLoss", "MeanAveragePrecision", "ProbabilityOfError", "WeightedAUC", "roc_points"]
