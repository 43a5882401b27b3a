"""DenseNet building blocks (Huang et al., "Densely Connected Convolutional Networks", CVPR 2017).

The DenseNet-BC form: every dense layer is a bottleneck ``BN-ReLU-1x1 conv (bn_size * growth)
-BN-ReLU-3x3 conv (growth)`` whose ``growth`` new channels are concatenated to its input;
a dense block chains such layers; a transition between blocks halves the channels
(compression 0.5, chosen by the caller) and the resolution: ``BN-ReLU-1x1 conv-avgpool 2``.

Parameter names (``norm1``, ``conv1``, ``norm2``, ``conv2``; ``norm``, ``conv``) follow
torchvision's dense layers and transitions, so that a converter only renames the containers.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DenseLayer(nn.Module):
    """One bottleneck dense layer: ``[N, cin, H, W] -> [N, growth_rate, H, W]`` (the new channels only;
    :class:`DenseBlock` concatenates them to the input).

    ``BN -> ReLU -> 1x1 conv (bn_size * growth_rate) -> BN -> ReLU -> 3x3 conv (growth_rate)``,
    both convolutions without bias; ``drop_rate``: dropout on the new channels while training.
    """

    def __init__(self, cin: int, growth_rate: int, bn_size: int = 4, drop_rate: float = 0.0) -> None:
        super().__init__()
        if growth_rate < 1 or bn_size < 1:
            raise ValueError(f"growth_rate, bn_size: expected positive ints, got {growth_rate}, {bn_size}")
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate: expected a value in [0, 1), got {drop_rate}")
        mid = bn_size * growth_rate
        self.norm1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, growth_rate, 3, padding=1, bias=False)
        self.drop_rate = float(drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(F.relu(self.norm1(x), inplace=True))
        y = self.conv2(F.relu(self.norm2(y), inplace=True))
        if self.drop_rate > 0:
            y = F.dropout(y, self.drop_rate, self.training)
        return y


class DenseBlock(nn.Module):
    """``num_layers`` dense layers, each seeing the concatenation of the block input and every
    earlier layer's output: ``[N, cin, H, W] -> [N, cin + num_layers * growth_rate, H, W]``.

    The layers are ``layers.0 .. layers.{num_layers - 1}``; ``out_chs`` is the output width.
    """

    def __init__(
        self, num_layers: int, cin: int, growth_rate: int, bn_size: int = 4, drop_rate: float = 0.0
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers: expected >= 1, got {num_layers}")
        self.layers = nn.ModuleList(
            DenseLayer(cin + i * growth_rate, growth_rate, bn_size, drop_rate) for i in range(num_layers)
        )
        self.out_chs = cin + num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, 1) if len(feats) > 1 else x))
        return torch.cat(feats, 1)


class Transition(nn.Module):
    """Between dense blocks: ``BN -> ReLU -> 1x1 conv (no bias) -> 2x2 average pool, stride 2``.

    ``[N, cin, H, W] -> [N, cout, floor(H/2), floor(W/2)]``.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.pool = nn.AvgPool2d(2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(F.relu(self.norm(x), inplace=True)))
