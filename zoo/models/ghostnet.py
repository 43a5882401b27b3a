"""GhostNet: GhostNet-0.5x, 1.0x and 1.3x.

Han et al., "GhostNet: More Features from Cheap Operations", CVPR 2020 (version 1, the
layout of timm's ``ghostnet_050`` / ``ghostnet_100`` / ``ghostnet_130``).

A 3x3 stride-2 stem (16 channels x width), sixteen ghost bottlenecks (:class:`zoo.nn.GhostBottleneck`,
Table 1 of the paper) in stride groups 2 / 4 / 8 / 16 / 32, a 1x1 conv -> BN -> ReLU to
960 x width channels, then the head: global average pooling, a 1x1 conv with bias to 1280
channels -> ReLU, dropout and the linear classifier. Every width is rounded to a multiple of 4
(``make_divisible(c * width, 4)``). The SE blocks use ReLU and a hard-sigmoid gate, reduced to
``make_divisible(0.25 * C, 4)`` channels, and run through the zoo's fused
:class:`zoo.nn.SEBlock`.

Parameter names follow timm's, except the SE FCs (``se.fc1`` / ``se.fc2`` for timm's
``se.conv_reduce`` / ``se.conv_expand``) and the classifier (``fc`` for ``classifier``):
:func:`convert_from_timm` maps them.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from ..nn import GhostBottleneck, make_divisible
from ..nn.backbone import ClassifierBackbone
from ..nn.se import from_timm_keys
from ..registry import register_model

# One row per bottleneck: (depthwise kernel, expansion width, output width, SE ratio, stride),
# grouped as timm groups them into ``blocks.i`` (the paper's Table 1).
GHOSTNET_CFG: tuple[tuple[tuple[int, int, int, float, int], ...], ...] = (
    ((3, 16, 16, 0.0, 1),),
    ((3, 48, 24, 0.0, 2),),
    ((3, 72, 24, 0.0, 1),),
    ((5, 72, 40, 0.25, 2),),
    ((5, 120, 40, 0.25, 1),),
    ((3, 240, 80, 0.0, 2),),
    ((3, 200, 80, 0.0, 1), (3, 184, 80, 0.0, 1), (3, 184, 80, 0.0, 1), (3, 480, 112, 0.25, 1), (3, 672, 112, 0.25, 1)),
    ((5, 672, 160, 0.25, 2),),
    ((5, 960, 160, 0.0, 1), (5, 960, 160, 0.25, 1), (5, 960, 160, 0.0, 1), (5, 960, 160, 0.25, 1)),
)
# ``blocks[a:b]`` of each feature stage after the stem: each ends at the last group before the
# next stride-2 one, as timm's feature_info (blocks.1 / 3 / 5 / 7).
_STAGE_BLOCKS = ((0, 2), (2, 4), (4, 6), (6, 8))
HEAD_CHS = 1280


class ConvBNReLU(nn.Module):
    """``[N, cin, H, W] -> [N, cout, H, W]``: 1x1 conv -> BN -> ReLU (names ``conv``, ``bn1``)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn1(self.conv(x)))


