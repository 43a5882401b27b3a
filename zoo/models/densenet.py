"""DenseNet family: DenseNet-121/161/169/201.

Huang, Liu, van der Maaten & Weinberger, "Densely Connected Convolutional Networks", CVPR 2017,
in the DenseNet-BC form (bottleneck layers, compression 0.5) that torchvision and timm build:

* stem: 7x7 conv stride 2 (``2 * growth_rate`` channels; 96 for DenseNet-161), BN, ReLU,
  3x3 max-pool stride 2;
* four dense blocks (:class:`zoo.nn.dense.DenseBlock`, ``bn_size = 4``), a transition
  (:class:`zoo.nn.dense.Transition`: BN-ReLU-1x1 conv to half the channels-2x2 avg-pool)
  between consecutive blocks;
* a final BN + ReLU, global average pooling, dropout (``drop_rate``) and a linear classifier.

=============  ======  =============  =====  =============
name           growth  blocks         init   params (1000)
=============  ======  =============  =====  =============
densenet121    32      6-12-24-16     64     7,978,856
densenet161    48      6-12-36-24     96     28,681,000
densenet169    32      6-12-32-32     64     14,149,480
densenet201    32      6-12-48-32     64     20,013,928
=============  ======  =============  =====  =============

The zoo's keys: ``stem.conv``, ``stem.norm``, ``block{b}.layers.{i}.{norm1,conv1,norm2,conv2}``
(b = 1..4, i from 0), ``transition{b}.{norm,conv}`` (b = 1..3), ``norm`` (the final BN) and
``fc``. torchvision's (and timm's) state dicts -- ``features.conv0``, ``features.norm0``,
``features.denseblock{b}.denselayer{i+1}.*``, ``features.transition{b}.*``, ``features.norm5``,
``classifier`` -- load through :func:`convert_from_torchvision` (layout ``"torchvision"``), which
also takes the old ``norm.1`` / ``conv.2`` dense-layer names of torchvision's first checkpoints.
The builders have no ``memory_efficient`` (gradient checkpointing) option.
"""
from __future__ import annotations

import inspect
import re
from collections import OrderedDict
from typing import Mapping, Sequence

import torch
from torch import nn

from ..nn.backbone import ClassifierBackbone
from ..nn.dense import DenseBlock, Transition
from ..registry import register_model


