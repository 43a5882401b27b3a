"""EfficientNet's building blocks (Tan & Le, "EfficientNet: Rethinking Model Scaling for
Convolutional Neural Networks", ICML 2019; the MBConv block of Sandler et al., MobileNetV2,
CVPR 2018, with Squeeze-and-Excitation as in MnasNet).

Both blocks use SiLU, an SE whose FCs (the zoo's fused :class:`SEBlock`, SiLU between them,
sigmoid gate) are ``int(se_ratio * in_chs)`` wide -- computed from the block's *input*
channels, not the expanded ones -- and a residual with stochastic depth (:class:`DropPath`)
when ``stride == 1`` and ``in_chs == out_chs``.

Parameter names follow timm (``conv_pw``, ``bn1``, ``conv_dw``, ``bn2``, ``conv_pwl``, ``bn3``),
with the SE's FCs as ``se.fc1`` / ``se.fc2``.
"""
from __future__ import annotations

import torch
from torch import nn

from .drop_path import DropPath
from .se import SEBlock, make_divisible


def _se(channels: int, in_chs: int, se_ratio: float) -> SEBlock | None:
    if se_ratio <= 0:
        return None
    return SEBlock(channels, rd_channels=max(1, int(in_chs * se_ratio)), gate="sigmoid", act="silu")


def _check_stride(stride: int) -> None:
    if stride not in (1, 2):
        raise ValueError(f"stride: expected 1 or 2, got {stride}")


class DepthwiseSeparable(nn.Module):
    """``[N, in_chs, H, W] -> [N, out_chs, H/stride, W/stride]`` (EfficientNet's first stage,
    expansion 1).

    depthwise ``kernel_size`` conv (``stride``) -> BN -> SiLU -> SE -> 1x1 conv -> BN
    [-> drop_path, + x when ``stride == 1`` and ``in_chs == out_chs``].
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 3,
        stride: int = 1,
        se_ratio: float = 0.25,
        drop_path_rate: float = 0.0,
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        _check_stride(stride)
        self.has_skip = stride == 1 and in_chs == out_chs
        self.conv_dw = nn.Conv2d(in_chs, in_chs, kernel_size, stride, kernel_size // 2, groups=in_chs, bias=False)
        self.bn1 = nn.BatchNorm2d(in_chs, eps=bn_eps)
        self.act = nn.SiLU(inplace=True)
        self.se = _se(in_chs, in_chs, se_ratio)
        self.conv_pw = nn.Conv2d(in_chs, out_chs, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs, eps=bn_eps)
        self.drop_path = DropPath(drop_path_rate)  # used on the residual branch only (has_skip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv_dw(x)))
        if self.se is not None:
            out = self.se(out)
        out = self.bn2(self.conv_pw(out))
        return self.drop_path(out) + x if self.has_skip else out


class MBConv(nn.Module):
    """``[N, in_chs, H, W] -> [N, out_chs, H/stride, W/stride]``: the inverted residual.

    1x1 expand to ``mid = make_divisible(in_chs * expand_ratio, 8)`` -> BN -> SiLU ->
    depthwise ``kernel_size`` conv (``stride``) -> BN -> SiLU -> SE (``int(se_ratio * in_chs)``
    wide) -> 1x1 project -> BN [-> drop_path, + x when ``stride == 1`` and ``in_chs == out_chs``].
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 3,
        stride: int = 1,
        expand_ratio: float = 6.0,
        se_ratio: float = 0.25,
        drop_path_rate: float = 0.0,
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        _check_stride(stride)
        if expand_ratio <= 1:
            raise ValueError(f"expand_ratio: expected > 1 (use DepthwiseSeparable for 1), got {expand_ratio}")
        mid = make_divisible(in_chs * expand_ratio, 8)
        self.has_skip = stride == 1 and in_chs == out_chs
        self.conv_pw = nn.Conv2d(in_chs, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid, eps=bn_eps)
        self.conv_dw = nn.Conv2d(mid, mid, kernel_size, stride, kernel_size // 2, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid, eps=bn_eps)
        self.act = nn.SiLU(inplace=True)
        self.se = _se(mid, in_chs, se_ratio)
        self.conv_pwl = nn.Conv2d(mid, out_chs, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chs, eps=bn_eps)
        self.drop_path = DropPath(drop_path_rate)  # used on the residual branch only (has_skip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv_pw(x)))
        out = self.act(self.bn2(self.conv_dw(out)))
        if self.se is not None:
            out = self.se(out)
        out = self.bn3(self.conv_pwl(out))
        return self.drop_path(out) + x if self.has_skip else out
