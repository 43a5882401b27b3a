"""GhostNet's building blocks (Han et al., "GhostNet: More Features from Cheap Operations",
CVPR 2020).

A ghost module makes ``out`` feature maps from half as many "intrinsic" ones: a 1x1 primary
convolution gives ``ceil(out / 2)`` maps, a cheap depthwise 3x3 convolution derives as many
"ghost" maps from them, and the two are concatenated and cut to ``out`` channels. The ghost
bottleneck stacks two ghost modules (expand, then a linear projection) around an optional
stride-2 depthwise convolution and an optional Squeeze-and-Excitation, with a shortcut.

Parameter names follow timm's GhostNet (``primary_conv``, ``cheap_operation``, ``conv_dw``,
``bn_dw``, ``shortcut``), except that the SE's two FCs are the zoo's ``se.fc1`` / ``se.fc2``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .se import SEBlock, make_divisible


class GhostModule(nn.Module):
    """``[N, in_chs, H, W] -> [N, out_chs, H, W]``.

    primary 1x1 conv -> BN -> (ReLU) gives ``init = ceil(out_chs / ratio)`` maps; the cheap
    depthwise ``dw_size`` conv -> BN -> (ReLU) gives ``init * (ratio - 1)`` more from them;
    both are concatenated and the first ``out_chs`` channels kept. ``relu=False`` makes the
    module linear (GhostNet's projection).
    """

    def __init__(self, in_chs: int, out_chs: int, ratio: int = 2, dw_size: int = 3, relu: bool = True) -> None:
        super().__init__()
        if ratio < 2:
            raise ValueError(f"ratio: expected an integer >= 2, got {ratio}")
        self.out_chs = out_chs
        init_chs = math.ceil(out_chs / ratio)
        new_chs = init_chs * (ratio - 1)

        def act() -> nn.Module:
            return nn.ReLU(inplace=True) if relu else nn.Identity()

        self.primary_conv = nn.Sequential(
            nn.Conv2d(in_chs, init_chs, 1, bias=False), nn.BatchNorm2d(init_chs), act()
        )
        self.cheap_operation = nn.Sequential(
            nn.Conv2d(init_chs, new_chs, dw_size, padding=dw_size // 2, groups=init_chs, bias=False),
            nn.BatchNorm2d(new_chs),
            act(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        intrinsic = self.primary_conv(x)
        ghosts = self.cheap_operation(intrinsic)
        return torch.cat((intrinsic, ghosts), dim=1)[:, : self.out_chs]


class GhostBottleneck(nn.Module):
    """``[N, in_chs, H, W] -> [N, out_chs, H/stride, W/stride]``.

    ghost1 (``in -> mid``, ReLU) -> [depthwise ``dw_kernel_size`` conv with ``stride`` -> BN, when
    ``stride > 1``] -> [SE on ``mid`` channels, when ``se_ratio > 0``: ReLU, hard-sigmoid gate,
    ``make_divisible(se_ratio * mid, 4)`` wide] -> ghost2 (``mid -> out``, linear), plus the
    shortcut: identity when ``stride == 1`` and ``in == out``, otherwise depthwise conv (with
    ``stride``) -> BN -> 1x1 conv -> BN.
    """

    def __init__(
        self,
        in_chs: int,
        mid_chs: int,
        out_chs: int,
        dw_kernel_size: int = 3,
        stride: int = 1,
        se_ratio: float = 0.0,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride: expected 1 or 2, got {stride}")
        pad = (dw_kernel_size - 1) // 2
        self.ghost1 = GhostModule(in_chs, mid_chs, relu=True)
        if stride > 1:
            self.conv_dw = nn.Conv2d(mid_chs, mid_chs, dw_kernel_size, stride, pad, groups=mid_chs, bias=False)
            self.bn_dw = nn.BatchNorm2d(mid_chs)
        else:
            self.conv_dw = None
            self.bn_dw = None
        self.se = (
            SEBlock(mid_chs, rd_channels=make_divisible(mid_chs * se_ratio, 4), gate="hard_sigmoid", act="relu")
            if se_ratio > 0
            else None
        )
        self.ghost2 = GhostModule(mid_chs, out_chs, relu=False)
        if stride == 1 and in_chs == out_chs:
            self.shortcut = nn.Sequential()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_chs, in_chs, dw_kernel_size, stride, pad, groups=in_chs, bias=False),
                nn.BatchNorm2d(in_chs),
                nn.Conv2d(in_chs, out_chs, 1, bias=False),
                nn.BatchNorm2d(out_chs),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.ghost1(x)
        if self.conv_dw is not None:
            out = self.bn_dw(self.conv_dw(out))
        if self.se is not None:
            out = self.se(out)
        return self.ghost2(out) + self.shortcut(x)
