"""Squeeze-and-Excitation (Hu et al., CVPR 2018).

``y = x * gate(W2 · act(W1 · mean_hw(x) + b1) + b2)``, act ReLU or SiLU

The two FC layers are kept as 1x1 convolutions named ``fc1`` / ``fc2`` so that
timm's ``se.fc1`` / ``se.fc2`` parameters load as they are; the forward pass runs
the fused op :func:`zoo.ops.squeeze_excite` (the C++/CUDA kernel, or its pure-torch
fallback when the extension is not there).
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from ..ops import squeeze_excite
from ..ops.reference import SE_ACTS, SE_GATES

GATES = SE_GATES
ACTS = SE_ACTS


def from_timm_keys(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A timm state dict with timm's ``SqueezeExcite`` names (``se.conv_reduce`` /
    ``se.conv_expand``) and classifier name (``classifier``) in the zoo's names: ``se.fc1`` /
    ``se.fc2`` (:class:`SEBlock`) and ``fc`` (:class:`zoo.nn.ClassifierBackbone`); every other
    key unchanged. The GhostNet and EfficientNet converters from timm are this."""
    out = {}
    for k, v in sd.items():
        k = k.replace(".se.conv_reduce.", ".se.fc1.").replace(".se.conv_expand.", ".se.fc2.")
        if k.startswith("classifier."):
            k = "fc." + k[len("classifier."):]
        out[k] = v
    return out


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` (at least ``min_value``).

    If rounding down lost more than ``1 - round_limit`` of ``v``, go one step up.
    """
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


class SEBlock(nn.Module):
    """Channel attention: global average pool -> FC -> act -> FC -> gate -> scale.

    Args:
        channels: C of the input ``[N, C, H, W]``.
        reduction: C / rd_channels when ``rd_channels`` is not given.
        rd_channels: width of the bottleneck; default ``make_divisible(C / reduction, rd_divisor)``.
        gate: ``"sigmoid"`` or ``"hard_sigmoid"``.
        act: between the FCs, ``"relu"`` (SENet, GhostNet) or ``"silu"`` (EfficientNet).
    """

    def __init__(
        self,
        channels: int,
        reduction: float = 16,
        rd_channels: int | None = None,
        gate: str = "sigmoid",
        rd_divisor: int = 8,
        act: str = "relu",
    ) -> None:
        super().__init__()
        if gate not in GATES:  # (the op checks too; fail at construction, not at the first forward)
            raise ValueError(f"gate: expected one of {GATES}, got {gate!r}")
        if act not in ACTS:
            raise ValueError(f"act: expected one of {ACTS}, got {act!r}")
        if rd_channels is None:
            rd_channels = make_divisible(channels / reduction, rd_divisor, round_limit=0.0)
        self.channels = channels
        self.rd_channels = rd_channels
        self.gate = gate
        self.act = act
        self.fc1 = nn.Conv2d(channels, rd_channels, 1, bias=True)
        self.fc2 = nn.Conv2d(rd_channels, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C, H, W] -> [N, C, H, W]``."""
        c, r = self.channels, self.rd_channels
        return squeeze_excite(
            x, self.fc1.weight.reshape(r, c), self.fc1.bias, self.fc2.weight.reshape(c, r), self.fc2.bias, self.gate,
            self.act,
        )

    def extra_repr(self) -> str:
        return f"channels={self.channels}, rd_channels={self.rd_channels}, gate={self.gate!r}, act={self.act!r}"
