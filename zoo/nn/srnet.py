"""The four layer types of SRNet (Boroumand, Chen, Fridrich, "Deep Residual Network for
Steganalysis of Digital Images", IEEE TIFS 2019).

Every convolution is 3x3, stride 1, padding 1 (except Type 3's 1x1 stride-2 shortcut), and
each is followed by batch normalisation. ``bias`` adds a bias to every convolution (the paper's
layers have none: BN follows each of them).
"""
from __future__ import annotations

import torch
from torch import nn


def _conv3x3(cin: int, cout: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1, bias=bias)


class SRNetType1(nn.Module):
    """Type 1: conv 3x3 -> BN -> ReLU. ``[N, cin, H, W] -> [N, cout, H, W]``."""

    def __init__(self, cin: int, cout: int, bias: bool = False) -> None:
        super().__init__()
        self.conv = _conv3x3(cin, cout, bias)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SRNetType2(nn.Module):
    """Type 2: Type 1 -> conv 3x3 -> BN, plus the identity. ``[N, C, H, W] -> [N, C, H, W]``.

    No activation after the sum (the paper's figure)."""

    def __init__(self, channels: int, bias: bool = False) -> None:
        super().__init__()
        self.type1 = SRNetType1(channels, channels, bias)
        self.conv = _conv3x3(channels, channels, bias)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn(self.conv(self.type1(x)))


class SRNetType3(nn.Module):
    """Type 3: Type 1 -> conv 3x3 -> BN -> avg-pool 3x3 stride 2 padding 1, plus a shortcut
    1x1 conv stride 2 -> BN. ``[N, cin, H, W] -> [N, cout, ceil(H/2), ceil(W/2)]``."""

    def __init__(self, cin: int, cout: int, bias: bool = False) -> None:
        super().__init__()
        self.type1 = SRNetType1(cin, cout, bias)
        self.conv = _conv3x3(cout, cout, bias)
        self.bn = nn.BatchNorm2d(cout)
        self.pool = nn.AvgPool2d(kernel_size=3, stride=2, padding=1)
        self.shortcut_conv = nn.Conv2d(cin, cout, kernel_size=1, stride=2, bias=bias)
        self.shortcut_bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = self.pool(self.bn(self.conv(self.type1(x))))
        return main + self.shortcut_bn(self.shortcut_conv(x))


class SRNetType4(nn.Module):
    """Type 4: Type 1 -> conv 3x3 -> BN -> global average pooling. ``[N, cin, H, W] -> [N, cout]``."""

    def __init__(self, cin: int, cout: int, bias: bool = False) -> None:
        super().__init__()
        self.type1 = SRNetType1(cin, cout, bias)
        self.conv = _conv3x3(cout, cout, bias)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(self.type1(x))).mean(dim=(2, 3))
