"""ResNet family: ResNet-18/34/50/101/152, ResNeXt, Wide ResNet and SE-ResNet.

He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, in the
"v1.5" form that torchvision and timm use: the stride of a bottleneck block sits
on its 3x3 convolution, not on the first 1x1.

* ResNeXt (Xie et al., CVPR 2017): the bottleneck's 3x3 is a grouped convolution
  of ``groups`` paths, each ``base_width`` channels wide at the first stage.
* Wide ResNet-50-2 (Zagoruyko & Komodakis, BMVC 2016): bottleneck 2x wider.
* SE-ResNet (Hu et al., CVPR 2018): a Squeeze-and-Excitation block on the
  residual branch, after the last BN and before the shortcut add (timm's
  ``seresnet50`` layout).

Parameter names follow torchvision/timm (``conv1``, ``bn1``, ``layer1..4``,
``fc``) so their state dicts load with no renaming.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..nn import SEBlock
from ..nn.backbone import ClassifierBackbone
from ..registry import register_model


def _conv3x3(cin: int, cout: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, groups=groups, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


def _deep_stem(cin: int, width: int) -> nn.Sequential:
    """ResNet-C/D deep stem (Bag of Tricks): three 3x3 convs, ``cin -> width -> width -> 2*width``,
    the first strided; BN + ReLU between them (the net's ``bn1``/``relu`` follow the last)."""
    return nn.Sequential(
        _conv3x3(cin, width, 2), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
        _conv3x3(width, width), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
        _conv3x3(width, 2 * width),
    )


def _downsample_conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    """The shortcut projection: strided 1x1 conv + BN."""
    return nn.Sequential(_conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))


def _downsample_avg(cin: int, cout: int, stride: int) -> nn.Sequential:
    """ResNet-D shortcut: 2x2 average pool (stride ``stride``, ceil mode, padding not counted;
    an identity when ``stride == 1``), then 1x1 conv + BN."""
    pool = nn.Identity() if stride == 1 else nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False)
    return nn.Sequential(pool, _conv1x1(cin, cout), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34). ``y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        se: bool = False,
    ) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("groups/base_width: BasicBlock supports only groups=1 and base_width=64")
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = SEBlock(planes) if se else None
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.se is not None:
            out = self.se(out)
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (strided, grouped) -> 1x1 expand (x4), plus the shortcut."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        se: bool = False,
    ) -> None:
        super().__init__()
        width = int(planes * base_width / 64) * groups
        out = planes * self.expansion
        self.conv1 = _conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, out)
        self.bn3 = nn.BatchNorm2d(out)
        self.se = SEBlock(out) if se else None
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.se is not None:
            out = self.se(out)
        return self.relu(out + shortcut)


class ResNet(ClassifierBackbone, nn.Module):
    """ResNet backbone + classifier.

    Input ``[N, in_chans, H, W]``. ``forward_features`` returns the stride-32 map
    ``[N, 512*expansion, H/32, W/32]``; ``forward_head`` pools and classifies it to
    ``[N, num_classes]`` logits.

    With ``features_only=True`` the net drops its classifier and ``forward``
    returns the list of maps named by ``out_indices``: 0 = stem (stride 2),
    1..4 = layer1..layer4 (strides 4, 8, 16, 32). ``feature_info`` gives their
    channels and strides, for use as a detection backbone (see
    :class:`zoo.nn.ClassifierBackbone`).

    Options used by other families (Res2Net, ResNeSt): ``stem_width`` replaces the 7x7 stem
    with the deep stem ``3x3 convs of widths stem_width, stem_width, 2*stem_width``;
    ``avg_down`` makes the shortcut projections average-pool then 1x1 conv (ResNet-D);
    ``block_args`` are extra keyword arguments for every block.
    """

    def __init__(
        self,
        block: type[nn.Module],
        layers: Sequence[int],
        num_classes: int = 1000,
        in_chans: int = 3,
        groups: int = 1,
        width_per_group: int = 64,
        se: bool = False,
        drop_rate: float = 0.0,
        zero_init_residual: bool = False,
        features_only: bool = False,
        out_indices: Sequence[int] = (1, 2, 3, 4),
        stem_width: int | None = None,
        avg_down: bool = False,
        block_args: dict | None = None,
    ) -> None:
        super().__init__()
        self._init_backbone(in_chans, drop_rate)

        inplanes = 64 if stem_width is None else 2 * stem_width
        if stem_width is None:
            self.conv1 = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = _deep_stem(in_chans, stem_width)
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

        kwargs = dict(block_args or {})
        if se:
            kwargs["se"] = True
        info = [dict(num_chs=inplanes, reduction=2, module="relu")]
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            stride = 1 if i == 0 else 2
            outplanes = planes * block.expansion
            downsample = None
            if stride != 1 or inplanes != outplanes:
                downsample = (_downsample_avg if avg_down else _downsample_conv)(inplanes, outplanes, stride)
            blocks = [block(inplanes, planes, stride, downsample, groups, width_per_group, **kwargs)]
            blocks += [block(outplanes, planes, 1, None, groups, width_per_group, **kwargs) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            inplanes = outplanes
            info.append(dict(num_chs=outplanes, reduction=4 * 2**i, module=f"layer{i + 1}"))
        self._setup_features(info, features_only, out_indices)
        self._build_head(inplanes, num_classes)
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if m is not self and hasattr(m, "zero_init_last"):
                    m.zero_init_last()

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn1(self.conv1(x)))

    def _layer1(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer1(self.maxpool(x))

    def feature_stages(self) -> list:
        """The stem (conv1-bn1-relu, stride 2), then layer1 (after the max-pool, stride 4) ..
        layer4 (stride 32)."""
        return [self._stem, self._layer1, self.layer2, self.layer3, self.layer4]


_HE = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016"
_XIE = "Xie et al., Aggregated Residual Transformations for Deep Neural Networks, CVPR 2017"
_WRN = "Zagoruyko & Komodakis, Wide Residual Networks, BMVC 2016"
_SE = "Hu et al., Squeeze-and-Excitation Networks, CVPR 2018"


def _resnet(**common):
    return register_model(family="resnet", task="classification", num_classes=1000, **common)


@_resnet(paper=_HE, reference="torchvision:resnet18")
def resnet18(**kwargs) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), **kwargs)


@_resnet(paper=_HE, reference="torchvision:resnet34")
def resnet34(**kwargs) -> ResNet:
    return ResNet(BasicBlock, (3, 4, 6, 3), **kwargs)


@_resnet(paper=_HE, reference="torchvision:resnet50")
def resnet50(**kwargs) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), **kwargs)


@_resnet(paper=_HE, reference="torchvision:resnet101")
def resnet101(**kwargs) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 23, 3), **kwargs)


@_resnet(paper=_HE, reference="torchvision:resnet152")
def resnet152(**kwargs) -> ResNet:
    return ResNet(Bottleneck, (3, 8, 36, 3), **kwargs)


@_resnet(paper=_XIE, reference="torchvision:resnext50_32x4d")
def resnext50_32x4d(**kwargs) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), groups=32, width_per_group=4, **kwargs)


@_resnet(paper=_XIE, reference="torchvision:resnext101_32x8d")
def resnext101_32x8d(**kwargs) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 23, 3), groups=32, width_per_group=8, **kwargs)


@_resnet(paper=_WRN, reference="torchvision:wide_resnet50_2")
def wide_resnet50_2(**kwargs) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), width_per_group=128, **kwargs)


@_resnet(paper=_SE, reference="timm:seresnet50")
def se_resnet50(**kwargs) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), se=True, **kwargs)
