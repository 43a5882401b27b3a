"""Split attention (Zhang et al., "ResNeSt: Split-Attention Networks", 2020).

One grouped KxK convolution makes ``radix`` feature-map splits of ``C`` channels each
(``[N, radix*C, H, W]``, BN, ReLU). Their sum is pooled over space and goes through
``fc1`` (1x1 conv, BN, ReLU) and ``fc2`` to ``radix*C`` attention logits, normalised
across the splits (a softmax over the radix; a sigmoid when ``radix == 1``); the output
is the attention-weighted sum of the splits, ``[N, C, H', W']``.

Submodule names (``conv``, ``bn0``, ``fc1``, ``bn1``, ``fc2``) follow timm's ``SplitAttn``,
so its parameters load as they are.
"""
from __future__ import annotations

import torch
from torch import nn

from .se import make_divisible


class SplitAttn(nn.Module):
    """Split-attention convolution ``[N, in_channels, H, W] -> [N, out_channels, H/stride, W/stride]``.

    Args:
        in_channels: input channels.
        out_channels: output channels ``C`` (default ``in_channels``).
        kernel_size, stride, padding, dilation: of the grouped convolution (padding
            defaults to ``kernel_size // 2``).
        groups: cardinality ``K``; the convolution has ``groups * radix`` groups and the
            attention FCs ``groups`` groups.
        radix: number of splits ``R`` (>= 1).
        rd_ratio: attention width = ``make_divisible(in_channels * radix * rd_ratio, rd_divisor,
            min_value=32)`` unless ``rd_channels`` (per radix split) is given.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        groups: int = 1,
        radix: int = 2,
        rd_ratio: float = 0.25,
        rd_channels: int | None = None,
        rd_divisor: int = 8,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(radix, bool) or not isinstance(radix, int) or radix < 1:
            raise ValueError(f"radix: expected an int >= 1, got {radix!r}")
        out_channels = out_channels or in_channels
        if out_channels % groups or in_channels % groups:
            raise ValueError(f"groups: {groups} must divide in_channels={in_channels} and out_channels={out_channels}")
        self.radix = radix
        self.groups = groups
        self.out_channels = out_channels
        mid = out_channels * radix
        if rd_channels is None:
            attn = make_divisible(in_channels * radix * rd_ratio, rd_divisor, min_value=32)
        else:
            attn = rd_channels * radix
        if padding is None:
            padding = kernel_size // 2
        self.conv = nn.Conv2d(in_channels, mid, kernel_size, stride, padding, dilation, groups=groups * radix,
                              bias=bias)
        self.bn0 = nn.BatchNorm2d(mid)
        self.act0 = nn.ReLU(inplace=True)
        self.fc1 = nn.Conv2d(out_channels, attn, 1, groups=groups)
        self.bn1 = nn.BatchNorm2d(attn)
        self.act1 = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(attn, mid, 1, groups=groups)

    def _attention(self, logits: torch.Tensor) -> torch.Tensor:
        """``[N, radix*C, 1, 1]`` logits (per cardinal group, radix-major inside it) ->
        ``[N, radix, C, 1, 1]`` weights that sum to 1 over the radix (sigmoid when radix 1)."""
        n = logits.shape[0]
        if self.radix == 1:
            return torch.sigmoid(logits).view(n, 1, -1, 1, 1)
        # fc2's channels are ordered (group k, split r, channel c); the splits are (r, k, c)
        w = logits.view(n, self.groups, self.radix, -1).softmax(dim=2)
        return w.transpose(1, 2).reshape(n, self.radix, -1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, in_channels, H, W] -> [N, out_channels, H', W']``."""
        x = self.act0(self.bn0(self.conv(x)))
        n, _, h, w = x.shape
        splits = x.view(n, self.radix, self.out_channels, h, w)
        pooled = splits.sum(dim=1).mean((2, 3), keepdim=True)
        logits = self.fc2(self.act1(self.bn1(self.fc1(pooled))))
        return (splits * self._attention(logits)).sum(dim=1)

    def extra_repr(self) -> str:
        return f"radix={self.radix}, groups={self.groups}"
