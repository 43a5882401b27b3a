"""Res2Net family: Res2Net-50 and Res2Net-101, 26w x 4s.

Gao et al., "Res2Net: A New Multi-scale Backbone Architecture", TPAMI 2021. A ResNet
(7x7 stem, max-pool, four stages of 3/4/6|23/3 blocks, stride on the 3x3 convs) whose
bottlenecks are :class:`zoo.nn.Bottle2neck`: ``scale`` splits of ``base_width`` channels
(at the first stage) with hierarchical 3x3 convolutions.

Parameter names follow timm's ``res2net50_26w_4s`` / ``res2net101_26w_4s`` (``conv1``,
``bn1``, ``layer1..4``, ``fc``; ``convs.i`` / ``bns.i`` inside a block), so timm's state
dicts load with no renaming.
"""
from __future__ import annotations

from typing import Sequence

from ..nn.res2net import Bottle2neck
from ..registry import register_model
from .resnet import ResNet


class Res2Net(ResNet):
    """Res2Net backbone + classifier: a :class:`zoo.models.ResNet` of :class:`Bottle2neck` blocks.

    Input ``[N, in_chans, H, W]``; ``forward`` returns ``[N, num_classes]`` logits, or with
    ``features_only=True`` the maps at ``out_indices`` (0 = stem, stride 2, 64 channels;
    1..4 = layer1..4, strides 4..32, 256/512/1024/2048 channels).

    Args:
        layers: blocks per stage.
        base_width: channels per split at the first stage (26 in "26w").
        scale: number of splits (4 in "4s").
        zero_init_residual: zero the last BN of each block at initialisation (timm's default).
    """

    def __init__(
        self,
        layers: Sequence[int],
        num_classes: int = 1000,
        in_chans: int = 3,
        base_width: int = 26,
        scale: int = 4,
        drop_rate: float = 0.0,
        zero_init_residual: bool = True,
        features_only: bool = False,
        out_indices: Sequence[int] = (1, 2, 3, 4),
    ) -> None:
        super().__init__(
            Bottle2neck, layers, num_classes=num_classes, in_chans=in_chans, width_per_group=base_width,
            drop_rate=drop_rate, zero_init_residual=zero_init_residual, features_only=features_only,
            out_indices=out_indices, block_args=dict(scale=scale),
        )


_GAO = "Gao et al., Res2Net: A New Multi-scale Backbone Architecture, TPAMI 2021"


def _res2net(**common):
    return register_model(family="res2net", task="classification", paper=_GAO, num_classes=1000, **common)


@_res2net(reference="timm:res2net50_26w_4s")
def res2net50_26w_4s(**kwargs) -> Res2Net:
    return Res2Net((3, 4, 6, 3), base_width=26, scale=4, **kwargs)


@_res2net(reference="timm:res2net101_26w_4s")
def res2net101_26w_4s(**kwargs) -> Res2Net:
    return Res2Net((3, 4, 23, 3), base_width=26, scale=4, **kwargs)
