"""The Res2Net bottleneck (Gao et al., "Res2Net: A New Multi-scale Backbone Architecture",
TPAMI 2021).

A 1x1 conv widens the input to ``width * scale`` channels, split into ``scale`` groups
``x_1 .. x_s`` of ``width`` channels. Groups ``1 .. s-1`` go through their own 3x3 conv
(+BN+ReLU) hierarchically, ``y_1 = K_1(x_1)``, ``y_i = K_i(x_i + y_{i-1})``, and the last
group passes as it is, so the receptive field grows from split to split. In the first
block of a stage (strided, or with a projection shortcut) the splits are not chained,
``y_i = K_i(x_i)``, and the last group is average-pooled (3x3, the block's stride) to the
new resolution. The concatenated ``[y_1 .. y_s]`` is expanded by a 1x1 conv to
``planes * 4`` channels and added to the shortcut.

Submodule names (``conv1``, ``bn1``, ``convs``, ``bns``, ``conv3``, ``bn3``,
``downsample``) follow timm's ``Bottle2neck``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .se import SEBlock


class Bottle2neck(nn.Module):
    """Res2Net bottleneck ``[N, inplanes, H, W] -> [N, 4*planes, H/stride, W/stride]``.

    Args:
        inplanes: input channels.
        planes: bottleneck planes; the output has ``4 * planes`` channels.
        stride: of the 3x3 convs (and of the last split's pool).
        downsample: the shortcut projection (``None``: identity shortcut).
        groups: cardinality of each 3x3 conv (Res2NeXt; 1 for Res2Net).
        base_width: channels per split at ``planes = 64``; ``width = floor(planes *
            base_width / 64) * groups``.
        scale: number of splits ``s`` (>= 1).
        se: add a Squeeze-and-Excitation block after ``bn3``.
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 26,
        scale: int = 4,
        se: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
            raise ValueError(f"scale: expected an int >= 1, got {scale!r}")
        width = int(math.floor(planes * base_width / 64.0)) * groups
        out = planes * self.expansion
        self.scale = scale
        self.width = width
        self.is_first = stride > 1 or downsample is not None
        self.conv1 = nn.Conv2d(inplanes, width * scale, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width * scale)
        n_convs = max(1, scale - 1)
        self.convs = nn.ModuleList(
            nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=groups, bias=False) for _ in range(n_convs)
        )
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(n_convs))
        # (timm keeps count_include_pad=True here, as the original weights were trained with it)
        self.pool = nn.AvgPool2d(3, stride=stride, padding=1) if self.is_first and scale > 1 else None
        self.conv3 = nn.Conv2d(width * scale, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.se = SEBlock(out) if se else None
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, inplanes, H, W] -> [N, 4*planes, H/stride, W/stride]``."""
        shortcut = x if self.downsample is None else self.downsample(x)
        splits = torch.split(self.relu(self.bn1(self.conv1(x))), self.width, dim=1)
        outs: list[torch.Tensor] = []
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            inp = splits[i] if i == 0 or self.is_first else splits[i] + outs[-1]
            outs.append(self.relu(bn(conv(inp))))
        if self.scale > 1:
            outs.append(splits[-1] if self.pool is None else self.pool(splits[-1]))
        out = self.bn3(self.conv3(torch.cat(outs, dim=1)))
        if self.se is not None:
            out = self.se(out)
        return self.relu(out + shortcut)