class DenseNet(ClassifierBackbone, nn.Module):
    """DenseNet-BC backbone + classifier.

    Input ``[N, in_chans, H, W]``. ``forward_features`` returns the stride-32 map after the final
    BN + ReLU, ``[N, num_features, H/32, W/32]`` (sizes rounded down at each pooling);
    ``forward_head`` pools, applies dropout (``drop_rate``) and classifies it to
    ``[N, num_classes]``.

    Feature levels (``features_only`` / ``out_indices``), as timm's DenseNet taps them:

    * 0: the stem, conv-BN-ReLU before the max-pool (stride 2, ``num_init_features`` channels);
    * 1: max-pool + dense block 1 (stride 4);
    * 2, 3: transition 1 (2) + dense block 2 (3) (strides 8, 16);
    * 4: transition 3 + dense block 4 + the final BN + ReLU (stride 32).

    Each level's map is taken at the output of its dense block, before the next transition.

    Args:
        growth_rate: channels each dense layer adds (``k``).
        block_config: dense layers per block.
        num_init_features: channels of the stem conv.
        bn_size: bottleneck width of a dense layer, in multiples of ``growth_rate``.
        proj_drop_rate: dropout on each dense layer's new channels (torchvision's ``drop_rate``).
        drop_rate: dropout before the classifier.
    """

    def __init__(
        self,
        growth_rate: int = 32,
        block_config: Sequence[int] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        features_only: bool = False,
        out_indices: Sequence[int] = (1, 2, 3, 4),
    ) -> None:
        super().__init__()
        self._init_backbone(in_chans, drop_rate)
        if len(block_config) != 4:
            raise ValueError(f"block_config: expected 4 dense-block lengths, got {tuple(block_config)}")

        self.stem = nn.Sequential(OrderedDict([
            ("conv", nn.Conv2d(in_chans, num_init_features, 7, stride=2, padding=3, bias=False)),
            ("norm", nn.BatchNorm2d(num_init_features)),
            ("act", nn.ReLU(inplace=True)),
        ]))
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)

        info = [dict(num_chs=num_init_features, reduction=2, module="stem")]
        chs = num_init_features
        for i, n in enumerate(block_config):
            if i > 0:
                setattr(self, f"transition{i}", Transition(chs, chs // 2))
                chs //= 2
            block = DenseBlock(n, chs, growth_rate, bn_size, proj_drop_rate)
            setattr(self, f"block{i + 1}", block)
            chs = block.out_chs
            info.append(dict(num_chs=chs, reduction=4 * 2**i, module=f"block{i + 1}" if i < 3 else "norm"))
        self.norm = nn.BatchNorm2d(chs)
        self.act = nn.ReLU(inplace=True)

        self._setup_features(info, features_only, out_indices)
        self._build_head(chs, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def _stage1(self, x: torch.Tensor) -> torch.Tensor:
        return self.block1(self.pool(x))

    def _stage2(self, x: torch.Tensor) -> torch.Tensor:
        return self.block2(self.transition1(x))

    def _stage3(self, x: torch.Tensor) -> torch.Tensor:
        return self.block3(self.transition2(x))

    def _stage4(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.block4(self.transition3(x))))

    def feature_stages(self) -> list:
        """The stem (conv-BN-ReLU, stride 2), then max-pool + block 1 (stride 4), transition +
        block for blocks 2, 3 (strides 8, 16), and transition + block 4 + final BN-ReLU (stride 32)."""
        return [self.stem, self._stage1, self._stage2, self._stage3, self._stage4]


# ----------------------------------------------------------------------------- torchvision's layout

_TV_LAYER = re.compile(r"^features\.denseblock(\d+)\.denselayer(\d+)\.(norm|conv)\.?([12])\.(.+)$")
_TV_FIXED = (
    ("features.conv0.", "stem.conv."),
    ("features.norm0.", "stem.norm."),
    ("features.norm5.", "norm."),
    ("classifier.", "fc."),
)
_TV_TRANSITION = re.compile(r"^features\.transition(\d+)\.(.+)$")


def convert_from_torchvision(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's / timm's DenseNet keys -> the zoo's (see the module docstring).

    ``features.denseblock{b}.denselayer{j}.norm1.weight`` -> ``block{b}.layers.{j-1}.norm1.weight``
    (also from the legacy ``norm.1``), ``features.transition{b}.*`` -> ``transition{b}.*``,
    ``features.conv0``/``norm0`` -> ``stem.conv``/``stem.norm``, ``features.norm5`` -> ``norm``,
    ``classifier`` -> ``fc``. Other keys are kept as they are (and then fail the layout match).
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        new = key
        m = _TV_LAYER.match(key)
        if m:
            block, layer, kind, idx, rest = m.groups()
            new = f"block{block}.layers.{int(layer) - 1}.{kind}{idx}.{rest}"
        elif (t := _TV_TRANSITION.match(key)) is not None:
            new = f"transition{t.group(1)}.{t.group(2)}"
        else:
            for old, repl in _TV_FIXED:
                if key.startswith(old):
                    new = repl + key[len(old):]
                    break
        out[new] = value
    return out


_HUANG = "Huang et al., Densely Connected Convolutional Networks, CVPR 2017"


def _build(name: str, growth_rate: int, block_config: Sequence[int], num_init_features: int, kwargs: dict) -> DenseNet:
    """``DenseNet`` with the variant's fixed sizes; ``ValueError`` naming any option it does not take."""
    fixed = {"growth_rate", "block_config", "num_init_features"}
    allowed = set(inspect.signature(DenseNet.__init__).parameters) - fixed - {"self"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ValueError(f"{name}: unknown option(s) {unknown}; expected some of {sorted(allowed)}")
    return DenseNet(growth_rate, block_config, num_init_features, **kwargs)


def _densenet(ref: str):
    return register_model(
        family="densenet", task="classification", paper=_HUANG, reference=f"torchvision:{ref}",
        converters={"torchvision": convert_from_torchvision}, num_classes=1000,
    )


@_densenet("densenet121")
def densenet121(**kwargs) -> DenseNet:
    return _build("densenet121", 32, (6, 12, 24, 16), 64, kwargs)


@_densenet("densenet161")
def densenet161(**kwargs) -> DenseNet:
    return _build("densenet161", 48, (6, 12, 36, 24), 96, kwargs)


@_densenet("densenet169")
def densenet169(**kwargs) -> DenseNet:
    return _build("densenet169", 32, (6, 12, 32, 32), 64, kwargs)


@_densenet("densenet201")
def densenet201(**kwargs) -> DenseNet:
    return _build("densenet201", 32, (6, 12, 48, 32), 64, kwargs)
