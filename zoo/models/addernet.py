"""AdderNet: ResNets whose convolutions are adder layers.

Chen et al., "AdderNet: Do We Really Need Multiplications in Deep Learning?", CVPR 2020.
Every convolution except the stem is a :class:`zoo.nn.Adder2d` (``y = -sum |x - w|`` over each
patch, the paper's backward with the adaptive weight-gradient scaling ``eta``), each followed
by BatchNorm; the stem convolution and the final FC stay multiplicative. The paper reports
91.8% top-1 for ResNet-20 on CIFAR-10 and 74.9% for ResNet-50 on ImageNet.

* ``adder_resnet20``: the CIFAR ResNet-20 layout: 3x3 conv (16) + BN + ReLU, three stages of
  three basic blocks with 16 / 32 / 64 channels (stride 2 at stages 2 and 3; a 1x1 stride-2
  adder + BN shortcut where the shape changes), global average pooling, FC.
* ``adder_resnet50``: ResNet-50 v1.5 (torchvision's layout and parameter names: the 7x7 stem
  conv, max-pool, bottlenecks with the stride on the 3x3, ``downsample.0/1`` shortcuts).
  Its parameters have the shapes of torchvision's ``resnet50`` one for one.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..nn import Adder2d
from ..nn.backbone import ClassifierBackbone
from ..registry import register_model


def _adder(cin: int, cout: int, k: int, stride: int, eta: float | None) -> Adder2d:
    return Adder2d(cin, cout, k, stride=stride, padding=k // 2, bias=False, eta=eta)


class AdderBasicBlock(nn.Module):
    """Two 3x3 adders with BN: ``relu(bn2(add2(relu(bn1(add1(x))))) + shortcut(x))``."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 eta: float | None = 0.2) -> None:
        super().__init__()
        self.conv1 = _adder(inplanes, planes, 3, stride, eta)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _adder(planes, planes, 3, 1, eta)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + shortcut)


class AdderBottleneck(nn.Module):
    """1x1 reduce -> 3x3 (strided) -> 1x1 expand (x4) adders, each with BN, plus the shortcut."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 eta: float | None = 0.2) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = _adder(inplanes, planes, 1, 1, eta)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _adder(planes, planes, 3, stride, eta)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _adder(planes, out, 1, 1, eta)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + shortcut)


class AdderResNet(ClassifierBackbone, nn.Module):
    """ResNet with adder layers, in the CIFAR layout (``cifar=True``: 3x3 stem, no max-pool,
    stages of ``widths`` from stride 1) or the ImageNet one (7x7 stride-2 stem, max-pool).

    Input ``[N, in_chans, H, W]``; ``forward_features`` returns ``[N, num_features, H/s, W/s]``
    (s = 4 for the CIFAR layout's three stages, 32 for the ImageNet one), ``forward_head`` pools
    and classifies it to ``[N, num_classes]``. ``features_only`` / ``out_indices`` as
    :class:`zoo.nn.ClassifierBackbone` (index 0 the stem, then one per stage).

    Args:
        eta: the adder layers' adaptive learning-rate scale (:class:`zoo.nn.Adder2d`).
    """

    def __init__(
        self,
        block: type[AdderBasicBlock] | type[AdderBottleneck],
        layers: Sequence[int],
        widths: Sequence[int],
        cifar: bool,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        eta: float | None = 0.2,
        features_only: bool = False,
        out_indices: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self._init_backbone(in_chans, drop_rate)
        self.cifar = cifar
        stem = widths[0] if cifar else 64
        if cifar:
            self.conv1 = nn.Conv2d(in_chans, stem, 3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_chans, stem, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        info = [dict(num_chs=stem, reduction=1 if cifar else 2, module="relu")]
        inplanes, reduction = stem, 1 if cifar else 4
        for i, (planes, n) in enumerate(zip(widths, layers)):
            stride = 1 if i == 0 else 2
            reduction *= stride
            outplanes = planes * block.expansion
            downsample = None
            if stride != 1 or inplanes != outplanes:
                downsample = nn.Sequential(_adder(inplanes, outplanes, 1, stride, eta), nn.BatchNorm2d(outplanes))
            blocks = [block(inplanes, planes, stride, downsample, eta)]
            blocks += [block(outplanes, planes, 1, None, eta) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            inplanes = outplanes
            info.append(dict(num_chs=outplanes, reduction=reduction, module=f"layer{i + 1}"))
        self.num_stages = len(layers)
        if out_indices is None:
            out_indices = tuple(range(1, len(layers) + 1))
        self._setup_features(info, features_only, out_indices)
        self._build_head(inplanes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn1(self.conv1(x)))

    def _layer1(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer1(x if self.cifar else self.maxpool(x))

    def feature_stages(self) -> list:
        """The stem, then layer1 (after the max-pool in the ImageNet layout), layer2, ..."""
        return [self._stem, self._layer1] + [getattr(self, f"layer{i}") for i in range(2, self.num_stages + 1)]


_CHEN = "Chen et al., AdderNet: Do We Really Need Multiplications in Deep Learning?, CVPR 2020"
_REF = "paper:Chen et al. CVPR 2020"
_VERIFIED = "adder2d vs a direct loop and the paper's gradients; layer shapes vs ResNet"
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


@register_model(family="addernet", task="classification", input_size=(3, 32, 32), mean=CIFAR_MEAN, std=CIFAR_STD,
                paper=_CHEN, reference=_REF, verified=_VERIFIED, num_classes=10)
def adder_resnet20(**kwargs) -> AdderResNet:
    """CIFAR ResNet-20 with adder layers (3 stages x 3 basic blocks, 16/32/64 channels)."""
    return AdderResNet(AdderBasicBlock, (3, 3, 3), (16, 32, 64), cifar=True, **kwargs)


@register_model(family="addernet", task="classification", paper=_CHEN, reference=_REF, verified=_VERIFIED,
                num_classes=1000)
def adder_resnet50(**kwargs) -> AdderResNet:
    """ResNet-50 v1.5 with every convolution but the 7x7 stem an adder layer."""
    return AdderResNet(AdderBottleneck, (3, 4, 6, 3), (64, 128, 256, 512), cifar=False, **kwargs)
