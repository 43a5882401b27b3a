"""Stochastic depth (Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016) in its
per-sample form: on a residual branch, each sample of the batch drops the whole branch output
with probability ``p`` and the survivors are scaled by ``1 / (1 - p)``, so that the expected
output equals the input. Identity in eval mode and at ``p = 0``."""
from __future__ import annotations

import torch
from torch import nn


def _check_p(p: float) -> float:
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p: expected a drop probability in [0, 1], got {p}")
    return p


def drop_path(x: torch.Tensor, p: float = 0.0, training: bool = False) -> torch.Tensor:
    """``x [N, ...] -> [N, ...]``: in training, sample ``n`` is zeroed with probability ``p``
    and otherwise multiplied by ``1 / (1 - p)`` (one Bernoulli draw per sample, shared by all of
    its elements). Returns ``x`` itself when ``not training`` or ``p == 0``; all zeros at
    ``p == 1``."""
    p = _check_p(p)
    if not training or p == 0.0:
        return x
    keep = 1.0 - p
    mask_shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    mask = torch.empty(mask_shape, dtype=x.dtype, device=x.device).bernoulli_(keep)
    if keep > 0.0:
        mask = mask / keep
    return x * mask


class DropPath(nn.Module):
    """Module form of :func:`drop_path` with drop probability ``p``; shapes ``[N, ...] -> [N, ...]``."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = _check_p(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
