"""Inception (GoogLeNet) building blocks (Szegedy et al., "Going Deeper with Convolutions", CVPR 2015).

* :class:`ConvBNReLU`: ``conv (no bias) -> BatchNorm (eps 1e-3) -> ReLU``, the convolution unit of
  the batch-normalised GoogLeNet that torchvision trains (the paper's net has no BN).
* :class:`InceptionBlock`: four parallel branches concatenated along channels.
* :class:`InceptionAux`: the auxiliary classifier attached to intermediate maps while training.

Parameter names (``conv``/``bn``; ``branch1`` .. ``branch4``; ``conv``/``fc1``/``fc2``) are
torchvision's, so its GoogLeNet state dict loads without renaming.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: BatchNorm epsilon of GoogLeNet's conv units (torchvision's value).
BN_EPS = 1e-3


class ConvBNReLU(nn.Module):
    """``Conv2d(cin, cout, kernel_size, stride, padding, bias=False) -> BatchNorm2d(eps) -> ReLU``.

    ``[N, cin, H, W] -> [N, cout, H', W']`` with ``H' = (H + 2 * padding - kernel_size) // stride + 1``.
    """

    def __init__(
        self, cin: int, cout: int, kernel_size: int = 1, stride: int = 1, padding: int = 0, eps: float = BN_EPS
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class InceptionBlock(nn.Module):
    """The Inception module: ``[N, cin, H, W] -> [N, c1 + c3 + c5 + pool_proj, H, W]``.

    Branches, concatenated in this order:

    1. ``branch1``: 1x1 conv to ``c1``;
    2. ``branch2``: 1x1 conv to ``c3_reduce``, then 3x3 conv to ``c3``;
    3. ``branch3``: 1x1 conv to ``c5_reduce``, then a **3x3** conv to ``c5``. The paper uses a 5x5
       convolution here; torchvision's GoogLeNet (and its ImageNet weights) use 3x3, and the zoo
       matches torchvision so that its weights load and reproduce its outputs;
    4. ``branch4``: 3x3 max-pool, stride 1, padding 1, ``ceil_mode=True``, then 1x1 conv to
       ``pool_proj`` (``branch4.0`` is the pool, ``branch4.1`` the conv).

    Every conv is a :class:`ConvBNReLU`.
    """

    def __init__(
        self, cin: int, c1: int, c3_reduce: int, c3: int, c5_reduce: int, c5: int, pool_proj: int
    ) -> None:
        super().__init__()
        self.branch1 = ConvBNReLU(cin, c1, 1)
        self.branch2 = nn.Sequential(ConvBNReLU(cin, c3_reduce, 1), ConvBNReLU(c3_reduce, c3, 3, padding=1))
        self.branch3 = nn.Sequential(ConvBNReLU(cin, c5_reduce, 1), ConvBNReLU(c5_reduce, c5, 3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True), ConvBNReLU(cin, pool_proj, 1))
        self.out_chs = c1 + c3 + c5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """GoogLeNet's auxiliary classifier: ``[N, cin, H, W] -> [N, num_classes]``.

    Adaptive average pool to 4x4 (the paper's 5x5/3 pool on a 14x14 map), 1x1
    :class:`ConvBNReLU` to 128 channels, flatten (2048), ``fc1`` to 1024 + ReLU, dropout
    (``drop_rate``, 0.7 in the paper), ``fc2`` to ``num_classes``.
    """

    def __init__(self, cin: int, num_classes: int, drop_rate: float = 0.7) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes: expected >= 1 for an auxiliary classifier, got {num_classes}")
        self.conv = ConvBNReLU(cin, 128, 1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.drop_rate = float(drop_rate)

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh ``fc2`` of ``num_classes`` outputs."""
        if num_classes < 1:
            raise ValueError(f"num_classes: expected >= 1 for an auxiliary classifier, got {num_classes}")
        self.fc2 = nn.Linear(self.fc1.out_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.conv(F.adaptive_avg_pool2d(x, 4)), 1)
        x = F.relu(self.fc1(x), inplace=True)
        if self.drop_rate > 0:
            x = F.dropout(x, self.drop_rate, self.training)
        return self.fc2(x)
