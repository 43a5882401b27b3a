"""ResNeSt family: ResNeSt-50 (``resnest50d``) and ResNeSt-101 (``resnest101e``).

Zhang et al., "ResNeSt: Split-Attention Networks", 2020. A ResNet-D trunk -- deep stem
(three 3x3 convs, widths ``stem_width, stem_width, 2*stem_width``; 32 for 50d, 64 for
101e), average-pool shortcut projections -- whose bottleneck 3x3 is a
:class:`zoo.nn.SplitAttn` convolution (radix 2, cardinality 1, base width 64). In the
strided blocks the split-attention conv runs at stride 1 and a 3x3 average pool of the
block's stride follows it ("avd", after the attention: ``avd_first=False``).

Parameter names follow timm's ``resnest50d`` / ``resnest101e`` (``conv1.0`` .. ``conv1.6``
for the deep stem, ``conv2.conv`` / ``conv2.fc1`` ... for the split attention,
``downsample.1`` / ``downsample.2`` after the shortcut's pool), so timm's state dicts load
with no renaming.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..nn.split_attn import SplitAttn
from ..registry import register_model
from .resnet import ResNet


class ResNestBottleneck(nn.Module):
    """``[N, inplanes, H, W] -> [N, 4*planes, H/stride, W/stride]``: 1x1 reduce -> split-attention
    3x3 (radix splits) -> [avg pool, stride] -> 1x1 expand (x4) + shortcut.

    Args:
        groups: cardinality of the split-attention conv.
        base_width: ``width = int(planes * base_width / 64) * groups``.
        radix: splits of the split-attention conv.
        avd: in a strided block, move the stride to a 3x3 average pool (padding 1).
        avd_first: put that pool before the split-attention conv instead of after it.
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        radix: int = 2,
        avd: bool = True,
        avd_first: bool = False,
    ) -> None:
        super().__init__()
        width = int(planes * base_width / 64.0) * groups
        pool_stride = stride if avd and stride > 1 else 0
        conv_stride = 1 if pool_stride else stride
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.avd_first = nn.AvgPool2d(3, pool_stride, padding=1) if pool_stride and avd_first else None
        self.conv2 = SplitAttn(width, width, 3, stride=conv_stride, padding=1, groups=groups, radix=radix)
        self.avd_last = nn.AvgPool2d(3, pool_stride, padding=1) if pool_stride and not avd_first else None
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, inplanes, H, W] -> [N, 4*planes, H/stride, W/stride]``."""
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        if self.avd_first is not None:
            out = self.avd_first(out)
        out = self.conv2(out)  # (BN and ReLU are inside the split attention)
        if self.avd_last is not None:
            out = self.avd_last(out)
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


class ResNeSt(ResNet):
    """ResNeSt backbone + classifier: a :class:`zoo.models.ResNet` with the deep stem, average-pool
    shortcuts and :class:`ResNestBottleneck` blocks.

    Input ``[N, in_chans, H, W]``; ``forward`` returns ``[N, num_classes]`` logits, or with
    ``features_only=True`` the maps at ``out_indices`` (0 = stem, stride 2, ``2*stem_width``
    channels; 1..4 = layer1..4, strides 4..32, 256/512/1024/2048 channels).
    """

    def __init__(
        self,
        layers: Sequence[int],
        num_classes: int = 1000,
        in_chans: int = 3,
        stem_width: int = 32,
        radix: int = 2,
        groups: int = 1,
        base_width: int = 64,
        avd: bool = True,
        avd_first: bool = False,
        drop_rate: float = 0.0,
        zero_init_residual: bool = True,
        features_only: bool = False,
        out_indices: Sequence[int] = (1, 2, 3, 4),
    ) -> None:
        super().__init__(
            ResNestBottleneck, layers, num_classes=num_classes, in_chans=in_chans, groups=groups,
            width_per_group=base_width, drop_rate=drop_rate, zero_init_residual=zero_init_residual,
            features_only=features_only, out_indices=out_indices, stem_width=stem_width, avg_down=True,
            block_args=dict(radix=radix, avd=avd, avd_first=avd_first),
        )


_ZHANG = "Zhang et al., ResNeSt: Split-Attention Networks, 2020"


def _resnest(**common):
    return register_model(family="resnest", task="classification", paper=_ZHANG, num_classes=1000, **common)


@_resnest(reference="timm:resnest50d")
def resnest50d(**kwargs) -> ResNeSt:
    return ResNeSt((3, 4, 6, 3), stem_width=32, **kwargs)


@_resnest(reference="timm:resnest101e", input_size=(3, 256, 256))
def resnest101e(**kwargs) -> ResNeSt:
    return ResNeSt((3, 4, 23, 3), stem_width=64, **kwargs)
