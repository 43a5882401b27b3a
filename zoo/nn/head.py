"""The pooled linear classifier head shared by the classification backbones."""
from __future__ import annotations

import torch
from torch import nn


class PooledClassifierHead:
    """Mixin for an ``nn.Module`` backbone ending in global average pooling, dropout and a
    linear classifier: ``forward_head`` and ``reset_classifier`` as timm names them.

    The module sets ``avgpool``, ``fc`` (``None`` when built ``features_only``),
    ``drop_rate``, ``num_features`` and ``num_classes``.
    """

    fc: nn.Module | None
    avgpool: nn.Module
    drop_rate: float
    num_features: int
    num_classes: int
    training: bool

    def _build_head(self, num_features: int, num_classes: int, features_only: bool) -> None:
        """Set ``num_features`` and the pooled linear head (no head when ``features_only``)."""
        self.num_features = num_features
        if features_only:
            self.fc = None
        else:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``[N, num_features, h, w] -> [N, num_classes]`` (``[N, num_features]`` if ``pre_logits``)."""
        if self.fc is None:
            raise RuntimeError("forward_head: this net was built with features_only=True and has no head")
        x = torch.flatten(self.avgpool(x), 1)
        if self.drop_rate > 0:
            x = nn.functional.dropout(x, self.drop_rate, self.training)
        return x if pre_logits else self.fc(x)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a fresh one of ``num_classes`` outputs (0: none)."""
        if self.fc is None:
            raise RuntimeError("reset_classifier: this net was built with features_only=True and has no head")
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