class GhostNet(ClassifierBackbone, nn.Module):
    """GhostNet (v1) backbone + classifier.

    Input ``[N, in_chans, H, W]``. ``forward_features`` returns ``[N, num_features, H/32, W/32]``
    with ``num_features = make_divisible(960 * width, 4)``; ``forward_head`` pools it, applies
    ``conv_head`` (1x1 to 1280 channels, with bias) and ReLU, dropout (``drop_rate``) and the
    classifier: ``[N, num_classes]`` (``pre_logits``: ``[N, 1280]``).

    ``features_only=True``: no head and no layers past the last feature stage; ``forward``
    returns the maps at ``out_indices``: 0 = stem (conv -> BN -> ReLU, stride 2), 1..4 = the
    outputs of ``blocks.1`` / ``blocks.3`` / ``blocks.5`` / ``blocks.7`` (strides 4, 8, 16, 32;
    timm's feature_info, which taps its stem before the BN).
    """

    def __init__(
        self,
        width: float = 1.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        features_only: bool = False,
        out_indices: Sequence[int] = (1, 2, 3, 4),
    ) -> None:
        super().__init__()
        if not width > 0:
            raise ValueError(f"width: expected a positive multiplier, got {width}")
        self._init_backbone(in_chans, drop_rate)
        self.width = float(width)

        stem_chs = make_divisible(16 * width, 4)
        self.conv_stem = nn.Conv2d(in_chans, stem_chs, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_chs)
        self.act1 = nn.ReLU(inplace=True)

        groups, chs, group_chs = [], stem_chs, []
        for group in GHOSTNET_CFG:
            layers = []
            for k, exp, c, se_ratio, s in group:
                out = make_divisible(c * width, 4)
                layers.append(GhostBottleneck(chs, make_divisible(exp * width, 4), out, k, s, se_ratio=se_ratio))
                chs = out
            groups.append(nn.Sequential(*layers))
            group_chs.append(chs)
        last_chs = make_divisible(GHOSTNET_CFG[-1][-1][1] * width, 4)
        groups.append(nn.Sequential(ConvBNReLU(chs, last_chs)))

        info = [dict(num_chs=stem_chs, reduction=2, module="act1")]
        for i, (_, end) in enumerate(_STAGE_BLOCKS):
            info.append(dict(num_chs=group_chs[end - 1], reduction=4 * 2**i, module=f"blocks.{end - 1}"))
        self._setup_features(info, features_only, out_indices)
        if self.features_only:
            groups = groups[: _STAGE_BLOCKS[-1][1]]  # the layers past blocks.7 feed only the head
        self.blocks = nn.Sequential(*groups)

        self.head_hidden_size = HEAD_CHS
        self._build_head(HEAD_CHS, num_classes)
        self.num_features = last_chs
        if not self.features_only:
            self.conv_head = nn.Conv2d(last_chs, HEAD_CHS, 1, bias=True)
            self.act2 = nn.ReLU(inplace=True)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.act1(self.bn1(self.conv_stem(x)))

    def feature_stages(self) -> list:
        """The stem (stride 2), then ``blocks[0:2]``, ``[2:4]``, ``[4:6]``, ``[6:8]`` (strides 4 .. 32)."""
        return [self._stem] + [self.blocks[a:b] for a, b in _STAGE_BLOCKS]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, in_chans, H, W] -> [N, num_features, H/32, W/32]`` (with ``features_only``: the
        last feature stage's map)."""
        x = super().forward_features(x)
        return self.blocks[_STAGE_BLOCKS[-1][1]:](x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``[N, num_features, h, w] -> [N, num_classes]`` (``[N, 1280]`` if ``pre_logits``):
        pool -> conv_head -> ReLU -> dropout -> fc."""
        if self.fc is None:
            raise RuntimeError("forward_head: this net was built with features_only=True and has no head")
        x = torch.flatten(self.act2(self.conv_head(self.avgpool(x))), 1)
        if self.drop_rate > 0:
            x = nn.functional.dropout(x, self.drop_rate, self.training)
        return x if pre_logits else self.fc(x)

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh classifier ``1280 -> num_classes`` (0: none); ``conv_head`` is kept."""
        if self.fc is None:
            raise RuntimeError("reset_classifier: this net was built with features_only=True and has no head")
        if num_classes < 0:
            raise ValueError(f"num_classes: expected >= 0, got {num_classes}")
        self.num_classes = num_classes
        self.fc = nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()


def convert_from_timm(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's GhostNet (v1) state dict in the zoo's names: ``.se.conv_reduce.`` -> ``.se.fc1.``,
    ``.se.conv_expand.`` -> ``.se.fc2.``, ``classifier.`` -> ``fc.`` (:func:`zoo.nn.se.from_timm_keys`);
    every other key is the zoo's already."""
    return from_timm_keys(sd)


_HAN = "Han et al., GhostNet: More Features from Cheap Operations, CVPR 2020"


def _ghostnet(ref: str):
    return register_model(
        family="ghostnet",
        task="classification",
        paper=_HAN,
        reference=f"timm:{ref}",
        converters={"timm": convert_from_timm},
        num_classes=1000,
        drop_rate=0.2,
    )


@_ghostnet("ghostnet_050")
def ghostnet_050(**kwargs) -> GhostNet:
    return GhostNet(width=0.5, **kwargs)


@_ghostnet("ghostnet_100")
def ghostnet_100(**kwargs) -> GhostNet:
    return GhostNet(width=1.0, **kwargs)


@_ghostnet("ghostnet_130")
def ghostnet_130(**kwargs) -> GhostNet:
    return GhostNet(width=1.3, **kwargs)
